package services_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/internal/vmtest"
)

// masked_paths, readonly_paths and binds hold inside services.
func TestMountsInsideServices(t *testing.T) {
	d := vmtest.SharedDir(t)
	for _, p := range []string{"masked", "ro", "src", "rosrc", "dst", "rodst"} {
		os.Mkdir(filepath.Join(d, p), 0o777)
		os.Chmod(filepath.Join(d, p), 0o777)
	}
	os.WriteFile(filepath.Join(d, "masked/secret"), []byte("hidden"), 0o644)
	os.WriteFile(filepath.Join(d, "maskedfile"), []byte("hidden"), 0o644)
	os.WriteFile(filepath.Join(d, "src/file"), []byte("bound"), 0o644)
	os.WriteFile(filepath.Join(d, "rosrc/file"), []byte("robound"), 0o644)
	script := strings.Join([]string{
		"ls -A " + d + "/masked | wc -l | sed 's/^/masked-entries=/'",
		"echo maskedfile=$(cat " + d + "/maskedfile)",
		"touch " + d + "/masked/new 2>/dev/null && echo masked-writable || echo masked-readonly",
		"touch " + d + "/ro/new 2>/dev/null && echo ro-writable || echo ro-readonly",
		"echo bind=$(cat " + d + "/dst/file)",
		"touch " + d + "/dst/new 2>/dev/null && echo bind-writable || echo bind-readonly",
		"echo robind=$(cat " + d + "/rodst/file)",
		"touch " + d + "/rodst/new 2>/dev/null && echo robind-writable || echo robind-readonly",
		"exec sleep 100",
	}, "; ")
	c := vmtest.NewConfig(t, "mounts", map[string]any{"name": "m", "argv": []string{"/bin/sh", "-c", script}})
	c["mount"] = map[string]any{
		"masked_paths":   []string{d + "/masked", d + "/maskedfile"},
		"readonly_paths": []string{d + "/ro"},
		"binds": []map[string]any{
			{"source": d + "/src", "target": d + "/dst"},
			{"source": d + "/rosrc", "target": d + "/rodst", "readonly": true},
		},
	}
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	vm.WaitFor("m: robind-", 10*time.Second)
	out := vm.Stderr.String()
	for _, want := range []string{"m: masked-entries=0", "m: maskedfile=\n", "m: masked-readonly", "m: ro-readonly",
		"m: bind=bound", "m: bind-writable", "m: robind=robound", "m: robind-readonly"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The host sees none of it: the bind target is still empty but for
	// what the service wrote through the writable bind (into src).
	if _, err := os.Stat(filepath.Join(d, "src/new")); err != nil {
		t.Errorf("write through the bind did not reach its source: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d, "dst/file")); err == nil {
		t.Errorf("the bind leaked into the host's mount namespace")
	}
	vm.Signal(syscall.SIGTERM)
	vm.Wait(10 * time.Second)
	vm.AssertClean(time.Second)
}

// Sockets and devices arrive on the stated fds, announced in LISTEN_*,
// and nothing else is open; the sockets have the configured owner and
// mode and accept connections from the host.
func TestSocketsAndDevices(t *testing.T) {
	prog := vmtest.Bin(t, "testprog")
	c := vmtest.NewConfig(t, "fds", map[string]any{
		"name": "f", "argv": []string{prog, "fds"},
		"env": map[string]string{"GODEBUG": "containermaxprocs=0"},
		"sockets": []map[string]any{
			{"path": vmtest.RunDir() + "/fds/b.sock", "fd": 7, "mode": "0660", "uid": 1234},
			{"path": vmtest.RunDir() + "/fds/a.sock", "fd": 3},
		},
		"devices": []map[string]any{{"path": "/dev/zero", "fd": 5}},
	})
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	vm.WaitFor("f: env ", 10*time.Second)
	out := vm.Stderr.String()
	fds := strings.Fields(strings.TrimPrefix(grepLine(out, "f: fds "), "f: fds "))
	if len(fds) != 6 || !strings.HasPrefix(fds[3], "3=socket:") || fds[4] != "5=/dev/zero" || !strings.HasPrefix(fds[5], "7=socket:") {
		t.Fatalf("want fds 0 1 2 3=socket 5=/dev/zero 7=socket and no other, got %v", fds)
	}
	env := grepLine(out, "f: env ")
	for _, want := range []string{"LISTEN_FDS=2", "LISTEN_FDNAMES=a:b"} {
		if !strings.Contains(env, want) {
			t.Errorf("env lacks %s: %s", want, env)
		}
	}
	// LISTEN_PID must be the service's own PID in the VM's namespace: the
	// only process there besides PID 1 and the shell-less service is it.
	if !strings.Contains(env, "LISTEN_PID=") {
		t.Errorf("env lacks LISTEN_PID: %s", env)
	}
	for _, s := range []struct {
		path string
		uid  uint32
		mode uint32
	}{{vmtest.RunDir() + "/fds/b.sock", 1234, 0o660}, {vmtest.RunDir() + "/fds/a.sock", 65534, 0o600}} {
		var st unix.Stat_t
		if err := unix.Stat(s.path, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != s.uid || st.Mode&0o777 != s.mode || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			t.Errorf("%s: uid %d mode %o, want uid %d mode %o socket", s.path, st.Uid, st.Mode, s.uid, s.mode)
		}
		conn, err := net.Dial("unix", s.path)
		if err != nil {
			t.Errorf("connect %s: %v", s.path, err)
		} else {
			conn.Close()
		}
	}
	vm.Signal(syscall.SIGTERM)
	vm.Wait(10 * time.Second)
	vm.AssertClean(time.Second)
}

// LISTEN_PID equals the PID the service sees for itself.
func TestListenPID(t *testing.T) {
	c := vmtest.NewConfig(t, "listenpid", map[string]any{
		"name": "l", "argv": []string{"/bin/sh", "-c", `echo "self=$$ listen=$LISTEN_PID"; exec sleep 100`},
		"sockets": []map[string]any{{"path": vmtest.RunDir() + "/listenpid/l.sock", "fd": 3}},
	})
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	vm.WaitFor("l: self=", 10*time.Second)
	line := grepLine(vm.Stderr.String(), "l: self=")
	f := strings.Fields(line)
	if len(f) != 3 || strings.TrimPrefix(f[1], "self=") != strings.TrimPrefix(f[2], "listen=") {
		t.Fatalf("LISTEN_PID is not the service's PID: %q", line)
	}
	if pid, _ := strconv.Atoi(strings.TrimPrefix(f[1], "self=")); pid < 2 {
		t.Fatalf("odd PID: %q", line)
	}
	vm.Signal(syscall.SIGTERM)
	vm.Wait(10 * time.Second)
	vm.AssertClean(time.Second)
}

// "landlock": "required" on a kernel without scoping is refused with 111
// before anything is created; "best-effort" runs and says what it lacks.
// The kernel is not mocked: the probe's answer is capped with
// VMSUP_LANDLOCK_ABI_MAX, the knob `vmsup check` honours too.
func TestLandlockRequiredRefused(t *testing.T) {
	c := vmtest.NewConfig(t, "ll-required", map[string]any{"name": "a", "argv": []string{"/bin/sleep", "100"}})
	vm := vmtest.Start(t, c, vmtest.Options{Env: []string{"VMSUP_LANDLOCK_ABI_MAX=5"}})
	if st := vm.Wait(10 * time.Second); st != 111 {
		t.Fatalf("status %d, want 111:\n%s", st, vm.Stderr.String())
	}
	if out := vm.Stderr.String(); !strings.Contains(out, "landlock is required but Landlock ABI 5 cannot scope signals") {
		t.Fatalf("unclear refusal:\n%s", out)
	}
	vm.AssertClean(0)

	c = vmtest.NewConfig(t, "ll-besteffort", map[string]any{"name": "a", "argv": []string{"/bin/sleep", "100"}})
	c["landlock"] = "best-effort"
	vm = vmtest.Start(t, c, vmtest.Options{Env: []string{"VMSUP_LANDLOCK_ABI_MAX=5"}})
	vm.PID1()
	vm.WaitFor("all services are ready", 10*time.Second)
	if !strings.Contains(vm.Stderr.String(), "landlock best-effort: Landlock ABI 5 cannot scope") {
		t.Fatalf("best-effort did not say what it lacks:\n%s", vm.Stderr.String())
	}
	vm.Signal(syscall.SIGTERM)
	vm.Wait(10 * time.Second)
	vm.AssertClean(time.Second)
}

// landlock_paths restricts the filesystem: writes succeed only below the
// write list, even where file permissions would allow them.
func TestLandlockPaths(t *testing.T) {
	d := vmtest.SharedDir(t)
	for _, p := range []string{"allowed", "denied"} {
		os.Mkdir(filepath.Join(d, p), 0o777)
		os.Chmod(filepath.Join(d, p), 0o777)
	}
	// /tmp and /dev/shm are the service's own tmpfs mounts: rules on
	// them must reach those mounts, not the directories they cover.
	script := "touch " + d + "/allowed/f && echo allowed-ok; touch " + d + "/denied/f 2>/dev/null && echo denied-WROTE || echo denied-blocked; " +
		"touch /tmp/f && echo tmp-ok; touch /dev/shm/f 2>/dev/null && echo shm-WROTE || echo shm-blocked; echo done; exec sleep 100"
	c := vmtest.NewConfig(t, "ll-paths", map[string]any{
		"name": "p", "argv": []string{"/bin/sh", "-c", script},
		"private_tmp": "1M", "private_shm": "1M",
		"landlock_paths": map[string]any{
			"read":    []string{"/"},
			"execute": []string{"/usr", "/bin", "/lib", "/lib64"},
			"write":   []string{d + "/allowed", "/dev/null", "/tmp"},
		},
	})
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	vm.WaitFor("p: done", 10*time.Second)
	out := vm.Stderr.String()
	for _, want := range []string{"p: allowed-ok", "p: denied-blocked", "p: tmp-ok", "p: shm-blocked"} {
		if !strings.Contains(out, want) {
			t.Fatalf("landlock_paths not enforced as configured (no %q):\n%s", want, out)
		}
	}
	vm.Signal(syscall.SIGTERM)
	vm.Wait(10 * time.Second)
	vm.AssertClean(time.Second)
}

func grepLine(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// Every service's /dev is its own and minimal: the basic nodes, the
// configured devices (with fd also handed over), a devpts of its own
// with max=16, nothing else; /dev, /sys (cgroup mounts included) and
// /proc/sys are read-only. With connect, its runtime dir shows only its
// own sockets and the connect entries.
func TestMinimalDevAndView(t *testing.T) {
	prog := vmtest.Bin(t, "testprog")
	rd := vmtest.RunDir() + "/devview"
	script := strings.Join([]string{
		"echo dev=$(ls -A /dev | tr '\\n' ' ')",
		"echo fuse=$(stat -c '%F %t:%T' /dev/fuse)",
		"echo fd5=$(readlink /proc/self/fd/5)",
		"grep -E ' /dev(/pts|/shm)? ' /proc/self/mountinfo | sed 's/^/mnt=/'",
		"grep -E ' /sys(/fs/cgroup[^ ]*)? ' /proc/self/mountinfo | awk '{print \"sysmnt=\" $5 \" \" $6}'",
		"grep -E ' /proc/sys ' /proc/self/mountinfo | awk '{print \"procsys=\" $6}'",
		"echo rundir=$(ls -A " + rd + " | tr '\\n' ' ')",
		"(" + prog + " dial " + rd + "/allowed.sock &)",
		"exec sleep 100",
	}, "; ")
	c := vmtest.NewConfig(t, "devview",
		map[string]any{"name": "other", "argv": []string{prog, "linger", "1ms"},
			"sockets": []map[string]any{{"path": rd + "/hidden.sock", "fd": 3, "mode": "0666"}, {"path": rd + "/allowed.sock", "fd": 4, "mode": "0666"}}},
		map[string]any{"name": "d", "argv": []string{"/bin/sh", "-c", script}, "uid": 0,
			"devices": []map[string]any{{"path": "/dev/fuse"}, {"path": "/dev/kmsg", "fd": 5}},
			"sockets": []map[string]any{{"path": rd + "/own.sock", "fd": 3}},
			"connect": []string{rd + "/allowed.sock"}})
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	vm.WaitFor("d: rundir=", 30*time.Second)
	vm.WaitFor("d: connected", 30*time.Second) // to allowed.sock
	out := vm.Stderr.String()
	want := "d: dev=fd full fuse kmsg null ptmx pts random shm stderr stdin stdout tty urandom zero"
	if !strings.Contains(out, want) {
		t.Errorf("want %q:\n%s", want, out)
	}
	for _, w := range []string{"d: fuse=character special file a:e5", "d: fd5=/dev/kmsg", "d: rundir=allowed.sock own.sock", "d: procsys=ro,"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	var devOK, ptsOK bool
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "d: mnt=") {
			continue
		}
		f := strings.Fields(l)
		switch {
		case f[5] == "/dev" && strings.HasPrefix(f[6], "ro,") && strings.Contains(l, " - tmpfs "):
			devOK = true
		case f[5] == "/dev/pts" && strings.Contains(l, " - devpts ") && strings.Contains(l, "max=16"):
			ptsOK = true
		}
	}
	if !devOK || !ptsOK {
		t.Errorf("want /dev a read-only tmpfs (%v) and /dev/pts a devpts with max=16 (%v):\n%s", devOK, ptsOK, out)
	}
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "d: sysmnt="); ok {
			n++
			if !strings.Contains(s, " ro,") && !strings.HasSuffix(s, " ro") {
				t.Errorf("writable in the service's view: %s", s)
			}
		}
	}
	if n < 2 {
		t.Errorf("want /sys and its cgroup mounts in the view, saw %d:\n%s", n, out)
	}
	vm.Signal(syscall.SIGTERM)
	vm.Wait(10 * time.Second)
	vm.AssertClean(time.Second)
}
