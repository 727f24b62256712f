package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// doc builds a config with one service around extra VM-level and
// service-level fields, so that each rule can be tested on its own.
func doc(vm, svc string) string {
	if vm != "" {
		vm = "," + vm
	}
	if svc != "" {
		svc = "," + svc
	}
	return `{"name":"vm","uid":1000,"gid":1000` + vm +
		`,"services":[{"name":"s","argv":["/bin/true"]` + svc + `}]}`
}

// errLines renders errors the way "vmsup validate" prints them.
func errLines(errs []*Error) []string {
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = e.Error()
	}
	return lines
}

type ruleCase struct {
	vm, svc string // fields added by doc
	raw     string // the whole document instead, if set
	want    string // the single expected error; "" means valid
	check   func(*testing.T, *VM)
}

func (c ruleCase) input() string {
	if c.raw != "" {
		return c.raw
	}
	return doc(c.vm, c.svc)
}

func runRules(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, c := range cases {
		in := c.input()
		t.Run(strings.ReplaceAll(c.vm+c.svc+c.raw, "/", "|"), func(t *testing.T) {
			vm, errs := Parse([]byte(in))
			got := errLines(errs)
			if c.want == "" {
				if len(got) > 0 {
					t.Fatalf("Parse(%s): unexpected errors:\n%s", in, strings.Join(got, "\n"))
				}
				if vm == nil {
					t.Fatalf("Parse(%s): nil VM and no errors", in)
				}
				if c.check != nil {
					c.check(t, vm)
				}
				return
			}
			if len(got) != 1 || got[0] != c.want {
				t.Fatalf("Parse(%s):\n got: %q\nwant: %q", in, got, c.want)
			}
			if vm != nil {
				t.Fatalf("Parse(%s): VM returned along with errors", in)
			}
		})
	}
}

func svc0(vm *VM) *Service { return &vm.Services[0] }

func TestVMRules(t *testing.T) {
	runRules(t, []ruleCase{
		// name
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":["x"]}]}`},
		{raw: `{"name":"` + strings.Repeat("a", 64) + `","uid":0,"services":[{"name":"s","argv":["x"]}]}`},
		{raw: `{"name":"0a_b-c","uid":0,"services":[{"name":"s","argv":["x"]}]}`},
		{raw: `{"uid":0,"services":[{"name":"s","argv":["x"]}]}`, want: "name: required"},
		{raw: `{"name":"","uid":0,"services":[{"name":"s","argv":["x"]}]}`, want: "name: must match ^[a-z0-9][a-z0-9_-]{0,63}$"},
		{raw: `{"name":"Work","uid":0,"services":[{"name":"s","argv":["x"]}]}`, want: "name: must match ^[a-z0-9][a-z0-9_-]{0,63}$"},
		{raw: `{"name":"-a","uid":0,"services":[{"name":"s","argv":["x"]}]}`, want: "name: must match ^[a-z0-9][a-z0-9_-]{0,63}$"},
		{raw: `{"name":"a.b","uid":0,"services":[{"name":"s","argv":["x"]}]}`, want: "name: must match ^[a-z0-9][a-z0-9_-]{0,63}$"},
		{raw: `{"name":"` + strings.Repeat("a", 65) + `","uid":0,"services":[{"name":"s","argv":["x"]}]}`, want: "name: must match ^[a-z0-9][a-z0-9_-]{0,63}$"},
		{raw: `{"name":7,"uid":0,"services":[{"name":"s","argv":["x"]}]}`, want: "name: expected string, got number"},

		// runtime_dir
		{check: func(t *testing.T, vm *VM) { eq(t, vm.RuntimeDir, "/run/vmsup/vm") }},
		{vm: `"runtime_dir":"/tmp/vm"`, check: func(t *testing.T, vm *VM) { eq(t, vm.RuntimeDir, "/tmp/vm") }},
		{vm: `"runtime_dir":"tmp/vm"`, want: "runtime_dir: must be an absolute path"},
		{vm: `"runtime_dir":""`, want: "runtime_dir: must be an absolute path"},
		{vm: `"runtime_dir":"/tmp/vm/"`, want: `runtime_dir: must be a clean path, like "/tmp/vm"`},
		{vm: `"runtime_dir":"/tmp/../vm"`, want: `runtime_dir: must be a clean path, like "/vm"`},
		{vm: `"runtime_dir":"/"`, want: `runtime_dir: must not be "/"`},
		{vm: `"runtime_dir":"/a\u0000b"`, want: `runtime_dir: must not contain NUL`},
		{vm: `"runtime_dir":["/a"]`, want: `runtime_dir: expected string, got array`},

		// cgroup
		{check: func(t *testing.T, vm *VM) { eq(t, vm.Cgroup, "") }},
		{vm: `"cgroup":"/sys/fs/cgroup/x"`, check: func(t *testing.T, vm *VM) { eq(t, vm.Cgroup, "/sys/fs/cgroup/x") }},
		{vm: `"cgroup":"x"`, want: "cgroup: must be an absolute path"},
		{vm: `"cgroup":"/sys//fs"`, want: `cgroup: must be a clean path, like "/sys/fs"`},

		// uid, gid
		{raw: `{"name":"a","uid":4294967294,"gid":0,"services":[{"name":"s","argv":["x"]}]}`,
			check: func(t *testing.T, vm *VM) {
				eq(t, *vm.UID, uint32(4294967294))
				eq(t, *vm.GID, uint32(0))
				eq(t, svc0(vm).UID, uint32(4294967294))
			}},
		{raw: `{"name":"a","services":[{"name":"s","argv":["x"],"uid":1,"gid":2}]}`,
			check: func(t *testing.T, vm *VM) {
				if vm.UID != nil || vm.GID != nil {
					t.Errorf("VM uid/gid set: %v %v", vm.UID, vm.GID)
				}
			}},
		{raw: `{"name":"a","uid":4294967295,"gid":0,"services":[{"name":"s","argv":["x"]}]}`, want: "uid: must be between 0 and 4294967294"},
		{raw: `{"name":"a","uid":-1,"gid":0,"services":[{"name":"s","argv":["x"]}]}`, want: "uid: must be between 0 and 4294967294"},
		{raw: `{"name":"a","uid":1.5,"gid":0,"services":[{"name":"s","argv":["x"]}]}`, want: "uid: must be an integer"},
		{raw: `{"name":"a","uid":1e3,"gid":0,"services":[{"name":"s","argv":["x"]}]}`, want: "uid: must be an integer"},
		{raw: `{"name":"a","uid":"1000","gid":0,"services":[{"name":"s","argv":["x"]}]}`, want: "uid: expected integer, got string"},
		{raw: `{"name":"a","uid":null,"gid":0,"services":[{"name":"s","argv":["x"]}]}`, want: "uid: expected integer, got null"},
		{raw: `{"name":"a","uid":1,"gid":99999999999999999999,"services":[{"name":"s","argv":["x"]}]}`, want: "gid: must be between 0 and 4294967294"},

		// landlock
		{check: func(t *testing.T, vm *VM) { eq(t, vm.Landlock, LandlockRequired) }},
		{vm: `"landlock":"required"`, check: func(t *testing.T, vm *VM) { eq(t, vm.Landlock, LandlockRequired) }},
		{vm: `"landlock":"best-effort"`, check: func(t *testing.T, vm *VM) { eq(t, vm.Landlock, LandlockBestEffort) }},
		{vm: `"landlock":"off"`, check: func(t *testing.T, vm *VM) { eq(t, vm.Landlock, LandlockOff) }},
		{vm: `"landlock":"on"`, want: `landlock: must be one of "required", "best-effort", "off"`},
		{vm: `"landlock":true`, want: `landlock: expected string, got boolean`},

		// shutdown_timeout
		{check: func(t *testing.T, vm *VM) { eq(t, vm.ShutdownTimeout, 30*time.Second) }},
		{vm: `"shutdown_timeout":"1m30s"`, check: func(t *testing.T, vm *VM) { eq(t, vm.ShutdownTimeout, 90*time.Second) }},
		{vm: `"shutdown_timeout":"500ms"`, check: func(t *testing.T, vm *VM) { eq(t, vm.ShutdownTimeout, 500*time.Millisecond) }},
		{vm: `"shutdown_timeout":"0s"`, want: "shutdown_timeout: must be greater than 0"},
		{vm: `"shutdown_timeout":"-5s"`, want: "shutdown_timeout: must be greater than 0"},
		{vm: `"shutdown_timeout":"30"`, want: `shutdown_timeout: invalid duration "30" (want e.g. "30s")`},
		{vm: `"shutdown_timeout":30`, want: `shutdown_timeout: expected string, got number`},

		// mount
		{check: func(t *testing.T, vm *VM) { eq(t, vm.Mount.Propagation, PropagationSlave) }},
		{vm: `"mount":{"propagation":"private"}`, check: func(t *testing.T, vm *VM) { eq(t, vm.Mount.Propagation, PropagationPrivate) }},
		{vm: `"mount":{"propagation":"shared"}`, want: `mount.propagation: must be one of "slave", "private"`},
		{vm: `"mount":[]`, want: `mount: expected object, got array`},
		{vm: `"mount":{"readonly":[]}`, want: `mount.readonly: unknown field`},
		{vm: `"mount":{"readonly_paths":["/etc","/usr"],"masked_paths":["/root"]}`, check: func(t *testing.T, vm *VM) {
			eq(t, vm.Mount.ReadonlyPaths, []string{"/etc", "/usr"})
			eq(t, vm.Mount.MaskedPaths, []string{"/root"})
		}},
		{vm: `"mount":{"readonly_paths":["/etc","usr"]}`, want: `mount.readonly_paths[1]: must be an absolute path`},
		{vm: `"mount":{"masked_paths":"/root"}`, want: `mount.masked_paths: expected array, got string`},
		{vm: `"mount":{"masked_paths":["/root/"]}`, want: `mount.masked_paths[0]: must be a clean path, like "/root"`},
		{vm: `"mount":{"binds":[{"source":"/a","target":"/b"},{"source":"/c","target":"/d","readonly":true}]}`, check: func(t *testing.T, vm *VM) {
			eq(t, vm.Mount.Binds, []Bind{{"/a", "/b", false}, {"/c", "/d", true}})
		}},
		{vm: `"mount":{"binds":[{"target":"/b"}]}`, want: `mount.binds[0].source: required`},
		{vm: `"mount":{"binds":[{"source":"/b"}]}`, want: `mount.binds[0].target: required`},
		{vm: `"mount":{"binds":[{"source":"b","target":"/b"}]}`, want: `mount.binds[0].source: must be an absolute path`},
		{vm: `"mount":{"binds":[{"source":"/b","target":"/b/."}]}`, want: `mount.binds[0].target: must be a clean path, like "/b"`},
		{vm: `"mount":{"binds":[{"source":"/b","target":"/b","readonly":"yes"}]}`, want: `mount.binds[0].readonly: expected boolean, got string`},
		{vm: `"mount":{"binds":[{"source":"/b","target":"/b","ro":true}]}`, want: `mount.binds[0].ro: unknown field`},

		// services
		{raw: `{"name":"a","uid":0}`, want: "services: required"},
		{raw: `{"name":"a","uid":0,"services":[]}`, want: "services: must not be empty"},
		{raw: `{"name":"a","uid":0,"services":{}}`, want: "services: expected array, got object"},
		{raw: `{"name":"a","uid":0,"services":[null]}`, want: "services[0]: expected object, got null"},

		// unknown fields and document shape
		{vm: `"nmae":"x"`, want: "nmae: unknown field"},
		{vm: `"a b":1`, want: `["a b"]: unknown field`},
		{raw: `[]`, want: "expected object, got array"},
		{raw: `"x"`, want: "expected object, got string"},
		{raw: `{"name":"a","name":"b","uid":0,"services":[{"name":"s","argv":["x"]}]}`, want: "name: duplicate key"},
	})
}

func TestServiceRules(t *testing.T) {
	runRules(t, []ruleCase{
		// name
		{raw: `{"name":"a","uid":0,"services":[{"argv":["x"]}]}`, want: "services[0].name: required"},
		{raw: `{"name":"a","uid":0,"services":[{"name":"S","argv":["x"]}]}`, want: "services[0].name: must match ^[a-z0-9][a-z0-9_-]{0,63}$"},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":["x"]},{"name":"t","argv":["x"]},{"name":"s","argv":["y"]}]}`,
			want: `services[2].name: duplicate service name "s" (also services[0])`},

		// argv
		{check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Argv, []string{"/bin/true"}) }},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":["qemu","-m",""]}]}`,
			check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Argv, []string{"qemu", "-m", ""}) }},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s"}]}`, want: "services[0].argv: required"},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":[]}]}`, want: "services[0].argv: must not be empty"},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":[""]}]}`, want: "services[0].argv[0]: must not be empty"},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":"/bin/sh"}]}`, want: "services[0].argv: expected array, got string"},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":["/bin/sh",1]}]}`, want: "services[0].argv[1]: expected string, got number"},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":["bin/sh"]}]}`, want: "services[0].argv[0]: must be an absolute path or a command name without '/'"},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":["sh","a\u0000"]}]}`, want: "services[0].argv[1]: must not contain NUL"},

		// user_namespaces
		{check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).UserNamespaces, false) }},
		{svc: `"user_namespaces":true`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).UserNamespaces, true) }},
		{svc: `"user_namespaces":"yes"`, want: "services[0].user_namespaces: expected boolean, got string"},

		// syscalls, connect
		{check: func(t *testing.T, vm *VM) { eq(t, len(svc0(vm).Syscalls.Allow), 0) }},
		{svc: `"syscalls":{"allow":["open_by_handle_at","@bpf"]}`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).Syscalls.Allow, []string{"open_by_handle_at", "@bpf"})
		}},
		{svc: `"syscalls":{"allow":["read","open_by_handle"]}`, want: `services[0].syscalls.allow[1]: unknown system call "open_by_handle"`},
		{svc: `"syscalls":{"allow":["@nope"]}`, want: `services[0].syscalls.allow[0]: unknown syscall group "@nope" (groups: @mount, @namespaces, @modules, @kexec, @bpf, @perf, @userfaultfd, @keyring, @file-handles, @swap, @reboot, @clock, @host)`},
		{svc: `"syscalls":{"deny":[]}`, want: `services[0].syscalls.deny: unknown field`},
		{svc: `"connect":["/run/vmsup/a/fs.sock"]`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Connect, []string{"/run/vmsup/a/fs.sock"}) }},
		{svc: `"connect":["fs.sock"]`, want: "services[0].connect[0]: must be an absolute path"},
		{svc: `"connect":[]`, check: func(t *testing.T, vm *VM) {
			if c := svc0(vm).Connect; c == nil || len(c) != 0 {
				t.Errorf("connect [] = %#v, want empty and not nil", c)
			}
		}},

		// env
		{check: func(t *testing.T, vm *VM) {
			if svc0(vm).Env != nil {
				t.Errorf("Env = %v, want nil", svc0(vm).Env)
			}
		}},
		{svc: `"env":{"RUST_LOG":"warn","EMPTY":"","A-B":"x=y"}`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).Env, map[string]string{"RUST_LOG": "warn", "EMPTY": "", "A-B": "x=y"})
		}},
		{svc: `"env":{"A=B":"x"}`, want: `services[0].env["A=B"]: variable name must not contain '='`},
		{svc: `"env":{"":"x"}`, want: `services[0].env[""]: variable name must not be empty`},
		{svc: `"env":{"FOO":1}`, want: `services[0].env.FOO: expected string, got number`},
		{svc: `"env":{"FOO":"a\u0000"}`, want: `services[0].env.FOO: must not contain NUL`},
		{svc: `"env":["FOO=1"]`, want: `services[0].env: expected object, got array`},
		{svc: `"env":{"FOO":"1","FOO":"2"}`, want: `services[0].env.FOO: duplicate key`},

		// cwd
		{svc: `"cwd":"/srv"`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Cwd, "/srv") }},
		{svc: `"cwd":"srv"`, want: `services[0].cwd: must be an absolute path`},

		// uid, gid resolution
		{check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).UID, uint32(1000)); eq(t, svc0(vm).GID, uint32(1000)) }},
		{svc: `"uid":5,"gid":6`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).UID, uint32(5)); eq(t, svc0(vm).GID, uint32(6)) }},
		{svc: `"uid":0`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).UID, uint32(0)); eq(t, svc0(vm).GID, uint32(1000)) }},
		{raw: `{"name":"a","services":[{"name":"s","argv":["x"],"uid":0}]}`,
			check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).UID, uint32(0)); eq(t, svc0(vm).GID, uint32(0)) }},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":["x"]}]}`,
			check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).UID, uint32(0)); eq(t, svc0(vm).GID, uint32(0)) }},
		{raw: `{"name":"a","gid":7,"services":[{"name":"s","argv":["x"],"uid":3}]}`,
			check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).UID, uint32(3)); eq(t, svc0(vm).GID, uint32(7)) }},
		{raw: `{"name":"a","gid":7,"services":[{"name":"s","argv":["x"]}]}`,
			want: `services[0].uid: no uid: set it, or a VM-level uid; root requires an explicit "uid": 0`},
		{raw: `{"name":"a","services":[{"name":"s","argv":["x"],"uid":3}]}`,
			want: `services[0].gid: no gid: set it, or a VM-level gid`},
		{raw: `{"name":"a","uid":"x","services":[{"name":"s","argv":["x"]}]}`,
			want: `uid: expected integer, got string`},
		{svc: `"uid":-3`, want: `services[0].uid: must be between 0 and 4294967294`},
		{svc: `"gid":4294967295`, want: `services[0].gid: must be between 0 and 4294967294`},

		// groups
		{svc: `"groups":[10,0,4294967294]`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Groups, []uint32{10, 0, 4294967294}) }},
		{svc: `"groups":[10,"kvm"]`, want: `services[0].groups[1]: expected integer, got string`},
		{svc: `"groups":[10,10]`, want: `services[0].groups[1]: duplicate group 10`},
		{svc: `"groups":10`, want: `services[0].groups: expected array, got number`},

		// capabilities
		{svc: `"capabilities":["CAP_DAC_READ_SEARCH","CAP_NET_ADMIN","CAP_CHECKPOINT_RESTORE"]`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).Capabilities, []Capability{
				{"CAP_DAC_READ_SEARCH", unix.CAP_DAC_READ_SEARCH},
				{"CAP_NET_ADMIN", unix.CAP_NET_ADMIN},
				{"CAP_CHECKPOINT_RESTORE", unix.CAP_CHECKPOINT_RESTORE},
			})
		}},
		{svc: `"capabilities":[]`, check: func(t *testing.T, vm *VM) { eq(t, len(svc0(vm).Capabilities), 0) }},
		{svc: `"capabilities":["cap_kill"]`, want: `services[0].capabilities[0]: unknown capability "cap_kill", did you mean "CAP_KILL"?`},
		{svc: `"capabilities":["KILL"]`, want: `services[0].capabilities[0]: unknown capability "KILL", did you mean "CAP_KILL"?`},
		{svc: `"capabilities":["CAP_LAST_CAP"]`, want: `services[0].capabilities[0]: unknown capability "CAP_LAST_CAP"`},
		{svc: `"capabilities":["CAP_KILL","CAP_KILL"]`, want: `services[0].capabilities[1]: duplicate capability CAP_KILL`},
		{svc: `"capabilities":[5]`, want: `services[0].capabilities[0]: expected string, got number`},

		// private_tmp, private_shm
		{svc: `"private_tmp":"64M","private_shm":1024`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).PrivateTmp, int64(64<<20))
			eq(t, svc0(vm).PrivateShm, int64(1024))
		}},
		{svc: `"private_tmp":"1G","private_shm":"3K"`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).PrivateTmp, int64(1<<30))
			eq(t, svc0(vm).PrivateShm, int64(3<<10))
		}},
		{svc: `"private_tmp":"4096"`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).PrivateTmp, int64(4096)) }},
		{svc: `"private_tmp":0`, want: `services[0].private_tmp: must be greater than 0`},
		{svc: `"private_tmp":"0M"`, want: `services[0].private_tmp: must be greater than 0`},
		{svc: `"private_tmp":-1`, want: `services[0].private_tmp: must be greater than 0`},
		{svc: `"private_shm":"64MB"`, want: `services[0].private_shm: invalid size "64MB" (want bytes, or a number with K, M or G)`},
		{svc: `"private_shm":"64m"`, want: `services[0].private_shm: invalid size "64m" (want bytes, or a number with K, M or G)`},
		{svc: `"private_shm":"M"`, want: `services[0].private_shm: invalid size "M" (want bytes, or a number with K, M or G)`},
		{svc: `"private_shm":"9999999999999G"`, want: `services[0].private_shm: invalid size "9999999999999G" (want bytes, or a number with K, M or G)`},
		{svc: `"private_shm":1.5`, want: `services[0].private_shm: must be an integer`},
		{svc: `"private_shm":true`, want: `services[0].private_shm: expected integer or size string like "64M", got boolean`},

		// sockets
		{svc: `"sockets":[{"path":"/run/a.sock","fd":3},{"path":"/run/b.sock","fd":4,"mode":"0660","uid":7,"gid":8}]`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).Sockets, []Socket{
				{Path: "/run/a.sock", FD: 3, Mode: 0o600, UID: 1000, GID: 1000},
				{Path: "/run/b.sock", FD: 4, Mode: 0o660, UID: 7, GID: 8},
			})
		}},
		{svc: `"uid":5,"gid":6,"sockets":[{"path":"/run/a.sock","fd":3,"mode":"777"}]`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).Sockets, []Socket{{Path: "/run/a.sock", FD: 3, Mode: 0o777, UID: 5, GID: 6}})
		}},
		{svc: `"sockets":[{"fd":3}]`, want: `services[0].sockets[0].path: required`},
		{svc: `"sockets":[{"path":"/a"}]`, want: `services[0].sockets[0].fd: required`},
		{svc: `"sockets":[{"path":"a.sock","fd":3}]`, want: `services[0].sockets[0].path: must be an absolute path`},
		{svc: `"sockets":[{"path":"/` + strings.Repeat("x", 107) + `","fd":3}]`, want: `services[0].sockets[0].path: too long for a UNIX socket (at most 107 bytes)`},
		{svc: `"sockets":[{"path":"/a","fd":2}]`, want: `services[0].sockets[0].fd: must be between 3 and 1023`},
		{svc: `"sockets":[{"path":"/a","fd":1024}]`, want: `services[0].sockets[0].fd: must be between 3 and 1023`},
		{svc: `"sockets":[{"path":"/a","fd":"3"}]`, want: `services[0].sockets[0].fd: expected integer, got string`},
		{svc: `"sockets":[{"path":"/a","fd":3,"mode":384}]`, want: `services[0].sockets[0].mode: expected octal string like "0600", got number`},
		{svc: `"sockets":[{"path":"/a","fd":3,"mode":"0800"}]`, want: `services[0].sockets[0].mode: must be octal permission bits 0000 to 0777, like "0600"`},
		{svc: `"sockets":[{"path":"/a","fd":3,"mode":"01777"}]`, want: `services[0].sockets[0].mode: must be octal permission bits 0000 to 0777, like "0600"`},
		{svc: `"sockets":[{"path":"/a","fd":3,"mode":""}]`, want: `services[0].sockets[0].mode: must be octal permission bits 0000 to 0777, like "0600"`},
		{svc: `"sockets":[{"path":"/a","fd":3,"uid":-1}]`, want: `services[0].sockets[0].uid: must be between 0 and 4294967294`},
		{svc: `"sockets":[{"path":"/a","fd":3,"owner":1}]`, want: `services[0].sockets[0].owner: unknown field`},
		{svc: `"sockets":[{"path":"/a","fd":3},{"path":"/a","fd":4}]`, want: `services[0].sockets[1].path: socket path already used by services[0].sockets[0].path`},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":["x"],"sockets":[{"path":"/a","fd":3}]},{"name":"t","argv":["x"],"sockets":[{"path":"/a","fd":3}]}]}`,
			want: `services[1].sockets[0].path: socket path already used by services[0].sockets[0].path`},

		// devices
		{svc: `"devices":[{"path":"/dev/kvm","fd":4}]`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Devices, []Device{{"/dev/kvm", 4}}) }},
		{svc: `"devices":[{"path":"/dev/kvm"}]`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Devices, []Device{{"/dev/kvm", 0}}) }},
		{svc: `"connect":["/run/vmsup/w/fs.sock"]`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Connect, []string{"/run/vmsup/w/fs.sock"}) }},
		{svc: `"connect":[]`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Connect, []string{}) }},
		{svc: `"connect":["fs.sock"]`, want: `services[0].connect[0]: must be an absolute path`},
		{svc: `"devices":[{"fd":4}]`, want: `services[0].devices[0].path: required`},
		{svc: `"devices":[{"path":"dev/kvm","fd":4}]`, want: `services[0].devices[0].path: must be an absolute path`},
		{svc: `"devices":[{"path":"/dev/kvm","fd":0}]`, want: `services[0].devices[0].fd: must be between 3 and 1023`},

		// distinct fds, reported at the later one in the file
		{svc: `"sockets":[{"path":"/a","fd":3}],"devices":[{"path":"/dev/kvm","fd":3}]`, want: `services[0].devices[0].fd: fd 3 already used by services[0].sockets[0].fd`},
		{svc: `"devices":[{"path":"/dev/kvm","fd":3}],"sockets":[{"path":"/a","fd":3}]`, want: `services[0].sockets[0].fd: fd 3 already used by services[0].devices[0].fd`},
		{svc: `"devices":[{"path":"/dev/kvm","fd":5},{"path":"/dev/net/tun","fd":5}]`, want: `services[0].devices[1].fd: fd 5 already used by services[0].devices[0].fd`},
		{svc: `"ready":{"notify_fd":4},"devices":[{"path":"/dev/kvm","fd":4}]`, want: `services[0].devices[0].fd: fd 4 already used by services[0].ready.notify_fd`},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":["x"],"devices":[{"path":"/dev/kvm","fd":3}]},{"name":"t","argv":["x"],"devices":[{"path":"/dev/kvm","fd":3}]}]}`},

		// landlock_paths
		{check: func(t *testing.T, vm *VM) {
			if svc0(vm).Landlock != nil {
				t.Error("Landlock set without landlock_paths")
			}
		}},
		{svc: `"landlock_paths":{"read":["/"],"write":["/srv"],"execute":["/usr/bin","/bin"]}`, check: func(t *testing.T, vm *VM) {
			eq(t, *svc0(vm).Landlock, LandlockPaths{Read: []string{"/"}, Write: []string{"/srv"}, Execute: []string{"/usr/bin", "/bin"}})
		}},
		{svc: `"landlock_paths":{}`, check: func(t *testing.T, vm *VM) { eq(t, *svc0(vm).Landlock, LandlockPaths{}) }},
		{svc: `"landlock_paths":{"exec":["/bin"]}`, want: `services[0].landlock_paths.exec: unknown field`},
		{svc: `"landlock_paths":{"write":["srv"]}`, want: `services[0].landlock_paths.write[0]: must be an absolute path`},
		{svc: `"landlock_paths":{"read":["/usr/"]}`, want: `services[0].landlock_paths.read[0]: must be a clean path, like "/usr"`},
		{svc: `"landlock_paths":["/"]`, want: `services[0].landlock_paths: expected object, got array`},

		// limits
		{svc: `"limits":{"memory_max":"1G","memory_high":"max","pids_max":64,"cpu_weight":100,"cpu_max":"50000 100000"}`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).Limits, Limits{MemoryMax: 1 << 30, MemoryHigh: Unlimited, PidsMax: 64, CPUWeight: 100, CPUMax: "50000 100000"})
		}},
		{svc: `"limits":{"memory_max":"max","memory_high":1048576,"pids_max":"max","cpu_weight":1,"cpu_max":"max"}`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).Limits, Limits{MemoryMax: Unlimited, MemoryHigh: 1 << 20, PidsMax: Unlimited, CPUWeight: 1, CPUMax: "max 100000"})
		}},
		{svc: `"limits":{"cpu_weight":10000,"cpu_max":"20000"}`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Limits.CPUMax, "20000 100000") }},
		{svc: `"limits":{"cpu_max":"max 1000000"}`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Limits.CPUMax, "max 1000000") }},
		{svc: `"limits":{"cpu_max":"050000 01000"}`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Limits.CPUMax, "50000 1000") }},
		{svc: `"limits":{}`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Limits, Limits{}) }},
		{svc: `"limits":{"memory_max":0}`, want: `services[0].limits.memory_max: must be greater than 0`},
		{svc: `"limits":{"memory_max":"unlimited"}`, want: `services[0].limits.memory_max: invalid size "unlimited" (want bytes, or a number with K, M or G, or "max")`},
		{svc: `"limits":{"memory_high":[]}`, want: `services[0].limits.memory_high: expected integer, size string like "64M" or "max", got array`},
		{svc: `"limits":{"pids_max":0}`, want: `services[0].limits.pids_max: must be between 1 and 4194304`},
		{svc: `"limits":{"pids_max":4194305}`, want: `services[0].limits.pids_max: must be between 1 and 4194304`},
		{svc: `"limits":{"pids_max":"64"}`, want: `services[0].limits.pids_max: must be an integer or "max"`},
		{svc: `"limits":{"pids_max":true}`, want: `services[0].limits.pids_max: expected integer or "max", got boolean`},
		{svc: `"limits":{"cpu_weight":0}`, want: `services[0].limits.cpu_weight: must be between 1 and 10000`},
		{svc: `"limits":{"cpu_weight":10001}`, want: `services[0].limits.cpu_weight: must be between 1 and 10000`},
		{svc: `"limits":{"cpu_weight":"100"}`, want: `services[0].limits.cpu_weight: expected integer, got string`},
		{svc: `"limits":{"cpu_max":"50000 999"}`, want: `services[0].limits.cpu_max: period must be between 1000 and 1000000`},
		{svc: `"limits":{"cpu_max":"50000 1000001"}`, want: `services[0].limits.cpu_max: period must be between 1000 and 1000000`},
		{svc: `"limits":{"cpu_max":"999"}`, want: `services[0].limits.cpu_max: quota must be at least 1000`},
		{svc: `"limits":{"cpu_max":"0 100000"}`, want: `services[0].limits.cpu_max: quota must be at least 1000`},
		{svc: `"limits":{"cpu_max":"-5000 100000"}`, want: `services[0].limits.cpu_max: must be "QUOTA [PERIOD]" or "max [PERIOD]" in microseconds`},
		{svc: `"limits":{"cpu_max":"50000  100000"}`, want: `services[0].limits.cpu_max: must be "QUOTA [PERIOD]" or "max [PERIOD]" in microseconds`},
		{svc: `"limits":{"cpu_max":"50%"}`, want: `services[0].limits.cpu_max: must be "QUOTA [PERIOD]" or "max [PERIOD]" in microseconds`},
		{svc: `"limits":{"cpu_max":"max max"}`, want: `services[0].limits.cpu_max: must be "QUOTA [PERIOD]" or "max [PERIOD]" in microseconds`},
		{svc: `"limits":{"cpu_max":""}`, want: `services[0].limits.cpu_max: must be "QUOTA [PERIOD]" or "max [PERIOD]" in microseconds`},
		{svc: `"limits":{"cpu_max":50000}`, want: `services[0].limits.cpu_max: expected string, got number`},
		{svc: `"limits":{"io_max":1}`, want: `services[0].limits.io_max: unknown field`},

		// rlimits
		{svc: `"rlimits":{"nofile":1048576,"memlock":"unlimited","core":0,"stack":"8M","as":"unlimited"}`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).Rlimits, []Rlimit{
				{"as", unix.RLIMIT_AS, unix.RLIM_INFINITY},
				{"core", unix.RLIMIT_CORE, 0},
				{"memlock", unix.RLIMIT_MEMLOCK, unix.RLIM_INFINITY},
				{"nofile", unix.RLIMIT_NOFILE, 1048576},
				{"stack", unix.RLIMIT_STACK, 8 << 20},
			})
		}},
		{svc: `"rlimits":{"cpu":60,"nproc":"unlimited","rtprio":0,"sigpending":100,"locks":5,"nice":0,"rttime":1,"fsize":"1G","data":1,"rss":"1K","msgqueue":"0"}`, check: func(t *testing.T, vm *VM) {
			eq(t, len(svc0(vm).Rlimits), 11)
		}},
		{svc: `"rlimits":{"NOFILE":1}`, want: `services[0].rlimits.NOFILE: unknown rlimit, did you mean "nofile"?`},
		{svc: `"rlimits":{"RLIMIT_NOFILE":1}`, want: `services[0].rlimits.RLIMIT_NOFILE: unknown rlimit, did you mean "nofile"?`},
		{svc: `"rlimits":{"files":1}`, want: `services[0].rlimits.files: unknown rlimit`},
		{svc: `"rlimits":{"nofile":-1}`, want: `services[0].rlimits.nofile: must be between 0 and 18446744073709551615`},
		{svc: `"rlimits":{"nofile":"1K"}`, want: `services[0].rlimits.nofile: must be a non-negative integer or "unlimited"`},
		{svc: `"rlimits":{"memlock":"lots"}`, want: `services[0].rlimits.memlock: must be a non-negative integer, size string like "64M" or "unlimited"`},
		{svc: `"rlimits":{"nofile":"infinity"}`, want: `services[0].rlimits.nofile: must be a non-negative integer or "unlimited"`},
		{svc: `"rlimits":{"nofile":1.5}`, want: `services[0].rlimits.nofile: must be an integer`},
		{svc: `"rlimits":{"nofile":null}`, want: `services[0].rlimits.nofile: expected non-negative integer or "unlimited", got null`},
		{svc: `"rlimits":[1]`, want: `services[0].rlimits: expected object, got array`},

		// after
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":["x"]},{"name":"t","argv":["x"],"after":["s"]}]}`,
			check: func(t *testing.T, vm *VM) { eq(t, vm.Services[1].After, []string{"s"}) }},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":["x"],"after":["t"]},{"name":"t","argv":["x"]}]}`},
		{svc: `"after":["s"]`, want: `services[0].after[0]: a service cannot come after itself`},
		{svc: `"after":["nope"]`, want: `services[0].after[0]: unknown service "nope"`},
		{svc: `"after":"s"`, want: `services[0].after: expected array, got string`},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":["x"]},{"name":"t","argv":["x"],"after":["s","s"]}]}`,
			want: `services[1].after[1]: duplicate service "s"`},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":["x"],"after":["t"]},{"name":"t","argv":["x"],"after":["s"]}]}`,
			want: `services[0].after: dependency cycle: s -> t -> s`},
		{raw: `{"name":"a","uid":0,"services":[{"name":"u","argv":["x"]},{"name":"s","argv":["x"],"after":["u","r"]},{"name":"t","argv":["x"],"after":["s"]},{"name":"r","argv":["x"],"after":["t"]}]}`,
			want: `services[1].after: dependency cycle: s -> r -> t -> s`},
		// The walk enters the cycle at t; the report starts at s, first in the file.
		{raw: `{"name":"a","uid":0,"services":[{"name":"u","argv":["x"],"after":["t"]},{"name":"s","argv":["x"],"after":["t"]},{"name":"t","argv":["x"],"after":["s"]}]}`,
			want: `services[1].after: dependency cycle: s -> t -> s`},

		// ready
		{check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Ready, Ready{}) }},
		{svc: `"ready":{"socket":"/run/q.sock"}`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).Ready, Ready{Socket: "/run/q.sock", Timeout: DefaultReadyTimeout})
		}},
		{svc: `"ready":{"socket":"/run/q.sock","timeout":"90s"}`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).Ready, Ready{Socket: "/run/q.sock", Timeout: 90 * time.Second})
		}},
		{svc: `"ready":{"exists":"/run/pid","timeout":"0"}`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Ready, Ready{Exists: "/run/pid"}) }},
		{svc: `"ready":{"exists":"/run/pid"}`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).Ready, Ready{Exists: "/run/pid", Timeout: DefaultReadyTimeout})
		}},
		{svc: `"ready":{"notify_fd":5}`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Ready, Ready{NotifyFD: 5, Timeout: DefaultReadyTimeout}) }},
		{svc: `"ready":{}`, want: `services[0].ready: must set exactly one of "socket", "exists", "notify_fd"`},
		{svc: `"ready":{"socket":"/a","exists":"/b"}`, want: `services[0].ready: must set exactly one of "socket", "exists", "notify_fd"`},
		{svc: `"ready":{"socket":"a"}`, want: `services[0].ready.socket: must be an absolute path`},
		{svc: `"ready":{"exists":"/a/"}`, want: `services[0].ready.exists: must be a clean path, like "/a"`},
		{svc: `"ready":{"notify_fd":2}`, want: `services[0].ready.notify_fd: must be between 3 and 1023`},
		{svc: `"ready":{"notify_fd":3},"sockets":[{"path":"/a","fd":3}]`, want: `services[0].sockets[0].fd: fd 3 already used by services[0].ready.notify_fd`},
		{svc: `"ready":"started"`, want: `services[0].ready: expected object, got string`},

		// on_exit
		{check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).OnExit, OnExitShutdown) }},
		{svc: `"on_exit":"restart"`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).OnExit, OnExitRestart) }},
		{svc: `"on_exit":"ignore"`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).OnExit, OnExitIgnore) }},
		{svc: `"on_exit":"stop"`, want: `services[0].on_exit: must be one of "shutdown", "restart", "ignore"`},

		// stop_signal
		{check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).StopSignal, unix.SIGTERM) }},
		{svc: `"stop_signal":"SIGINT"`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).StopSignal, unix.SIGINT) }},
		{svc: `"stop_signal":"SIGKILL"`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).StopSignal, unix.SIGKILL) }},
		{svc: `"stop_signal":"SIGSTOP"`, want: `services[0].stop_signal: must not be SIGSTOP: a stopped process never exits`},
		{svc: `"stop_signal":"TERM"`, want: `services[0].stop_signal: unknown signal "TERM", did you mean "SIGTERM"?`},
		{svc: `"stop_signal":"SIGFOO"`, want: `services[0].stop_signal: unknown signal "SIGFOO"`},
		{svc: `"stop_signal":"sigterm"`, want: `services[0].stop_signal: unknown signal "sigterm"`},
		{svc: `"stop_signal":15`, want: `services[0].stop_signal: expected string, got number`},

		// vmm
		{svc: `"vmm":{"qmp":"/run/qmp.sock"}`, check: func(t *testing.T, vm *VM) { eq(t, *svc0(vm).VMM, VMM{QMP: "/run/qmp.sock"}) }},
		{svc: `"vmm":{"cloud_hypervisor":"/run/ch.sock"}`, check: func(t *testing.T, vm *VM) { eq(t, *svc0(vm).VMM, VMM{CloudHypervisor: "/run/ch.sock"}) }},
		{svc: `"vmm":{"signal":"SIGPWR"}`, check: func(t *testing.T, vm *VM) { eq(t, *svc0(vm).VMM, VMM{Signal: unix.SIGPWR}) }},
		{svc: `"vmm":{}`, want: `services[0].vmm: must set exactly one of "qmp", "cloud_hypervisor", "signal"`},
		{svc: `"vmm":{"qmp":"/a","signal":"SIGTERM"}`, want: `services[0].vmm: must set exactly one of "qmp", "cloud_hypervisor", "signal"`},
		{svc: `"vmm":{"qmp":"qmp.sock"}`, want: `services[0].vmm.qmp: must be an absolute path`},
		{svc: `"vmm":{"cloud_hypervisor":"/` + strings.Repeat("c", 200) + `"}`, want: `services[0].vmm.cloud_hypervisor: too long for a UNIX socket (at most 107 bytes)`},
		{svc: `"vmm":{"signal":"SIGSTOP"}`, want: `services[0].vmm.signal: must not be SIGSTOP: a stopped process never exits`},
		{svc: `"vmm":{"qmp":"/a","firecracker":"/a"}`, want: `services[0].vmm.firecracker: unknown field`},
		{svc: `"vmm":"qmp"`, want: `services[0].vmm: expected object, got string`},
		{raw: `{"name":"a","uid":0,"services":[{"name":"s","argv":["x"],"vmm":{"qmp":"/q"}},{"name":"t","argv":["x"],"vmm":{"signal":"SIGTERM"}}]}`,
			want: `services[1].vmm: only one service may have vmm (already services[0].vmm)`},

		// unknown service fields
		{svc: `"foo":1`, want: `services[0].foo: unknown field`},
		{svc: `"Name":"s"`, want: `services[0].Name: unknown field`},
	})
}

func eq[T any](t *testing.T, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
}

// TestExample checks the contract's example, with its defaults filled in.
func TestExample(t *testing.T) {
	vm, errs := Load(filepath.Join("testdata", "example.json"))
	if errs != nil {
		t.Fatalf("errors: %q", errLines(errs))
	}
	eq(t, vm.Name, "work")
	eq(t, vm.RuntimeDir, "/run/vmsup/work")
	eq(t, vm.Cgroup, "/sys/fs/cgroup/vmsup/work")
	eq(t, *vm.UID, uint32(2000))
	eq(t, *vm.GID, uint32(2000))
	eq(t, vm.Landlock, LandlockRequired)
	eq(t, vm.ShutdownTimeout, 30*time.Second)
	eq(t, vm.Mount, Mount{
		Propagation:   PropagationSlave,
		ReadonlyPaths: []string{"/etc", "/usr"},
		MaskedPaths:   []string{"/root", "/home"},
		Binds:         []Bind{{Source: "/srv/vm/work", Target: "/srv/vm/work"}},
	})
	if len(vm.Services) != 2 {
		t.Fatalf("%d services", len(vm.Services))
	}

	fs := vm.Services[0]
	eq(t, fs.Name, "virtiofsd")
	eq(t, fs.Argv, []string{"/usr/lib/qemu/virtiofsd", "--fd=3", "-o", "source=/srv/vm/work"})
	eq(t, fs.Env, map[string]string{"RUST_LOG": "warn"})
	eq(t, fs.UID, uint32(2001))
	eq(t, fs.GID, uint32(2001))
	eq(t, fs.Capabilities, []Capability{{"CAP_DAC_READ_SEARCH", unix.CAP_DAC_READ_SEARCH}})
	eq(t, fs.PrivateTmp, int64(64<<20))
	eq(t, fs.PrivateShm, int64(64<<20))
	// The socket's uid is its own; its gid defaults to the service's.
	eq(t, fs.Sockets, []Socket{{Path: "/run/vmsup/work/fs.sock", FD: 3, Mode: 0o600, UID: 2002, GID: 2001}})
	eq(t, *fs.Landlock, LandlockPaths{Read: []string{"/"}, Write: []string{"/srv/vm/work"}})
	eq(t, fs.Limits, Limits{MemoryMax: 1 << 30, PidsMax: 64, CPUWeight: 100})
	eq(t, fs.Rlimits, []Rlimit{{"nofile", unix.RLIMIT_NOFILE, 1048576}})
	eq(t, fs.OnExit, OnExitShutdown)
	eq(t, fs.StopSignal, unix.SIGTERM)
	eq(t, fs.Ready, Ready{})
	if fs.VMM != nil {
		t.Errorf("virtiofsd has VMM %+v", fs.VMM)
	}

	q := vm.Services[1]
	eq(t, q.Name, "vmm")
	eq(t, q.Argv, []string{"qemu-system-x86_64", "..."})
	if q.Env != nil {
		t.Errorf("vmm Env = %v, want nil", q.Env)
	}
	eq(t, q.UID, uint32(2002))
	eq(t, q.After, []string{"virtiofsd"})
	eq(t, q.Devices, []Device{{"/dev/kvm", 4}})
	eq(t, q.Rlimits, []Rlimit{{"memlock", unix.RLIMIT_MEMLOCK, unix.RLIM_INFINITY}})
	eq(t, q.Ready, Ready{Socket: "/run/vmsup/work/qmp.sock", Timeout: DefaultReadyTimeout})
	eq(t, *q.VMM, VMM{QMP: "/run/vmsup/work/qmp.sock"})
	eq(t, q.OnExit, OnExitShutdown)
	if q.Landlock != nil {
		t.Errorf("vmm Landlock = %+v", q.Landlock)
	}
}

// TestAllProblems checks that one run reports every problem, in document
// order, including those found by checks across services.
func TestAllProblems(t *testing.T) {
	in := `{
  "name": "Bad",
  "runtime_dir": "run",
  "shutdown_timeout": "soon",
  "extra": true,
  "services": [
    {"name": "a", "argv": [], "after": ["b"], "limits": {"memory_max": "1T"}, "vmm": {"qmp": "/q"}},
    {"name": "b", "argv": ["/bin/b"], "uid": 0, "after": ["a", "zz"],
     "sockets": [{"path": "/s", "fd": 3}, {"path": "/s", "fd": 3, "mode": "999"}],
     "vmm": {"signal": "SIGTERM"}},
    {"name": "a", "argv": ["/bin/a"]}
  ]
}`
	want := []string{
		"name: must match ^[a-z0-9][a-z0-9_-]{0,63}$",
		"runtime_dir: must be an absolute path",
		`shutdown_timeout: invalid duration "soon" (want e.g. "30s")`,
		"extra: unknown field",
		`services[0].uid: no uid: set it, or a VM-level uid; root requires an explicit "uid": 0`,
		`services[0].gid: no gid: set it, or a VM-level gid`,
		"services[0].argv: must not be empty",
		"services[0].after: dependency cycle: a -> b -> a",
		`services[0].limits.memory_max: invalid size "1T" (want bytes, or a number with K, M or G, or "max")`,
		`services[1].after[1]: unknown service "zz"`,
		`services[1].sockets[1].path: socket path already used by services[1].sockets[0].path`,
		`services[1].sockets[1].fd: fd 3 already used by services[1].sockets[0].fd`,
		`services[1].sockets[1].mode: must be octal permission bits 0000 to 0777, like "0600"`,
		`services[1].vmm: only one service may have vmm (already services[0].vmm)`,
		`services[2].uid: no uid: set it, or a VM-level uid; root requires an explicit "uid": 0`,
		`services[2].gid: no gid: set it, or a VM-level gid`,
		`services[2].name: duplicate service name "a" (also services[0])`,
	}
	vm, errs := Parse([]byte(in))
	if vm != nil {
		t.Error("VM returned along with errors")
	}
	eq(t, errLines(errs), want)
}

// A syntax error is the only error; it names the innermost value being
// read where the syntax broke, or none when that is the document.
func TestSyntaxErrors(t *testing.T) {
	for in, want := range map[string]string{
		``:                                    "invalid JSON at byte 0: unexpected end of JSON input",
		`{"name": "a",}`:                      "invalid JSON at byte 14: invalid character '}' looking for beginning of object key string",
		`{"name": "a"} x`:                     "invalid JSON at byte 15: invalid character 'x' after top-level value",
		`{"name": "a"`:                        "invalid JSON at byte 12: unexpected end of JSON input",
		`{"services": [1 2]}`:                 "services[1]: invalid JSON at byte 17: invalid character '2' after array element",
		`{"name": 'a'}`:                       "name: invalid JSON at byte 10: invalid character '\\'' looking for beginning of value",
		"{\"name\": \"a\nb\"}":                "name: invalid JSON at byte 12: invalid character '\\n' in string literal",
		`{"uid": 01}`:                         "invalid JSON at byte 10: invalid character '1' after object key:value pair",
		`{"name": "a"}{"x": 1}`:               "invalid JSON at byte 14: invalid character '{' after top-level value",
		`{"services": [{"env": {"A": tru}}]}`: "services[0].env.A: invalid JSON at byte 32: invalid character '}' in literal true (expecting 'e')",
	} {
		vm, errs := Parse([]byte(in))
		if vm != nil || len(errs) != 1 || errs[0].Error() != want {
			t.Errorf("Parse(%q) = %v, %q; want one error %q", in, vm, errLines(errs), want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(doc("", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if vm, errs := Load(good); errs != nil || vm.Name != "vm" {
		t.Errorf("Load(good) = %v, %q", vm, errLines(errs))
	}

	missing := filepath.Join(dir, "missing.json")
	_, errs := Load(missing)
	eq(t, errLines(errs), []string{"cannot read " + missing + ": no such file or directory"})

	_, errs = Load(dir)
	eq(t, errLines(errs), []string{"cannot read " + dir + ": is a directory"})

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"name":"vm"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs = Load(bad)
	eq(t, errLines(errs), []string{"services: required"})
}

func TestLoadStdin(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old; r.Close() }()
	go func() {
		w.Write([]byte(doc(`"landlock":"off"`, "")))
		w.Close()
	}()
	vm, errs := Load("-")
	if errs != nil {
		t.Fatalf("Load(-): %q", errLines(errs))
	}
	eq(t, vm.Landlock, LandlockOff)
}

// TestCapabilityTable guards the hand-written table against typos: each
// name must map to a distinct number below CAP_LAST_CAP+1.
func TestCapabilityTable(t *testing.T) {
	seen := map[uint]string{}
	for name, n := range capabilities {
		if !strings.HasPrefix(name, "CAP_") || n > unix.CAP_LAST_CAP {
			t.Errorf("%s = %d", name, n)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("%s and %s are both %d", name, other, n)
		}
		seen[n] = name
	}
	if len(seen) != unix.CAP_LAST_CAP+1 {
		t.Errorf("%d capabilities, want %d", len(seen), unix.CAP_LAST_CAP+1)
	}
}
