package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/internal/guest"
	"vmsup/internal/vmtest"
)

// qemuOnce is one iteration of a vmm-qemu cell: the fixture's real VM
// (the Rust virtiofsd as the contract's example runs it, then QEMU
// booting the trixie kernel), the QEMU process
// SIGKILLed in the phase. Outcome as for the vmm role: 1 (while
// stopping, 0 if the guest powered off before the kill landed).
func (m *faultMatrix) qemuOnce(t *testing.T, ph string, i int) result {
	c := m.qemu.config(t, fmt.Sprintf("fault-qemu-%s-%d", ph, i))
	// A virtiofsd that loses a SIGTERM early in its start-up (the legacy
	// one does, then waits for its VMM forever) would make the VM wait
	// for shutdown_timeout before it is killed (exit 1). Shorter than the
	// fixture's 30 s to keep such iterations short.
	c["shutdown_timeout"] = "5s"
	vm := vmtest.Start(t, c, vmtest.Options{})
	var fd int
	inPhase := true
	switch ph {
	case phStarting:
		pid := waitProc(t, vm, "vmm")
		fd = pidfd(t, pid)
		sleepUntil(time.Now().Add(m.randDur(m.cal.launch)))
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		inPhase = filepath.Base(exe) == "vmsup-exec"
	case phWaiting:
		// QEMU runs but its QMP socket, the VMM's ready rule, is not
		// up yet: a short window.
		vm.PID1()
		pid := waitProc(t, vm, "vmm")
		fd = pidfd(t, pid)
		waitExe(t, pid, guest.QEMUBinary)
		sleepUntil(time.Now().Add(m.randDur(20 * time.Millisecond)))
		inPhase = !strings.Contains(vm.Stderr.String(), "vmm: ready")
	case phRunning:
		vm.PID1()
		vm.WaitFor("all services are ready", 60*time.Second)
		fd = pidfd(t, waitProc(t, vm, "vmm"))
		sleepUntil(time.Now().Add(m.randDur(2 * time.Second)))
	case phStopping:
		// The guest must be up to act on the power button.
		vm.PID1()
		vm.WaitFor("vmm: "+guest.MarkerReady, 90*time.Second)
		fd = pidfd(t, waitProc(t, vm, "vmm"))
		vm.Signal(syscall.SIGTERM)
		vm.WaitFor("vmm: asking the guest to power off", 10*time.Second)
		sleepUntil(time.Now().Add(m.randDur(50 * time.Millisecond)))
	}
	kill := time.Now()
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		t.Fatalf("kill QEMU: %v", err)
	}
	unix.Close(fd)
	st := vm.Wait(60 * time.Second)
	want := 1
	if !killedShows(vm, "vmm") {
		if ph != phStopping {
			t.Fatalf("vmm-qemu/%s: the kill does not show:\n%s", ph, vm.Stderr.String())
		}
		inPhase, want = false, 0 // the guest powered off first
	}
	if st != want {
		t.Fatalf("vmm-qemu/%s: status %d, want %d:\n%s", ph, st, want, vm.Stderr.String())
	}
	a := &attempt{t: t, m: m, role: "vmm-qemu", ph: ph, vm: vm}
	return result{inPhase: inPhase, clean: a.clean(kill)}
}

// waitExe waits until pid runs the program named name.
func waitExe(t *testing.T, pid int, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err == nil && filepath.Base(exe) == name {
			return
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("process %d never ran %s (now %q, %v)", pid, name, exe, err)
		}
		time.Sleep(100 * time.Microsecond)
	}
}
