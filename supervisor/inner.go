package supervisor

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"

	"vmsup/services"
	"vmsup/status"
)

// inner is the inner stage as the outer stage sees it: PID 1, its
// control pipe and its end.
type inner struct {
	cmd    *exec.Cmd
	ctl    *os.File // write end of the control pipe
	notify *os.File
	done   chan waitResult
}

// startInner starts the inner stage as PID 1 of a new PID and mount
// namespace. It waits for the VM to be handed over (handOver) before it
// does anything; end of file on its control pipe before that means this
// process died while creating the VM, and PID 1 removes what it created.
func startInner(o Options, h *handoff, raw []byte, claim *os.File, name string) (*inner, error) {
	cfgFile, err := handoffFile(h, raw)
	if err != nil {
		return nil, err
	}
	defer cfgFile.Close()
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer ctlR.Close()
	self, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		ctlW.Close()
		return nil, fmt.Errorf("pidfd_open: %w", err)
	}
	outer := os.NewFile(uintptr(self), "vmsup")
	defer outer.Close()
	in := &inner{ctl: ctlW, done: make(chan waitResult, 1)}
	cmd := exec.Command("/proc/self/exe")
	// ps shows which VM this PID 1 runs: "vmsup-pid1 NAME".
	cmd.Args = []string{"vmsup-pid1", name}
	// GOMAXPROCS=1: see oneProc.
	cmd.Env = []string{"PATH=" + services.DefaultPath, "GOMAXPROCS=1"}
	if v := os.Getenv(status.DirEnv); v != "" {
		cmd.Env = append(cmd.Env, status.DirEnv+"="+v)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stderr, os.Stderr
	cmd.ExtraFiles = make([]*os.File, fdClaim-fdExtra+1)
	cmd.ExtraFiles[fdConfig-fdExtra] = cfgFile
	cmd.ExtraFiles[fdControl-fdExtra] = ctlR
	cmd.ExtraFiles[fdOuter-fdExtra] = outer
	cmd.ExtraFiles[fdClaim-fdExtra] = claim
	if o.NotifyFD >= 0 {
		in.notify = os.NewFile(uintptr(o.NotifyFD), "notify")
		// Ours alone from now on: not inherited by anything but PID 1.
		unix.CloseOnExec(o.NotifyFD)
		cmd.ExtraFiles[fdNotify-fdExtra] = in.notify
		cmd.Args = append(cmd.Args, "notify")
	}
	// A session of its own: what is sent to this process's group (a
	// terminal's ^C, a kill-all) reaches only this stage, which forwards
	// it once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS, Setsid: true}
	if err := cmd.Start(); err != nil {
		in.close()
		return nil, fmt.Errorf("start PID 1: %w", err)
	}
	in.cmd = cmd
	pidfd, err := unix.PidfdOpen(cmd.Process.Pid, unix.PIDFD_NONBLOCK)
	if err != nil { // PID 1 is our unreaped child: only a lack of fds
		cmd.Process.Kill()
		cmd.Wait()
		in.close()
		return nil, fmt.Errorf("pidfd_open PID 1: %w", err)
	}
	go func() { in.done <- waitExit(cmd.Process.Pid, pidfd) }()
	return in, nil
}

// waitExit reaps the child pid once its pidfd (non-blocking) says it has
// exited. The wait is in Go's poller, not in waitid(2): a wait blocked
// in the kernel would hold a thread all the VM's life (about 22 KiB, and
// one more thread to wake and end at the stop).
func waitExit(pid, pidfd int) waitResult {
	f := os.NewFile(uintptr(pidfd), "pidfd")
	defer f.Close()
	var r waitResult
	reaped := false
	rc, err := f.SyscallConn()
	if err == nil {
		err = rc.Read(func(uintptr) bool {
			// Readable means exited; until then wait4 finds nothing.
			for {
				got, werr := unix.Wait4(pid, &r.ws, unix.WNOHANG, nil)
				if werr != unix.EINTR {
					r.err, reaped = werr, got == pid
					return reaped || werr != nil
				}
			}
		})
	}
	if err != nil && !reaped && r.err == nil {
		// The poller would not take the pidfd: wait in the kernel.
		for r.err = unix.EINTR; r.err == unix.EINTR; {
			_, r.err = unix.Wait4(pid, &r.ws, 0, nil)
		}
	}
	return r
}

// waitResult is how PID 1 ended, or why that is not known.
type waitResult struct {
	ws  unix.WaitStatus
	err error
}

// abort ends PID 1 before the VM was handed over (it has done nothing).
func (in *inner) abort() {
	in.cmd.Process.Kill()
	<-in.done
}

// wait waits for PID 1 to exit, while forwarding stop requests; it
// returns the VM's exit status.
func (in *inner) wait(stops <-chan os.Signal) int {
	for {
		select {
		case sig := <-stops:
			logger.Printf("%s: stopping", unix.SignalName(sig.(syscall.Signal)))
			in.ctl.Write([]byte{ctlStop})
		case r := <-in.done:
			return innerStatus(r)
		}
	}
}

func (in *inner) close() {
	in.ctl.Close()
	if in.notify != nil {
		in.notify.Close()
	}
}

func innerStatus(r waitResult) int {
	if r.err != nil {
		logger.Printf("PID 1: %v", r.err)
		return ExitTemp
	}
	ws := r.ws
	if ws.Signaled() {
		logger.Printf("PID 1 was killed by %s", unix.SignalName(ws.Signal()))
		return ExitTemp
	}
	return ws.ExitStatus()
}

// memfile returns a sealed in-memory file holding b.
func memfile(name string, b []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL)
	return f, nil
}
