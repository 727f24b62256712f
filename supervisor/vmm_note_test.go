package supervisor

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

func TestEndNote(t *testing.T) {
	exit := func(n int) unix.WaitStatus { return unix.WaitStatus(n << 8) }
	term := uint64(1) << uint(unix.SIGTERM)
	for _, c := range []struct {
		ws       unix.WaitStatus
		sent     uint64
		vmm      bool
		stopping bool
		want     string
	}{
		{exit(0), 0, true, false, ": the guest powered off"},
		{exit(0), 0, true, true, ""},
		{exit(0), 0, false, false, ""},
		{exit(1), term, false, true, " on SIGTERM: stopped as asked"},
		{exit(1), 0, false, true, ""},
		{exit(0), term, false, true, ""},
		{unix.WaitStatus(unix.SIGTERM), term, false, true, ""},
	} {
		if got := endNote(c.ws, c.sent, c.vmm, c.stopping); got != c.want {
			t.Errorf("endNote(%s, sent %#x, vmm %v, stopping %v) = %q, want %q", describe(c.ws), c.sent, c.vmm, c.stopping, got, c.want)
		}
	}
}

func TestPoweroffNote(t *testing.T) {
	gone := fmt.Errorf("qmp: connect /run/x/qmp.sock: %w", unix.ENOENT)
	if got, want := poweroffNote("vmm", gone, unix.SIGTERM), "vmm: its control socket is closed: the VMM is ending by itself; sending SIGTERM to be sure"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	other := fmt.Errorf("qmp greeting: %w", unix.EPIPE)
	if got, want := poweroffNote("vmm", other, unix.SIGTERM), "vmm: could not ask the guest to power off: qmp greeting: broken pipe; sending SIGTERM"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
