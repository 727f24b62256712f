package supervisor_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"vmsup/internal/vmtest"
)

func sh(name, script string) map[string]any {
	return map[string]any{"name": name, "argv": []string{"/bin/sh", "-c", script}}
}

// A service sees vmsup as PID 1 of a PID namespace other than the host's,
// and an orphan it leaves behind is reaped: no zombie appears.
func TestPID1AndReaping(t *testing.T) {
	hostNS, _ := os.Readlink("/proc/self/ns/pid")
	c := vmtest.NewConfig(t, "pid1",
		// The subshell exits at once, so `sleep 0.2` is orphaned onto
		// PID 1; without a reaper it would stay a zombie.
		sh("a", `echo "ns=$(readlink /proc/self/ns/pid) ppid=$PPID init=$(cat /proc/1/comm)"; (sleep 0.2 &); exec sleep 100`))
	vm := vmtest.Start(t, c, vmtest.Options{})
	pid1 := vm.PID1()
	vm.WaitFor("a: ns=", 10*time.Second)
	line := grepLine(vm.Stderr.String(), "a: ns=")
	if strings.Contains(line, hostNS) {
		t.Fatalf("service is in the host's PID namespace: %s", line)
	}
	if !strings.Contains(line, "ns="+vm.PidNS) || !strings.Contains(line, "ppid=1 ") || !strings.Contains(line, "init=vmsup-pid1") {
		t.Fatalf("want ns=%s ppid=1 init=vmsup-pid1, got %q", vm.PidNS, line)
	}
	if pid1 == 1 {
		t.Fatal("PID 1 seen from the host should not be 1")
	}
	// The orphan lives 0.2 s; give the reaper time, then look for zombies
	// anywhere in the VM's PID namespace.
	time.Sleep(700 * time.Millisecond)
	if z := zombies(vm.PidNS); len(z) > 0 {
		t.Fatalf("zombies in the VM: %v", z)
	}
	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(10 * time.Second); st != 0 {
		t.Fatalf("status %d, want 0", st)
	}
	vm.AssertClean(time.Second)
}

func zombies(pidns string) []string {
	var z []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if ns, _ := os.Readlink(p + "/ns/pid"); ns != pidns {
			continue
		}
		st, _ := os.ReadFile(p + "/stat")
		// pid (comm) S ...
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && strings.HasPrefix(string(st[i+1:]), " Z") {
			z = append(z, string(st[:i+1]))
		}
	}
	return z
}

func grepLine(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// SIGTERM ends a VM gracefully with status 0 and leaves nothing behind;
// a service that ignores SIGTERM is killed at shutdown_timeout and makes
// the status 1.
func TestStop(t *testing.T) {
	t.Run("graceful", func(t *testing.T) {
		c := vmtest.NewConfig(t, "stop-ok",
			sh("a", "exec sleep 100"),
			// Also masks and a private /tmp, so mounts exist to be left.
			map[string]any{"name": "b", "argv": []string{"/bin/sh", "-c", "echo up; exec sleep 100"}, "private_tmp": "1M"})
		c["mount"] = map[string]any{"masked_paths": []string{"/root"}}
		vm := vmtest.Start(t, c, vmtest.Options{})
		vm.PID1()
		vm.WaitFor("all services are ready", 10*time.Second)
		vm.WaitFor("b: up", 10*time.Second)
		vm.Signal(syscall.SIGTERM)
		if st := vm.Wait(10 * time.Second); st != 0 {
			t.Fatalf("status %d, want 0", st)
		}
		vm.AssertClean(time.Second)
	})
	t.Run("timeout", func(t *testing.T) {
		c := vmtest.NewConfig(t, "stop-timeout",
			sh("stubborn", `trap "" TERM; echo trapped; while :; do sleep 1; done`))
		c["shutdown_timeout"] = "1s"
		vm := vmtest.Start(t, c, vmtest.Options{})
		vm.PID1()
		vm.WaitFor("stubborn: trapped", 10*time.Second)
		t0 := time.Now()
		vm.Signal(syscall.SIGTERM)
		st := vm.Wait(10 * time.Second)
		el := time.Since(t0)
		if st != 1 {
			t.Fatalf("status %d, want 1", st)
		}
		if el < time.Second {
			t.Fatalf("killed after %v, before shutdown_timeout 1s", el)
		}
		vm.AssertClean(time.Second)
		t.Logf("stop request to exit: %v", el)
	})
	t.Run("second-sigterm-forces", func(t *testing.T) {
		c := vmtest.NewConfig(t, "stop-twice",
			sh("stubborn", `trap "" TERM; echo trapped; while :; do sleep 1; done`))
		c["shutdown_timeout"] = "60s"
		vm := vmtest.Start(t, c, vmtest.Options{})
		vm.PID1()
		vm.WaitFor("stubborn: trapped", 10*time.Second)
		vm.Signal(syscall.SIGTERM)
		vm.WaitFor("stop requested", 5*time.Second)
		vm.Signal(syscall.SIGTERM)
		if st := vm.Wait(5 * time.Second); st != 1 {
			t.Fatalf("status %d, want 1", st)
		}
		vm.AssertClean(time.Second)
	})
}

// Killing the parent given by --parent-pid, or SIGKILLing either vmsup
// process, leaves nothing after one second.
func TestAbruptDeath(t *testing.T) {
	start := func(t *testing.T, name string) (*vmtest.VM, int) {
		c := vmtest.NewConfig(t, name,
			sh("a", `(sleep 100 &); exec sleep 100`),
			map[string]any{"name": "b", "argv": []string{"/bin/sleep", "100"}, "private_tmp": "1M", "private_shm": "1M"})
		vm := vmtest.Start(t, c, vmtest.Options{})
		pid1 := vm.PID1()
		vm.WaitFor("all services are ready", 10*time.Second)
		return vm, pid1
	}
	t.Run("sigkill-outer", func(t *testing.T) {
		vm, _ := start(t, "kill-outer")
		vm.Signal(syscall.SIGKILL)
		vm.Wait(5 * time.Second)
		vm.AssertClean(time.Second)
	})
	// The outer stage killed the moment it has created something (the
	// VM's cgroup, then its runtime directory): PID 1 must already be
	// there to remove it.
	for _, what := range []string{"cgroup", "runtime-dir"} {
		t.Run("sigkill-outer-at-"+what, func(t *testing.T) {
			c := vmtest.NewConfig(t, "kill-at-"+what, sh("a", "exec sleep 100"))
			dir := vmtest.CgroupParent(t)
			if what == "runtime-dir" {
				dir = vmtest.RunDir()
			}
			os.MkdirAll(dir, 0o755)
			in := watchCreate(t, dir)
			vm := vmtest.Start(t, c, vmtest.Options{})
			waitCreated(t, in, c["name"].(string))
			vm.Signal(syscall.SIGKILL)
			vm.Wait(5 * time.Second)
			vm.AssertClean(time.Second)
			// Almost always: the kill comes before the hand-over.
			t.Logf("PID 1 removed what the outer stage created: %v", strings.Contains(vm.Stderr.String(), "the outer vmsup died while creating the VM"))
		})
	}
	t.Run("sigkill-pid1", func(t *testing.T) {
		vm, pid1 := start(t, "kill-pid1")
		syscall.Kill(pid1, syscall.SIGKILL)
		if st := vm.Wait(5 * time.Second); st != 111 {
			t.Fatalf("status %d, want 111", st)
		}
		vm.AssertClean(time.Second)
	})
	// The log reader (s6-log, a terminal) goes away first: vmsup must
	// not die of SIGPIPE on its next log line and skip the cleanup.
	t.Run("log-reader-gone", func(t *testing.T) {
		c := vmtest.NewConfig(t, "log-gone", sh("a", `exec sleep 100`))
		cfg := c.Write(t)
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(vmtest.Bin(t, "vmsup"), "run", cfg)
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("no readiness line: %v", err)
			}
			if strings.Contains(line, "all services are ready") {
				break
			}
		}
		vm := vmtest.Attach(t, c)
		vm.PID1()
		r.Close() // the reader is gone; the next line raises SIGPIPE
		cmd.Process.Kill()
		cmd.Wait()
		vm.AssertClean(time.Second)
	})
	t.Run("parent-dies", func(t *testing.T) {
		c := vmtest.NewConfig(t, "parent-dies", sh("a", `(sleep 100 &); exec sleep 100`))
		vm := vmtest.Start(t, c, vmtest.Options{UnderShell: true})
		vm.PID1()
		vm.WaitFor("all services are ready", 10*time.Second)
		vm.Signal(syscall.SIGKILL) // the parent shell, not vmsup
		vm.Wait(5 * time.Second)
		vm.AssertClean(time.Second)
	})
}

// watchCreate returns an inotify descriptor watching dir for new entries.
func watchCreate(t *testing.T, dir string) int {
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(in) })
	if _, err := unix.InotifyAddWatch(in, dir, unix.IN_CREATE); err != nil {
		t.Fatal(err)
	}
	return in
}

// waitCreated returns as soon as an entry called name was created.
func waitCreated(t *testing.T, in int, name string) {
	buf := make([]byte, 4096)
	deadline := time.Now().Add(10 * time.Second)
	for {
		fds := []unix.PollFd{{Fd: int32(in), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, int(time.Until(deadline).Milliseconds())+1); n == 0 {
			t.Fatalf("%s was not created within 10 s", name)
		}
		n, err := unix.Read(in, buf)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			got := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			if got == name {
				return
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}
