package services

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"vmsup/services/launcher"
)

// LauncherPath returns vmsup-exec, which is installed next to vmsup.
func LauncherPath() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(self), "vmsup-exec")
	if err := checkExecutable(p); err != nil {
		return "", fmt.Errorf("vmsup-exec must be installed next to vmsup: %w", err)
	}
	return p, nil
}

// Launch is one started launcher: its PID and, once the launcher has
// exec'd the service or failed, the outcome on Result (nil = exec'd).
type Launch struct {
	Pid    int
	Result <-chan error
}

// Start forks the launcher exe (vmsup-exec, see LauncherPath) into the
// cgroup open at cgroupFD and a new mount namespace. files maps the
// service's descriptor numbers to what it receives there; out becomes
// its stdout and stderr. sp is not changed: what differs from one launch
// to the next (descriptor numbers, the ruleset) goes into a copy.
//
// The outcome arrives through a close-on-exec pipe: end of file with no
// data means execve succeeded, anything else is the launcher's error.
// The supervisor must not treat an exit seen before the outcome as final:
// Result always arrives, at the latest when the launcher dies.
func Start(exe string, sp *Spec, files map[int]*os.File, out *os.File, cgroupFD int) (*Launch, error) {
	rs, rules, err := sp.ruleset()
	if err != nil {
		return nil, err
	}
	if rs >= 0 {
		defer unix.Close(rs)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer errW.Close()

	max := 2
	for fd := range files {
		if fd > max {
			max = fd
		}
	}
	ls := sp.Spec // this launch's
	ls.ErrFD = max + 1
	ls.Keep = make([]int, 0, len(files))
	null, err := os.Open(os.DevNull)
	if err != nil {
		errR.Close()
		return nil, err
	}
	defer null.Close()
	// Index = descriptor number in the child; ^0 closes that number.
	ls.Ruleset, ls.Rules, ls.NetNS = -1, rules, -1
	n := ls.ErrFD + 1
	if rs >= 0 {
		ls.Ruleset = n
		n++
	}
	if sp.NetNamespace != nil {
		ls.NetNS = n
		n++
	}
	fdv := make([]uintptr, n)
	for i := range fdv {
		fdv[i] = ^uintptr(0)
	}
	fdv[0], fdv[1], fdv[2] = null.Fd(), out.Fd(), out.Fd()
	for fd, f := range files {
		fdv[fd] = f.Fd()
		ls.Keep = append(ls.Keep, fd)
	}
	fdv[ls.ErrFD] = errW.Fd()
	if rs >= 0 {
		fdv[ls.Ruleset] = uintptr(rs)
	}
	if sp.NetNamespace != nil {
		fdv[ls.NetNS] = sp.NetNamespace.Fd()
	}

	// The launcher lives a few milliseconds and allocates little: one P
	// and no collector make its Go runtime start measurably faster. The
	// service's environment comes from the spec, so neither reaches it.
	pid, err := syscall.ForkExec(exe, []string{"vmsup-exec", ls.Name}, &syscall.ProcAttr{
		Env:   []string{launcher.SpecEnv + "=" + ls.Encode(), "GOMAXPROCS=1", "GOGC=off"},
		Files: fdv,
		Sys: &syscall.SysProcAttr{
			Cloneflags:  unix.CLONE_NEWNS,
			UseCgroupFD: cgroupFD >= 0,
			CgroupFD:    cgroupFD,
			// Its own session: a terminal's ^C reaches vmsup, which
			// decides what the services get.
			Setsid: true,
		},
	})
	if err != nil {
		errR.Close()
		return nil, fmt.Errorf("fork launcher: %w", err)
	}
	res := make(chan error, 1)
	go func() {
		defer errR.Close()
		msg, err := io.ReadAll(errR)
		switch {
		case err != nil:
			res <- err
		case len(msg) > 0:
			res <- fmt.Errorf("%s", msg)
		default:
			res <- nil
		}
	}()
	return &Launch{Pid: pid, Result: res}, nil
}
