package supervisor_test

import (
	"errors"
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

// Resource faults: each is refused with the documented status and one
// error line that names the cause, and leaves nothing behind (no
// process, cgroup, runtime directory or mount of the VM).

// fault runs c to completion and checks status, the error line (the
// only line vmsup prints, containing every string of want) and that
// nothing is left.
func fault(t *testing.T, c vmtest.Config, status int, want ...string) *vmtest.VM {
	t.Helper()
	vm, st := vmtest.Run(t, c, 20*time.Second)
	out := strings.TrimSpace(vm.Stderr.String())
	if st != status {
		t.Fatalf("status %d, want %d:\n%s", st, status, out)
	}
	lines := strings.Split(out, "\n")
	if len(lines) != 1 {
		t.Errorf("want one error line, got %d:\n%s", len(lines), out)
	}
	for _, w := range want {
		if !strings.Contains(lines[len(lines)-1], w) {
			t.Errorf("the error does not say %q:\n%s", w, out)
		}
	}
	if left := vm.Leftovers(); len(left) > 0 {
		t.Errorf("left behind: %s", strings.Join(left, "; "))
	}
	t.Logf("status %d: %s", st, out)
	return vm
}

// The runtime directory's file system is full: with no room for the
// directory itself, room for it but not for its mark (tmpfs charges
// extended attributes to its inode budget), or room for both but not for
// a socket in it.
func TestFaultRuntimeDirFull(t *testing.T) {
	for _, free := range []int{0, 1, 2} {
		t.Run("free inodes "+strconv.Itoa(free), func(t *testing.T) {
			mnt := fullTmpfs(t, free)
			c := vmtest.NewConfig(t, "full", map[string]any{"name": "a", "argv": []string{"/bin/sleep", "100"},
				"sockets": []map[string]any{{"path": mnt + "/full/a.sock", "fd": 3}}})
			c["runtime_dir"] = mnt + "/full"
			switch free {
			case 0:
				fault(t, c, 111, "runtime dir", mnt+"/full", "no space left on device")
			case 1:
				fault(t, c, 111, "runtime dir: mark "+mnt+"/full", "no space left on device")
			default:
				fault(t, c, 111, "a: socket "+mnt+"/full/a.sock", "no space left on device")
			}
		})
	}
}

// fullTmpfs mounts a tmpfs with few inodes and fills it, then frees
// free inodes.
func fullTmpfs(t *testing.T, free int) string {
	mnt := filepath.Join(vmtest.RunDir(), "fault-full")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=64k,nr_inodes=16"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
		os.Remove(mnt)
	})
	var made []string
	for i := 0; ; i++ {
		p := filepath.Join(mnt, "filler"+strconv.Itoa(i))
		err := os.WriteFile(p, nil, 0o644)
		if errors.Is(err, unix.ENOSPC) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		made = append(made, p)
	}
	for _, p := range made[len(made)-free:] {
		os.Remove(p)
	}
	return mnt
}

// Creating a cgroup is refused (EAGAIN: an ancestor's
// cgroup.max.descendants is reached) at each of the three levels vmsup
// creates: the VM's cgroup, the supervisor's leaf, a service's.
func TestFaultCgroupRefused(t *testing.T) {
	for _, level := range []struct {
		max  int
		what string
	}{{0, "vm"}, {1, "vm/supervisor"}, {2, "vm/svc.a"}} {
		t.Run(level.what, func(t *testing.T) {
			parent := filepath.Join(vmtest.CgroupParent(t), "fault-limit")
			if err := os.MkdirAll(parent, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(parent) })
			if err := os.WriteFile(filepath.Join(parent, "cgroup.max.descendants"), []byte(strconv.Itoa(level.max)), 0); err != nil {
				t.Fatal(err)
			}
			c := vmtest.NewConfig(t, "cgroup-refused", sh("a", "exec sleep 100"))
			c["cgroup"] = filepath.Join(parent, "vm")
			fault(t, c, 111, filepath.Join(parent, level.what), "cgroup.max.descendants")
		})
	}
}

// A service binary that is not executable is a configuration error,
// found before anything is created; one that its user may not execute
// can only be found by trying: the VM fails (1) and says why.
func TestFaultBinaryNotExecutable(t *testing.T) {
	dir := vmtest.SharedDir(t)
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := vmtest.NewConfig(t, "not-executable", map[string]any{"name": "a", "argv": []string{plain}})
	fault(t, c, 100, "services[0].argv[0]", plain, "not an executable file")

	rootOnly := filepath.Join(dir, "root-only")
	if err := os.WriteFile(rootOnly, []byte("#!/bin/sh\nexec sleep 100\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	c = vmtest.NewConfig(t, "not-executable", map[string]any{"name": "a", "argv": []string{rootOnly}})
	vm, st := vmtest.Run(t, c, 20*time.Second)
	out := vm.Stderr.String()
	if st != 1 || !strings.Contains(out, "a: cannot start: exec "+rootOnly+": permission denied") {
		t.Fatalf("status %d, want 1 and the reason:\n%s", st, out)
	}
	if left := vm.Leftovers(); len(left) > 0 {
		t.Errorf("left behind: %s", strings.Join(left, "; "))
	}
}

// A socket path already taken, by another process's live socket or by a
// file that is not a socket, is refused; what holds the path is left
// as it was, and a socket vmsup had bound before is removed.
func TestFaultSocketPathTaken(t *testing.T) {
	dir := vmtest.SharedDir(t)
	live := filepath.Join(dir, "live.sock")
	l, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ours := filepath.Join(dir, "ours.sock")
	c := vmtest.NewConfig(t, "socket-taken", map[string]any{"name": "a", "argv": []string{"/bin/sleep", "100"},
		"sockets": []map[string]any{{"path": ours, "fd": 3}, {"path": live, "fd": 4}}})
	fault(t, c, 111, "socket "+live, "already in use by another process")
	if _, err := os.Lstat(ours); err == nil {
		t.Errorf("the socket vmsup bound, %s, was left behind", ours)
	}
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	if conn, err := net.Dial("unix", live); err != nil {
		t.Errorf("the other process's socket was broken: %v", err)
	} else {
		conn.Close()
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	c = vmtest.NewConfig(t, "socket-taken", map[string]any{"name": "a", "argv": []string{"/bin/sleep", "100"},
		"sockets": []map[string]any{{"path": file, "fd": 3}}})
	fault(t, c, 111, "socket "+file, "taken by something that is not a socket")
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Errorf("the file at the socket path was changed: %q, %v", b, err)
	}
}

// A device path that does not exist is a configuration error, found
// before anything is created, like a missing binary.
func TestFaultDeviceAbsent(t *testing.T) {
	c := vmtest.NewConfig(t, "device-absent", map[string]any{"name": "a", "argv": []string{"/bin/sleep", "100"},
		"devices": []map[string]any{{"path": "/dev/null", "fd": 3}, {"path": "/dev/vmsup-no-such-device", "fd": 4}}})
	fault(t, c, 100, "services[0].devices[1].path", "/dev/vmsup-no-such-device", "no such file or directory")
}

// A second vmsup for a VM that runs is refused before it touches
// anything: the first VM's service, socket and runtime directory are
// as they were, and it still stops cleanly.
func TestFaultSecondInstance(t *testing.T) {
	sock := vmtest.RunDir() + "/second/a.sock"
	c := vmtest.NewConfig(t, "second", map[string]any{"name": "a", "argv": []string{"/bin/sleep", "100"},
		"sockets": []map[string]any{{"path": sock, "fd": 3}}})
	first := vmtest.Start(t, c, vmtest.Options{})
	first.PID1()
	first.WaitFor("all services are ready", 10*time.Second)
	svcPids := func() string {
		b, _ := os.ReadFile(filepath.Join(first.CgroupDir, "svc.a", "cgroup.procs"))
		return strings.TrimSpace(string(b))
	}
	before := svcPids()

	second := vmtest.Start(t, c, vmtest.Options{})
	st := second.Wait(20 * time.Second)
	out := strings.TrimSpace(second.Stderr.String())
	if st != 111 || strings.Count(out, "\n") != 0 || !strings.Contains(out, "this VM is already running") {
		t.Fatalf("second instance: status %d, want 111 and one line:\n%s", st, out)
	}
	if after := svcPids(); after != before || before == "" {
		t.Errorf("the first VM's service changed: %q, then %q", before, after)
	}
	if conn, err := net.Dial("unix", sock); err != nil {
		t.Errorf("the first VM's socket is gone: %v", err)
	} else {
		conn.Close()
	}
	first.Signal(syscall.SIGTERM)
	if st := first.Wait(10 * time.Second); st != 0 {
		t.Fatalf("first VM: status %d", st)
	}
	first.AssertClean(time.Second)
}
