// Package supervisor runs one VM: `vmsup run`.
//
// Process model:
//
//	s6-supervise
//	 └─ vmsup run          the outer stage: s6's child, outside every namespace
//	     └─ vmsup (PID 1)  the inner stage: PID 1 of a new PID + mount namespace
//	         ├─ service    one per config entry, each in its own cgroup,
//	         └─ ...        mount namespace and Landlock domain
//
// The outer stage validates and checks the host, starts the inner stage,
// claims the VM's cgroup and runtime directory, moves the inner stage
// into the VM's cgroup, hands the VM over to it and waits. The inner
// stage is started before anything is created so that a SIGKILL of the
// outer stage at any moment leaves it there to remove what was created
// (until the hand-over it waits and does nothing else). It forwards stop
// requests as bytes on a pipe (the control pipe), not as signals: bytes
// wait in the pipe until the inner stage reads them, whereas a signal sent
// before PID 1 installs its handlers would be dropped by the kernel.
//
// The same pipe is the inner stage's lifeline: when the outer stage dies
// in any way (SIGKILL by s6-svc -k, the death signal of its parent), the
// kernel closes the write end and the inner stage reads end of file. It
// then kills every service, removes the VM's cgroups and runtime directory
// and exits, which makes the kernel remove every process and mount left.
// The inner stage removes them too when it has stopped the VM by
// itself, whether or not the outer stage is still there: the outer
// stage may be killed at any moment after the inner stage has exited.
// Conversely, when the inner stage has exited or is killed, the outer
// stage removes whatever it left. Each stage cleans up after the other;
// a later start cleans up after both.
package supervisor

import (
	"errors"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"vmsup/cgroup"
	"vmsup/config"
	"vmsup/exit"
	"vmsup/s6"
)

// Exit statuses of `vmsup run`: the names supervisor uses for package
// exit's numbers (their meanings are there).
const (
	ExitGraceful   = exit.OK
	ExitFailed     = exit.Failed
	ExitPoweredOff = exit.PoweredOff
	ExitConfig     = exit.Usage
	ExitTemp       = exit.Temp
)

// Options are the flags of `vmsup run`.
type Options struct {
	Config    string // path, or "-" for standard input
	ParentPID int    // 0: the process that started vmsup
	NotifyFD  int    // -1: none
}

// exitError is an error that ends `vmsup run` with its status: a
// helper deep in the start says how bad its failure is, and Run, which
// prints it, returns that status.
type exitError struct {
	status int
	err    error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Status is the exit status of `vmsup run` the error ends it with.
func (e *exitError) Status() int { return e.status }

// configError is a problem of the config or the installation: retrying
// cannot help (ExitConfig).
func configError(err error) error { return &exitError{ExitConfig, err} }

// tempError is a failure of the system that may pass (ExitTemp).
func tempError(err error) error { return &exitError{ExitTemp, err} }

// exitStatus is the status err ends `vmsup run` with: its own, if it
// carries one (exitError), else def.
func exitStatus(err error, def int) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.Status()
	}
	return def
}

// stderr is the one writer of vmsup's standard error: its own messages
// (logger) and the services' output lines (copyLines) each reach it in
// one Write, and it passes one Write at a time, so no line is cut into
// another.
var stderr = &serialWriter{w: os.Stderr}

type serialWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *serialWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// logger writes vmsup's messages, every line of each prefixed.
var logger = log.New(prefixLines{stderr, "vmsup: "}, "", 0)

// prefixLines writes each line of every message with its prefix, so a
// multi-line message (every problem preflight found) reads as lines of
// vmsup's in a log.
type prefixLines struct {
	w      io.Writer
	prefix string
}

func (p prefixLines) Write(b []byte) (int, error) {
	msg := strings.TrimSuffix(string(b), "\n")
	out := p.prefix + strings.ReplaceAll(msg, "\n", "\n"+p.prefix) + "\n"
	if _, err := io.WriteString(p.w, out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Run is `vmsup run`: it returns the exit status.
func Run(o Options) int {
	oneProc()
	signal.Ignore(syscall.SIGHUP)
	survivePipes()
	stops := make(chan os.Signal, 4)
	// Caught from the start, so a SIGTERM during setup is not lost.
	// SIGQUIT too, as s6-svc -q sends it: a stop request, not Go's
	// goroutine dump.
	signal.Notify(stops, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)

	raw, vm, status := load(o.Config)
	if vm == nil {
		return status
	}
	if err := s6.DieWithParent(o.ParentPID); err != nil {
		logger.Print(err)
		return ExitTemp
	}
	pf, err := preflight(vm)
	if err != nil {
		logger.Print(err)
		return exitStatus(err, ExitTemp)
	}
	claim, err := claimVM(vm.Name, pf.Cgroup)
	if err != nil {
		logger.Print(err)
		return ExitTemp
	}
	defer claim.Close()
	stale, err := inspect(vm, pf.Cgroup)
	if err != nil {
		logger.Print(err)
		return ExitConfig
	}
	// PID 1 comes first, before anything is created: from the first
	// thing created on, a SIGKILL of this process leaves PID 1 to remove
	// it (see handOver).
	in, err := startInner(o, pf, raw, claim, vm.Name)
	if err != nil {
		logger.Print(err)
		return ExitTemp
	}
	defer in.close()
	cg, err := makeCgroup(in, vm.Name, pf.Cgroup, stale, neededControllers(vm))
	if err != nil {
		logger.Print(err)
		in.abort()
		return ExitTemp
	}
	err = makeRuntimeDir(in, vm, stale)
	if err == nil {
		err = in.handOver(cg)
	}
	if err != nil {
		logger.Print(err)
		in.abort()
		destroyVM(vm, cg)
		return ExitTemp
	}
	settle()
	status = in.wait(stops)
	if err := destroyVM(vm, cg); err != nil {
		logger.Print(err)
		if status == ExitGraceful {
			status = ExitTemp
		}
	}
	return status
}

// survivePipes keeps vmsup alive when its log reader (s6-log, a
// terminal) is gone: Go exits on SIGPIPE from a write to fd 1 or 2
// unless the signal is handled, and dying there would skip the cleanup.
// Handled rather than ignored, because an ignored signal would stay
// ignored in the services.
func survivePipes() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}

// load reads and validates the config; every problem is printed.
func load(path string) ([]byte, *config.VM, int) {
	raw, rerr := config.ReadFile(path)
	if rerr != nil {
		logger.Printf("config: %v", rerr)
		return nil, nil, ExitConfig
	}
	vm, errs := config.Parse(raw)
	for _, e := range errs {
		logger.Printf("config: %v", e)
	}
	if len(errs) > 0 {
		return nil, nil, ExitConfig
	}
	return raw, vm, 0
}

// neededControllers lists the cgroup controllers the limits use.
func neededControllers(vm *config.VM) []string {
	var ls []config.Limits
	for _, s := range vm.Services {
		ls = append(ls, s.Limits)
	}
	return cgroup.NeededControllers(ls...)
}
