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

// Launcher is the path of vmsup-exec; see LauncherPath.
var Launcher string

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

// Start forks the launcher into the cgroup open at cgroupFD and a new
// mount namespace. files maps the service's descriptor numbers to what
// it receives there; out becomes its stdout and stderr.
//
// The outcome arrives through a close-on-exec pipe: end of file with no
// data means execve succeeded, anything else is the launcher's error.
// The supervisor must not treat an exit seen before the outcome as final:
// Result always arrives, at the latest when the launcher dies.
func Start(sp *Spec, files map[int]*os.File, out *os.File, cgroupFD int) (*Launch, error) {
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
	sp.ErrFD = max + 1
	sp.Keep = sp.Keep[:0]
	null, err := os.Open(os.DevNull)
	if err != nil {
		errR.Close()
		return nil, err
	}
	defer null.Close()
	// Index = descriptor number in the child; ^0 closes that number.
	sp.Ruleset, sp.Rules, sp.Spec.NetNS = -1, rules, -1
	n := sp.ErrFD + 1
	if rs >= 0 {
		sp.Ruleset = n
		n++
	}
	if sp.NetNamespace != nil {
		sp.Spec.NetNS = n
		n++
	}
	fdv := make([]uintptr, n)
	for i := range fdv {
		fdv[i] = ^uintptr(0)
	}
	fdv[0], fdv[1], fdv[2] = null.Fd(), out.Fd(), out.Fd()
	for fd, f := range files {
		fdv[fd] = f.Fd()
		sp.Keep = append(sp.Keep, fd)
	}
	fdv[sp.ErrFD] = errW.Fd()
	if rs >= 0 {
		fdv[sp.Ruleset] = uintptr(rs)
	}
	if sp.NetNamespace != nil {
		fdv[sp.Spec.NetNS] = sp.NetNamespace.Fd()
	}

	// The launcher lives a few milliseconds and allocates little: one P
	// and no collector make its Go runtime start measurably faster. The
	// service's environment comes from the spec, so neither reaches it.
	pid, err := syscall.ForkExec(Launcher, []string{"vmsup-exec", sp.Name}, &syscall.ProcAttr{
		Env:   []string{launcher.SpecEnv + "=" + sp.Encode(), "GOMAXPROCS=1", "GOGC=off"},
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
