package supervisor_test

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/internal/vmtest"
)

// ready.timeout: a line when the wait begins (with the default, 60 s,
// when none is given), and a service not ready in time fails the VM with
// a line naming its rule; "0" waits for ever.
func TestReadyTimeout(t *testing.T) {
	prog := vmtest.Bin(t, "testprog")
	dir := vmtest.SharedDir(t)
	sock := filepath.Join(dir, "never.sock")
	c := vmtest.NewConfig(t, "ready-timeout",
		map[string]any{"name": "slow", "argv": []string{prog, "listen", sock, "1h"}, "ready": map[string]any{"socket": sock, "timeout": "1.5s"}},
		map[string]any{"name": "dflt", "argv": []string{"/bin/sleep", "100"}, "ready": map[string]any{"exists": filepath.Join(dir, "x")}},
		map[string]any{"name": "forever", "argv": []string{"/bin/sleep", "100"}, "ready": map[string]any{"exists": filepath.Join(dir, "y"), "timeout": "0"}})
	t0 := time.Now()
	vm := vmtest.Start(t, c, vmtest.Options{})
	st := vm.Wait(20 * time.Second)
	el := time.Since(t0)
	out := vm.Stderr.String()
	if st != 1 {
		t.Fatalf("status %d, want 1", st)
	}
	for _, want := range []string{
		"vmsup: slow: waiting up to 1.5s until ready (ready rule: socket " + sock + ")\n",
		"vmsup: dflt: waiting up to 60s until ready (ready rule: exists " + filepath.Join(dir, "x") + ")\n",
		"vmsup: forever: waiting until ready (ready rule: exists " + filepath.Join(dir, "y") + ")\n",
		"vmsup: slow: not ready within 1.5s (ready rule: socket " + sock + "): the VM failed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if el < 1500*time.Millisecond {
		t.Errorf("failed after %v, before the timeout", el)
	}
	vm.AssertClean(time.Second)
}

// Once a service is ready its ready.timeout is called off: PID 1 does
// not wake when it would have passed (on a host of idle VMs that was ten
// wake-ups a service a timeout after every start: 19 here for two).
// Stopping the timer is not enough by itself: with two processors the Go
// runtime's monitor still woke at a stopped timer's time (1 or 2 here),
// so PID 1 runs on one (oneProc), which drops it at once: 0 here, now
// and then 1 (something else), never the timers' 19.
func TestReadyTimeoutCalledOff(t *testing.T) {
	svc := func(name string) map[string]any {
		return map[string]any{"name": name, "argv": []string{"/bin/sh", "-c", "echo >&3; exec sleep 100 3>&-"},
			"ready": map[string]any{"notify_fd": 3, "timeout": "1s"}}
	}
	c := vmtest.NewConfig(t, "ready-calledoff", svc("a"), svc("b"))
	vm := vmtest.Start(t, c, vmtest.Options{})
	pid1 := vm.PID1()
	vm.WaitFor("all services are ready", 10*time.Second)
	time.Sleep(200 * time.Millisecond) // let the start-up's own work settle
	before := switches([]int{pid1})
	time.Sleep(2 * time.Second) // past both timeouts
	n := switches([]int{pid1}) - before
	if n > 2 {
		t.Errorf("PID 1 woke %d times after its services were ready", n)
	}
	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(10 * time.Second); st != 0 {
		t.Fatalf("status %d:\n%s", st, vm.Stderr.String())
	}
}
