package supervisor_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/cgroup"
	"vmsup/internal/vmtest"
	"vmsup/services"
)

// runOnce runs `vmsup ARGS...` to completion and returns its status and
// output.
func runOnce(t *testing.T, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(vmtest.Bin(t, "vmsup"), args...)
	out := &vmtest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		t.Fatalf("vmsup %v hung for %v:\n%s", args, timeout, out)
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// A --parent-pid that is not vmsup's parent is refused with 111 before
// anything is created.
func TestWrongParentPID(t *testing.T) {
	c := vmtest.NewConfig(t, "wrong-parent", sh("a", "exec sleep 100"))
	st, out := runOnce(t, 10*time.Second, "run", "--parent-pid", "1", c.Write(t))
	if st != 111 || !strings.Contains(out, "--parent-pid 1 is not this process's parent") {
		t.Fatalf("status %d, want 111 with a clear message; output:\n%s", st, out)
	}
	vm := &vmtest.VM{CgroupDir: c["cgroup"].(string), RuntimeDir: c["runtime_dir"].(string)}
	if left := vm.Leftovers(); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// A bad config is refused with 100 and every problem named by its JSON
// path; nothing is created.
func TestBadConfig(t *testing.T) {
	c := vmtest.NewConfig(t, "bad-config", sh("a", "exec sleep 100"))
	svc := c["services"].([]map[string]any)[0]
	svc["limits"] = map[string]any{"memory_max": "lots"}
	svc["bogus"] = true
	c["shutdown_timeout"] = "soon"
	st, out := runOnce(t, 10*time.Second, "run", c.Write(t))
	if st != 100 {
		t.Fatalf("status %d, want 100; output:\n%s", st, out)
	}
	for _, want := range []string{"services[0].limits.memory_max:", "services[0].bogus: unknown field", "shutdown_timeout:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	vm := &vmtest.VM{CgroupDir: c["cgroup"].(string), RuntimeDir: c["runtime_dir"].(string)}
	if left := vm.Leftovers(); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
	// validate gives the same problems, one per line, on stdout.
	st, vout := runOnce(t, 10*time.Second, "validate", c.Write(t))
	if st != 100 || len(strings.Split(strings.TrimSpace(vout), "\n")) != 3 {
		t.Fatalf("validate: status %d, want 100 and 3 lines:\n%s", st, vout)
	}
}

// A missing binary is a clear configuration error, at once.
func TestMissingBinary(t *testing.T) {
	c := vmtest.NewConfig(t, "missing-bin",
		sh("a", "exec sleep 100"),
		map[string]any{"name": "b", "argv": []string{"/nonexistent/daemon", "--flag"}},
		map[string]any{"name": "c", "argv": []string{"no-such-daemon-in-path"}})
	st, out := runOnce(t, 10*time.Second, "run", c.Write(t))
	if st != 100 {
		t.Fatalf("status %d, want 100; output:\n%s", st, out)
	}
	for _, want := range []string{"services[1].argv[0]: stat /nonexistent/daemon: no such file or directory", "services[2].argv[0]: no-such-daemon-in-path: not found in PATH"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	vm := &vmtest.VM{CgroupDir: c["cgroup"].(string), RuntimeDir: c["runtime_dir"].(string)}
	if left := vm.Leftovers(); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// Services start in `after` order, each only once its dependency is
// ready by its rule; --notify-fd gets its newline only once every service
// is ready, and no service inherits it.
func TestAfterAndReady(t *testing.T) {
	prog := vmtest.Bin(t, "testprog")
	dir := vmtest.SharedDir(t)
	log := filepath.Join(dir, "log")
	// stamp NAME appends "NAME <nanoseconds>" to the shared log.
	stamp := func(what string) string { return `echo "` + what + ` $(date +%s%N)" >> ` + log }
	c := vmtest.NewConfig(t, "after-ready",
		map[string]any{"name": "exists", "argv": []string{"/bin/sh", "-c", stamp("exists-start") + "; sleep 0.3; " + stamp("exists-ready") + "; touch " + dir + "/flag; exec sleep 100"},
			"ready": map[string]any{"exists": dir + "/flag"}},
		map[string]any{"name": "socket", "after": []string{"exists"}, "argv": []string{"/bin/sh", "-c", stamp("socket-start") + "; sleep 0.3; " + stamp("socket-ready") + "; exec " + prog + " listen " + dir + "/s.sock 0s"},
			"ready": map[string]any{"socket": dir + "/s.sock"}},
		map[string]any{"name": "notify", "after": []string{"socket"}, "argv": []string{"/bin/sh", "-c", stamp("notify-start") + "; sleep 0.3; " + stamp("notify-ready") + "; echo >&5; exec sleep 100"},
			"ready": map[string]any{"notify_fd": 5}},
		map[string]any{"name": "last", "after": []string{"notify", "exists"}, "argv": []string{"/bin/sh", "-c", stamp("last-start") + "; exec " + prog + " fds"},
			"env": map[string]string{"GODEBUG": "containermaxprocs=0"}},
	)
	vm := vmtest.Start(t, c, vmtest.Options{Notify: true})
	vm.PID1()
	notified := make(chan int64, 1)
	go func() {
		b := make([]byte, 8)
		n, _ := vm.Notify.Read(b)
		if n == 1 && b[0] == '\n' {
			notified <- time.Now().UnixNano()
		}
		close(notified)
	}()
	var at int64
	select {
	case at = <-notified:
	case <-time.After(20 * time.Second):
		t.Fatalf("no readiness notification:\n%s", vm.Stderr.String())
	}
	if at == 0 {
		t.Fatalf("notification fd closed without a newline")
	}
	vm.WaitFor("last: fds ", 5*time.Second)
	stamps := readStamps(t, log)
	order := []string{"exists-start", "exists-ready", "socket-start", "socket-ready", "notify-start", "notify-ready", "last-start"}
	for i := 1; i < len(order); i++ {
		if stamps[order[i]] == 0 || stamps[order[i]] < stamps[order[i-1]] {
			t.Fatalf("%s (%d) is not after %s (%d): %v", order[i], stamps[order[i]], order[i-1], stamps[order[i-1]], stamps)
		}
	}
	if at < stamps["notify-ready"] {
		t.Fatalf("readiness announced at %d, before notify was ready at %d", at, stamps["notify-ready"])
	}
	// The service got 0, 1, 2 and nothing else: not vmsup's notify fd.
	fds := grepLine(vm.Stderr.String(), "last: fds ")
	if f := strings.Fields(fds); len(f) != 5 || !strings.HasPrefix(f[2], "0=") || !strings.HasPrefix(f[3], "1=") || !strings.HasPrefix(f[4], "2=") {
		t.Fatalf("want exactly fds 0 1 2, got %q", fds)
	}
	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(10 * time.Second); st != 0 {
		t.Fatalf("status %d", st)
	}
	vm.AssertClean(time.Second)
}

func readStamps(t *testing.T, p string) map[string]int64 {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 {
			m[f[0]], _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return m
}

// A service that never becomes ready holds back the notification: the
// fd is closed at the end without a newline.
func TestNeverReadyNoNotify(t *testing.T) {
	c := vmtest.NewConfig(t, "never-ready",
		map[string]any{"name": "a", "argv": []string{"/bin/sleep", "100"}, "ready": map[string]any{"exists": vmtest.RunDir() + "/never-there"}})
	vm := vmtest.Start(t, c, vmtest.Options{Notify: true})
	vm.PID1()
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, 8)
		n, _ := vm.Notify.Read(b)
		got <- b[:n]
	}()
	select {
	case b := <-got:
		t.Fatalf("notified (%q) although a service is not ready", b)
	case <-time.After(1500 * time.Millisecond):
	}
	vm.Signal(syscall.SIGTERM)
	vm.Wait(10 * time.Second)
	if b := <-got; len(b) != 0 {
		t.Fatalf("notification %q after stop, want end of file", b)
	}
	vm.AssertClean(time.Second)
}

// Every line a service writes reaches vmsup's stderr with its name.
func TestOutputAttributed(t *testing.T) {
	c := vmtest.NewConfig(t, "output",
		sh("alpha", `echo one; echo two >&2; printf 'no newline'; exec sleep 100`),
		sh("beta", `echo three; exec sleep 100`))
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	vm.WaitFor("beta: three", 10*time.Second)
	vm.WaitFor("alpha: two", 10*time.Second)
	// The shell may not have run its printf yet when "two" is seen
	// (a stop then was a lost line, not a lost flush): wait until it
	// has become sleep.
	for deadline := time.Now().Add(10 * time.Second); !isSleep(vm, "alpha"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("alpha did not exec sleep within 10s")
		}
	}
	vm.Signal(syscall.SIGTERM)
	vm.Wait(10 * time.Second)
	out := vm.Stderr.String()
	for _, want := range []string{"alpha: one\n", "alpha: two\n", "alpha: no newline\n", "beta: three\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// isSleep reports whether service name's one process runs sleep.
func isSleep(vm *vmtest.VM, name string) bool {
	pids, _ := cgroup.Procs(filepath.Join(vm.CgroupDir, "svc."+name))
	if len(pids) != 1 {
		return false
	}
	comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pids[0]) + "/comm")
	return strings.TrimSpace(string(comm)) == "sleep"
}

// A service's environment is PATH and its config's env, nothing of
// vmsup's own: not the GOMAXPROCS=1 its run script gives it (vmtest
// starts vmsup so too), nor anything else vmsup was started with.
func TestServiceEnvironment(t *testing.T) {
	c := vmtest.NewConfig(t, "environment", map[string]any{"name": "env",
		"argv": []string{"/usr/bin/env"}, "env": map[string]string{"FROM_CONFIG": "yes"}})
	vm := vmtest.Start(t, c, vmtest.Options{Env: []string{"FROM_VMSUP=leaked"}})
	vm.WaitFor("env: FROM_CONFIG=yes", 10*time.Second)
	vm.Signal(syscall.SIGTERM)
	vm.Wait(10 * time.Second)
	var got []string
	for _, l := range strings.Split(vm.Stderr.String(), "\n") {
		if v, ok := strings.CutPrefix(l, "env: "); ok && strings.Contains(v, "=") {
			got = append(got, v)
		}
	}
	want := []string{"FROM_CONFIG=yes", "PATH=" + services.DefaultPath}
	if !slices.Equal(got, want) {
		t.Errorf("the service's environment is %q, want %q", got, want)
	}
}
