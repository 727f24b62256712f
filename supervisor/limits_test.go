package supervisor_test

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/cgroup"
	"vmsup/internal/vmtest"
)

// A limit whose controller the cgroup2 root does not offer is refused
// with 111 naming the controller and the cgroup, and nothing is left;
// where the root offers it, vmsup enables it from the root down (the
// test's parent has nothing enabled) and the limit is written to the
// service's cgroup. Which case runs depends on the host (this project's
// machines offer no memory controller on cgroup v2; the host-image tier
// does).
func TestLimitController(t *testing.T) {
	c := vmtest.NewConfig(t, "limits", map[string]any{"name": "a", "argv": []string{"/bin/sleep", "100"},
		"limits": map[string]any{"memory_max": "64M"}})
	mnt, err := cgroup.Mount()
	if err != nil {
		t.Fatal(err)
	}
	have, err := cgroup.Controllers(mnt)
	if err != nil {
		t.Fatal(err)
	}
	offered := false
	for _, h := range have {
		offered = offered || h == "memory"
	}
	if !offered {
		st, out := runOnce(t, 10*time.Second, "run", c.Write(t))
		if want := "cgroup controller memory is needed by limits but not available in " + mnt + " (its cgroup.controllers)"; st != 111 || !strings.Contains(out, want) {
			t.Fatalf("status %d, want 111 and %q:\n%s", st, want, out)
		}
		vmtest.Attach(t, c).AssertClean(0)
		return
	}
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	vm.WaitFor("all services are ready", 10*time.Second)
	if got, _ := cgroup.Read(filepath.Join(vm.CgroupDir, "svc.a"), "memory.max"); got != "67108864" {
		t.Fatalf("memory.max = %q, want 67108864", got)
	}
	vm.Signal(syscall.SIGTERM)
	vm.Wait(10 * time.Second)
	vm.AssertClean(time.Second)
}

// rlimits are set as both soft and hard limits.
func TestRlimits(t *testing.T) {
	c := vmtest.NewConfig(t, "rlimits", map[string]any{"name": "r",
		"argv":    []string{"/bin/sh", "-c", `echo "nofile $(ulimit -Sn) $(ulimit -Hn) core $(ulimit -Sc) $(ulimit -Hc)"; exec sleep 100`},
		"rlimits": map[string]any{"nofile": 512, "core": 0}})
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	vm.WaitFor("r: nofile", 10*time.Second)
	if line := grepLine(vm.Stderr.String(), "r: nofile"); !strings.HasSuffix(line, "nofile 512 512 core 0 0") {
		t.Fatalf("got %q, want soft and hard 512 and 0", line)
	}
	vm.Signal(syscall.SIGTERM)
	vm.Wait(10 * time.Second)
	vm.AssertClean(time.Second)
}

// "vmm": {"signal": ...} asks the guest to power off with that signal;
// the VMM's exit 0 within shutdown_timeout is graceful.
func TestVMMSignalPowerOff(t *testing.T) {
	c := vmtest.NewConfig(t, "vmm-signal",
		map[string]any{"name": "vmm", "argv": []string{"/bin/sh", "-c", `trap 'echo powering off; exit 0' USR1; trap '' TERM; echo up; while :; do sleep 0.1; done`},
			"vmm": map[string]any{"signal": "SIGUSR1"}},
		sh("helper", "exec sleep 100"))
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	vm.WaitFor("vmm: up", 10*time.Second)
	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(10 * time.Second); st != 0 {
		t.Fatalf("status %d, want 0:\n%s", st, vm.Stderr.String())
	}
	out := vm.Stderr.String()
	// The helper is stopped only after the VMM has gone.
	iv, ih := strings.Index(out, "vmsup: vmm: exited with status 0"), strings.Index(out, "vmsup: helper: killed by SIGTERM")
	if !strings.Contains(out, "vmm: powering off") || iv < 0 || ih < iv {
		t.Fatalf("want the VMM powered off by SIGUSR1, then the helper stopped:\n%s", out)
	}
	vm.AssertClean(time.Second)
}
