package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vmsup/internal/guest"
	"vmsup/internal/vmtest"
)

// The Rust virtiofsd with --inode-file-handles=mandatory needs
// open_by_handle_at, which every service's default syscall filter
// refuses: the configs that run it lift it with
// "syscalls": {"allow": ["open_by_handle_at"]} (guest.RustVirtiofsdService,
// examples/). This is the control: the same VM with the allow removed.
// virtiofsd's first open_by_handle_at is refused (EPERM), it refuses to
// serve, the VM fails and nothing is written through the share; the
// other e2e tests show the same VM working with the lift.
func TestRustVirtiofsdNeedsFileHandleLift(t *testing.T) {
	f := newFixture(t)
	c := f.config(t, "e2e-nofh")
	svcs := c["services"].([]map[string]any)
	if svcs[0]["name"] != "virtiofsd" || svcs[0]["syscalls"] == nil {
		t.Fatalf("the fixture's virtiofsd does not lift open_by_handle_at: %v", svcs[0])
	}
	delete(svcs[0], "syscalls")
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	st := vm.Wait(120 * time.Second)
	out := vm.Stderr.String()
	if strings.Contains(out, guest.MarkerReady) {
		t.Fatalf("the guest used the share with open_by_handle_at refused:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(f.share, "hello.txt")); err == nil {
		t.Fatalf("the guest's file was written with open_by_handle_at refused:\n%s", out)
	}
	// virtiofsd tries the root's handle at start and refuses to run.
	if !strings.Contains(out, "Failed to open file handle for the root node: Operation not permitted") || st != 1 {
		t.Fatalf("status %d (want 1), or virtiofsd did not report open_by_handle_at refused:\n%s", st, out)
	}
	t.Logf("status %d; the end of the log:\n%s", st, tail(out, 15))
	vm.AssertClean(time.Second)
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
