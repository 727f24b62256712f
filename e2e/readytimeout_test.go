package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vmsup/internal/vmtest"
	"vmsup/status"
)

// A real VM (virtiofsd and QEMU booting the guest) whose VMM is never
// ready by its rule: a line when the wait begins, `vmsup status` shows
// the VMM starting and what it waits for, and once ready.timeout passes
// the VM fails (1) with a line naming the rule; the guest is powered off
// and nothing is left.
func TestVMReadyTimeout(t *testing.T) {
	f := newFixture(t)
	name := "e2e-ready-timeout"
	c := f.config(t, name)
	never := filepath.Join(vmtest.RunDir(), name, "never.sock")
	vmm := c["services"].([]map[string]any)[1]
	vmm["ready"] = map[string]any{"socket": never, "timeout": "4s"}
	c["shutdown_timeout"] = "10s" // the guest may still be booting when asked to power off
	t0 := time.Now()
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	vm.WaitFor("vmm: waiting up to 4s until ready (ready rule: socket "+never+")", 30*time.Second)

	out, errs, code := vmtest.StatusCmd(t, "--json", name)
	if code != 0 {
		t.Fatalf("vmsup status: %d %s", code, errs)
	}
	var r status.VM
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	for _, s := range r.Services {
		if s.Name == "vmm" && (s.State != status.Starting || s.WaitsFor != "socket "+never || s.HostPID == 0) {
			t.Errorf("vmm while waiting: %+v", s)
		}
	}

	st := vm.Wait(60 * time.Second)
	el := time.Since(t0)
	log := vm.Stderr.String()
	if st != 1 {
		t.Fatalf("status %d, want 1:\n%s", st, log)
	}
	if want := "vmm: not ready within 4s (ready rule: socket " + never + "): the VM failed"; !strings.Contains(log, want) {
		t.Errorf("no %q in:\n%s", want, log)
	}
	if !strings.Contains(log, "vmm: asking the guest to power off") {
		t.Errorf("the guest was not asked to power off:\n%s", log)
	}
	if el < 4*time.Second {
		t.Errorf("ended after %v, before the timeout", el)
	}
	vm.AssertClean(time.Second)
	if _, err := os.Stat(filepath.Join(vmtest.StatusDir(), name)); err == nil {
		t.Error("status record left")
	}
	t.Logf("start to failure: %v", el.Round(time.Millisecond))
}
