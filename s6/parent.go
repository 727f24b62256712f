// Package s6 holds what vmsup needs to live under s6-supervise: dying with
// the parent, the readiness notification fd, and service directories.
//
// It owns the s6 side of vmsup: parent death, readiness and the service
// directory with its run and finish scripts. It must not supervise the VM
// (package supervisor does) or run s6 programs.
package s6

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// DieWithParent makes the kernel SIGKILL this process when its parent
// dies. want is the parent the caller expects (--parent-pid), or 0.
//
// The order makes it race-free: the death signal is armed first, then the
// parent is checked. If the parent died before the prctl, getppid already
// names someone else (init or a subreaper), so the mismatch is caught; if
// it dies after, the signal fires. The parent is s6-supervise, a
// single-threaded C program, so the "parent thread exits" caveat of
// PR_SET_PDEATHSIG does not apply to this edge.
func DieWithParent(want int) error {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_PDEATHSIG): %w", err)
	}
	if want == 0 {
		return nil
	}
	if got := os.Getppid(); got != want {
		return fmt.Errorf("--parent-pid %d is not this process's parent (the parent is %d): it has exited or the wrong PID was given", want, got)
	}
	return nil
}

// NotifyReady writes the one newline s6 waits for on its notification fd
// and closes the fd, so no later process can inherit or reuse it.
func NotifyReady(f *os.File) error {
	if f == nil {
		return nil
	}
	_, err := f.Write([]byte("\n"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
