package supervisor_test

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/internal/vmtest"
)

// SIGQUIT (s6-svc -q) is a stop request, not Go's goroutine dump; ps
// shows the VM's name in PID 1's title; a line says when each service
// started, with its PID.
func TestQuitAndTitle(t *testing.T) {
	c := vmtest.NewConfig(t, "quit-title", sh("a", "exec sleep 100"))
	vm := vmtest.Start(t, c, vmtest.Options{})
	pid1 := vm.PID1()
	vm.WaitFor("all services are ready", 10*time.Second)
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid1) + "/cmdline")
	if string(cmdline) != "vmsup-pid1\x00quit-title\x00" {
		t.Errorf("PID 1's command line %q, want vmsup-pid1 quit-title", cmdline)
	}
	if !regexp.MustCompile(`(?m)^vmsup: a: started \(pid \d+ in the VM\)$`).MatchString(vm.Stderr.String()) {
		t.Errorf("no start line with the PID")
	}
	vm.Signal(syscall.SIGQUIT)
	if st := vm.Wait(10 * time.Second); st != 0 {
		t.Fatalf("status %d after SIGQUIT, want 0", st)
	}
	out := vm.Stderr.String()
	if !strings.Contains(out, "vmsup: SIGQUIT: stopping") || strings.Contains(out, "goroutine ") {
		t.Errorf("SIGQUIT not handled as a stop:\n%s", out)
	}
	vm.AssertClean(time.Second)
}

// One Ctrl-C or Ctrl-\ in a terminal (the signal to the whole process
// group: the outer vmsup and PID 1) is one stop request, not two: the VM
// stops gracefully, its service gets its stop signal and is not killed.
func TestKeyboardSignalIsOneStop(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			c := vmtest.NewConfig(t, "keyboard-"+strings.ToLower(unix.SignalName(sig)),
				sh("a", `trap 'echo got TERM; sleep 0.3; exit 0' TERM; echo up; while :; do sleep 0.1; done`))
			// setsid: vmsup leads a process group of its own, as in a terminal.
			vm := vmtest.Start(t, c, vmtest.Options{Wrap: []string{"setsid"}})
			vm.PID1()
			vm.WaitFor("a: up", 10*time.Second)
			syscall.Kill(-vm.Cmd.Process.Pid, sig)
			if st := vm.Wait(10 * time.Second); st != 0 {
				t.Fatalf("status %d, want 0", st)
			}
			out := vm.Stderr.String()
			if strings.Contains(out, "second stop request") || !strings.Contains(out, "a: got TERM") {
				t.Errorf("not one graceful stop:\n%s", out)
			}
			vm.AssertClean(time.Second)
		})
	}
}

// Every line of a multi-line error carries vmsup's prefix.
func TestMultiLineErrorPrefixed(t *testing.T) {
	c := vmtest.NewConfig(t, "multi-line",
		map[string]any{"name": "a", "argv": []string{"/no/such/a"}},
		map[string]any{"name": "b", "argv": []string{"/no/such/b"}})
	vm, st := vmtest.Run(t, c, 10*time.Second)
	if st != 100 {
		t.Fatalf("status %d, want 100", st)
	}
	lines := strings.Split(strings.TrimSpace(vm.Stderr.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one line per problem:\n%s", vm.Stderr.String())
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "vmsup: config: services[") {
			t.Errorf("line without the prefix: %q", l)
		}
	}
}
