package explain

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"vmsup/config"
	"vmsup/landlock"
	"vmsup/seccomp"
	"vmsup/services/launcher"
	"vmsup/supervisor"
)

// one analyses a VM of uid 4000 with the given services (JSON objects)
// on a host of Landlock ABI abi.
func one(t *testing.T, abi int, services ...string) *Report {
	t.Helper()
	doc := `{"name": "w", "uid": 4000, "gid": 4000, "landlock": "best-effort", "services": [` + strings.Join(services, ",") + `]}`
	vm, errs := config.Parse([]byte(doc))
	if len(errs) > 0 {
		t.Fatalf("%s: %v", doc, errs)
	}
	return AnalyseOn(vm, Host{Release: "6.18.0", LandlockABI: abi})
}

func names(bs []Barrier) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

func barrier(bs []Barrier, name string) string {
	for _, b := range bs {
		if b.Name == name {
			return b.Detail
		}
	}
	return ""
}

func anyHas(lines []string, sub string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, sub) })
}

// CAP_DAC_READ_SEARCH: the filter refuses open_by_handle_at unless
// syscalls.allow lifts it; only then does it get past masks (the status
// record's included), and without Landlock read paths it reads any file
// on the host.
func TestFileHandles(t *testing.T) {
	const svc = `{"name": "fs", "argv": ["/bin/true"], "capabilities": ["CAP_DAC_READ_SEARCH"]%s}`
	for _, c := range []struct {
		name, extra      string
		handles, limited bool
		verdict, grant   string
	}{
		{"default", "", false, false, "not by handle: open_by_handle_at is refused", "open_by_handle_at refused by its syscall filter"},
		{"allow name", `, "syscalls": {"allow": ["open_by_handle_at"]}`, true, false, "reads any file on the host, by handle past every mask", "open_by_handle_at allowed"},
		{"allow group", `, "syscalls": {"allow": ["@file-handles"]}`, true, false, "reads any file on the host, by handle past every mask", "open_by_handle_at allowed"},
		{"allow, Landlock read", `, "syscalls": {"allow": ["open_by_handle_at"]}, "landlock_paths": {"read": ["/srv"]}`, true, true, "below its Landlock read paths, by handle too", "Landlock limits both"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := one(t, 7, fmt.Sprintf(svc, c.extra)).Services[0]
			if !strings.Contains(s.Verdict, c.verdict) {
				t.Errorf("verdict %q, want %q", s.Verdict, c.verdict)
			}
			if g := s.Capabilities[0].Grants; !strings.Contains(g, c.grant) {
				t.Errorf("grant %q, want %q", g, c.grant)
			}
			if got := barrier(s.Lacks, "masks") != ""; got != c.handles {
				t.Errorf("lacks masks: %v, want %v (%v)", got, c.handles, s.Lacks)
			}
			hidden := barrier(s.Enforced, "status record hidden") != ""
			if hidden != (!c.handles || c.limited) {
				t.Errorf("status record hidden enforced: %v (lacks %v)", hidden, names(s.Lacks))
			}
		})
	}
}

// The filter is always there; each service's lines say what its allow
// lifts, whole groups, single calls of a group, and names no group holds.
func TestSyscallFilterLines(t *testing.T) {
	r := one(t, 7, `{"name": "a", "argv": ["/bin/true"]}`,
		`{"name": "b", "argv": ["/bin/true"], "syscalls": {"allow": ["@bpf", "keyctl", "getpid"]}}`)
	if len(r.SyscallFilter) != len(seccomp.Groups) || r.SyscallFilter[0].Name != seccomp.Groups[0].Name {
		t.Errorf("filter groups: %+v", r.SyscallFilter)
	}
	a, b := r.Services[0], r.Services[1]
	if want := fmt.Sprintf("refuses (EPERM) %d calls", len(seccomp.Refused(nil))); !anyHas(a.Syscalls, want) || !anyHas(a.Syscalls, "lifts nothing") {
		t.Errorf("a: %q", a.Syscalls)
	}
	for _, want := range []string{
		fmt.Sprintf("refuses (EPERM) %d calls", len(seccomp.Refused([]string{"@bpf", "keyctl", "getpid"}))),
		"@bpf whole (bpf)", "keyctl of @keyring (add_key, request_key still refused)", "getpid, which no group refuses",
	} {
		if !anyHas(b.Syscalls, want) {
			t.Errorf("b: no %q in %q", want, b.Syscalls)
		}
	}
	for _, s := range r.Services {
		if barrier(s.Lacks, "syscall filter") != "" || barrier(s.Enforced, "syscall filter") == "" {
			t.Errorf("%s: the filter is enforced: %v", s.Name, s.Lacks)
		}
	}
	// Lifting every group loads no filter.
	var all []string
	for _, g := range seccomp.GroupNames() {
		all = append(all, `"`+g+`"`)
	}
	c := one(t, 7, `{"name": "c", "argv": ["/bin/true"], "syscalls": {"allow": [`+strings.Join(all, ",")+`]}}`).Services[0]
	if barrier(c.Lacks, "syscall filter") == "" || !anyHas(c.Syscalls, "no filter") {
		t.Errorf("every group lifted: %q %v", c.Syscalls, c.Lacks)
	}
}

// A capability whose whole grant goes through refused calls is void: no
// "root in all but name" unless allow lifts them.
func TestVoidCapability(t *testing.T) {
	s := one(t, 7, `{"name": "m", "argv": ["/bin/true"], "capabilities": ["CAP_SYS_MODULE"]}`).Services[0]
	if strings.HasPrefix(s.Verdict, "high") || !strings.Contains(s.Capabilities[0].Grants, "void") {
		t.Errorf("refused: %q / %q", s.Verdict, s.Capabilities[0].Grants)
	}
	s = one(t, 7, `{"name": "m", "argv": ["/bin/true"], "capabilities": ["CAP_SYS_MODULE"], "syscalls": {"allow": ["@modules"]}}`).Services[0]
	if !strings.HasPrefix(s.Verdict, "high") {
		t.Errorf("allowed: %q", s.Verdict)
	}
	// CAP_SYS_ADMIN unmounts masks only with a mount call allowed.
	s = one(t, 7, `{"name": "m", "argv": ["/bin/true"], "capabilities": ["CAP_SYS_ADMIN"]}`).Services[0]
	if barrier(s.Lacks, "masks") != "" || barrier(s.Enforced, "status record hidden") == "" {
		t.Errorf("CAP_SYS_ADMIN, @mount refused: %v", s.Lacks)
	}
	s = one(t, 7, `{"name": "m", "argv": ["/bin/true"], "capabilities": ["CAP_SYS_ADMIN"], "syscalls": {"allow": ["umount2"]}}`).Services[0]
	if barrier(s.Lacks, "masks") == "" || barrier(s.Lacks, "status record hidden") == "" {
		t.Errorf("CAP_SYS_ADMIN, umount2 allowed: %v", s.Lacks)
	}
}

// network none is its own namespace (no abstract sockets between
// siblings even where Landlock cannot scope); host shares the host's;
// each TAP is described with its queues, bridge and owner.
func TestNetworkAndTaps(t *testing.T) {
	r := one(t, 5, `{"name": "a", "argv": ["/bin/true"]}`, `{"name": "b", "argv": ["/bin/true"],
		"taps": [{"name": "vm-w0", "fd": 4, "queues": 2, "bridge": "br0"}]}`)
	for _, s := range r.Services {
		if !strings.HasPrefix(s.Network[0], "none: a network namespace of its own") || barrier(s.Enforced, "network namespace") == "" {
			t.Errorf("%s: %q %v", s.Name, s.Network, s.Enforced)
		}
	}
	tap := r.Services[1].Network
	for _, want := range []string{"TAP vm-w0", "2 queues as fds 4-5", "owner uid 4000", "raw Ethernet frames", "on bridge br0"} {
		if !anyHas(tap, want) {
			t.Errorf("no %q in %q", want, tap)
		}
	}
	abstract := func(r *Report) bool {
		for _, p := range r.Pairs {
			for _, o := range p.Operations {
				if strings.HasPrefix(o.Call, "connect(2) abstract sockets") {
					return true
				}
			}
		}
		return false
	}
	if abstract(r) {
		t.Errorf("abstract sockets between own namespaces: %+v", r.Pairs)
	}
	r = one(t, 5, `{"name": "a", "argv": ["/bin/true"], "network": "host"}`, `{"name": "b", "argv": ["/bin/true"], "network": "host"}`)
	if !abstract(r) {
		t.Errorf("host network, ABI 5: no abstract socket operation: %+v", r.Pairs)
	}
	if s := r.Services[0]; barrier(s.Lacks, "network namespace") == "" || !strings.HasPrefix(s.Network[0], "host:") {
		t.Errorf("host: %q %v", s.Network, s.Lacks)
	}
}

// The minimal /dev, devices with and without fd, /sys and /proc, and
// the runtime dir's view.
func TestDevicesAndView(t *testing.T) {
	r := one(t, 7, `{"name": "a", "argv": ["/bin/true"], "devices": [{"path": "/dev/kvm", "fd": 4}, {"path": "/dev/net/tun"}]}`,
		`{"name": "b", "argv": ["/bin/true"], "ready": {"socket": "/run/vmsup/w/b.sock"}}`,
		`{"name": "c", "argv": ["/bin/true"], "connect": []}`)
	a := r.Services[0]
	nodes, _ := launcher.BasicNodeNames()
	if !anyHas(a.Devices, strings.Join(nodes, " ")) || !anyHas(a.Devices, fmt.Sprintf("at most %d ptys", launcher.PtyMax)) {
		t.Errorf("minimal /dev: %q", a.Devices)
	}
	if !anyHas(a.Devices, "/dev/kvm: in its /dev as on the host (type, number, mode, owner), and opened by vmsup and handed over as fd 4") ||
		!anyHas(a.Devices, "/dev/net/tun: in its /dev as on the host (type, number, mode, owner); it opens it if that mode lets it (no fd)") {
		t.Errorf("devices: %q", a.Devices)
	}
	ro, masked := supervisor.ProcView()
	if !anyHas(a.FileSystem, "/sys: read-only") || !anyHas(a.FileSystem, "read-only: "+strings.Join(ro, " ")) || !anyHas(a.FileSystem, strings.Join(masked, " ")) {
		t.Errorf("/sys and /proc: %q", a.FileSystem)
	}
	for i, want := range []string{"read-only in its view", "writable in its view", "in its view an empty read-only tmpfs"} {
		if s := r.Services[i]; !anyHas(s.FileSystem, want) || !anyHas(s.FileSystem, "/run/vmsup is an empty read-only tmpfs") {
			t.Errorf("%s: no %q in %q", s.Name, want, s.FileSystem)
		}
	}
}

// connect: on ABI 7 it holds in the runtime dir's view only, on ABI 9
// Landlock enforces it for every pathname socket; a service whose
// connect leaves out a sibling's socket has no connect(2) operation on it.
func TestConnect(t *testing.T) {
	const server = `{"name": "s", "argv": ["/bin/true"], "sockets": [{"path": "/run/vmsup/w/s.sock", "fd": 3, "mode": "0660"}]}`
	client := func(connect string) string {
		return `{"name": "c", "argv": ["/bin/true"], "after": ["s"]` + connect + `}`
	}
	op := func(r *Report) bool {
		for _, p := range r.Pairs {
			for _, o := range p.Operations {
				if o.Call == "connect(2) /run/vmsup/w/s.sock: c on s" {
					return true
				}
			}
		}
		return false
	}
	for _, c := range []struct {
		name, connect string
		abi           int
		line          string
		enforced, op  bool
	}{
		{"none, ABI 7", "", 7, "no connect: may connect to any other pathname socket", false, true},
		{"listed, ABI 7", `, "connect": ["/run/vmsup/w/s.sock"]`, 7, "no other socket of its runtime dir", false, true},
		{"empty, ABI 7", `, "connect": []`, 7, "no other socket of its runtime dir", false, false},
		{"empty, ABI 9", `, "connect": []`, landlock.ResolveUnixABI, fmt.Sprintf("Landlock ABI %d refuses the rest (RESOLVE_UNIX)", landlock.ResolveUnixABI), true, false},
		{"none, ABI 9", "", landlock.ResolveUnixABI, "no connect", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := one(t, c.abi, server, client(c.connect))
			s := r.Services[1]
			if !anyHas(s.Sockets, c.line) {
				t.Errorf("no %q in %q", c.line, s.Sockets)
			}
			if got := barrier(s.Enforced, "pathname socket rule") != ""; got != c.enforced {
				t.Errorf("pathname socket rule enforced: %v (%v / %v)", got, s.Enforced, s.Lacks)
			}
			if op(r) != c.op {
				t.Errorf("connect operation: %v, want %v: %+v", op(r), c.op, r.Pairs)
			}
		})
	}
}
