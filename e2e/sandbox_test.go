package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/internal/guest"
	"vmsup/internal/vmtest"
)

// Services stack their own seccomp filters on vmsup's: QEMU with
// `-sandbox on` (its whole syscall filter, elevateprivileges and spawn
// denied) boots the guest, which writes through virtiofs to the legacy
// virtiofsd (which installs a filter of its own too), and powers off on
// the stop request.
func TestVMQEMUSandboxOn(t *testing.T) {
	f := newFixture(t)
	c := f.config(t, "e2e-sandbox")
	for _, s := range c["services"].([]map[string]any) {
		if s["name"] == "vmm" {
			s["argv"] = append(s["argv"].([]string), "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")
		}
	}
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.WaitFor("vmm: "+guest.MarkerReady, 90*time.Second)
	if got, err := os.ReadFile(filepath.Join(f.share, "hello.txt")); err != nil || string(got) != "written by the guest\n" {
		t.Errorf("the guest's file on the host: %q, %v", got, err)
	}
	// QEMU runs under two filters at least: vmsup's and its own.
	procs, err := os.ReadFile(filepath.Join(c["cgroup"].(string), "svc.vmm", "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.Fields(string(procs))[0]
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "Seccomp_filters:"); ok {
			t.Logf("QEMU (PID %s) runs under %s seccomp filters", pid, strings.TrimSpace(v))
			if n, _ := strconv.Atoi(strings.TrimSpace(v)); n < 2 {
				t.Errorf("QEMU has %d seccomp filters, want vmsup's and its own", n)
			}
		}
	}
	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(60 * time.Second); st != 0 {
		t.Fatalf("status %d, want 0:\n%s", st, vm.Stderr.String())
	}
	if out := vm.Stderr.String(); !strings.Contains(out, "vmm: exited with status 0") {
		t.Errorf("QEMU did not exit cleanly:\n%s", out)
	}
	vm.AssertClean(time.Second)
}
