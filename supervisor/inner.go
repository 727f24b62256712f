package supervisor

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"vmsup/cgroup"
	"vmsup/landlock"
	"vmsup/services"
	"vmsup/status"
)

// inner is the inner stage as the outer stage sees it: PID 1, its
// control pipe and its end.
type inner struct {
	cmd    *exec.Cmd
	ctl    *os.File // write end of the control pipe
	notify *os.File
	done   chan error
}

// startInner starts the inner stage as PID 1 of a new PID and mount
// namespace. It waits for the VM to be handed over (handOver) before it
// does anything; end of file on its control pipe before that means this
// process died while creating the VM, and PID 1 removes what it created.
func startInner(o Options, raw []byte, name string) (*inner, error) {
	cfgFile, err := memfile("vmsup-config", raw)
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
	in := &inner{ctl: ctlW, done: make(chan error, 1)}
	cmd := exec.Command("/proc/self/exe")
	// ps shows which VM this PID 1 runs: "vmsup-pid1 NAME".
	cmd.Args = []string{"vmsup-pid1", name}
	cmd.Env = []string{"PATH=" + services.DefaultPath}
	for _, k := range []string{landlock.ABIMaxEnv, status.DirEnv} {
		if v := os.Getenv(k); v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stderr, os.Stderr
	cmd.ExtraFiles = []*os.File{cfgFile, ctlR, outer}
	if o.NotifyFD >= 0 {
		in.notify = os.NewFile(uintptr(o.NotifyFD), "notify")
		// Ours alone from now on: not inherited by anything but PID 1.
		unix.CloseOnExec(o.NotifyFD)
		cmd.ExtraFiles = append(cmd.ExtraFiles, in.notify)
		cmd.Args = append(cmd.Args, "notify")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS}
	if err := cmd.Start(); err != nil {
		in.close()
		return nil, fmt.Errorf("start PID 1: %w", err)
	}
	in.cmd = cmd
	go func() { in.done <- cmd.Wait() }()
	return in, nil
}

// handOver moves PID 1 into the supervisor's leaf of the claimed cgroup
// and tells it to run the VM. From then on PID 1 removes the VM when this
// process dies, as before it; only the kernel's reaping stands between.
func (in *inner) handOver(cg *vmCgroup) error {
	if err := cgroup.Write(cg.leaf, "cgroup.procs", strconv.Itoa(in.cmd.Process.Pid)); err != nil {
		return fmt.Errorf("move PID 1 into %s: %w", cg.leaf, err)
	}
	if _, err := in.ctl.Write([]byte{ctlGo}); err != nil {
		return fmt.Errorf("PID 1: %w", err)
	}
	return nil
}

// abort ends PID 1 before the VM was handed over (it has done nothing).
func (in *inner) abort() {
	in.cmd.Process.Kill()
	<-in.done
}

// wait waits for PID 1 while forwarding stop requests, and returns the
// VM's exit status.
func (in *inner) wait(stops <-chan os.Signal) int {
	for {
		select {
		case sig := <-stops:
			logger.Printf("%s: stopping", unix.SignalName(sig.(syscall.Signal)))
			in.ctl.Write([]byte{ctlStop})
		case err := <-in.done:
			return innerStatus(in.cmd.ProcessState, err)
		}
	}
}

func (in *inner) close() {
	in.ctl.Close()
	if in.notify != nil {
		in.notify.Close()
	}
}
