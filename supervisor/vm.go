package supervisor

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/cgroup"
	"vmsup/config"
	"vmsup/s6"
	"vmsup/services"
)

// The VM state machine.
//
// One goroutine (vm.run) owns every field below and handles one event at
// a time; other goroutines only send events. So the order in which events
// are handled is the order they happened in, and nothing else can wait
// for children: PID 1 reaps with wait4(-1) on SIGCHLD and routes each
// status to its service by PID. A PID cannot be reused before it is
// reaped, so signalling a recorded PID always reaches the right process.
//
// VM phases:
//
//	running  services start in `after` order as their dependencies become
//	         ready; readiness is announced once every service is ready.
//	stopping entered on SIGTERM/SIGINT (a 'T' on the control pipe), when
//	         a service's on_exit ends the VM, or when no service is left.
//	         Nothing new starts. With a
//	         running VMM: ask the guest to power off, wait for the VMM to
//	         exit, then send the others their stop_signal. Without one:
//	         send every service its stop_signal. A deadline of
//	         shutdown_timeout is set once.
//	killing  the deadline passed, a second stop request came, or the
//	         control pipe closed (the outer stage died): cgroup.kill on
//	         every service. If any service was still alive, the VM failed.
//	done     no service process is left: the service cgroups are removed
//	         and run returns the status.
//
// A service's states and events; transition (policy.go) is this table,
// and "Exit status" below says when a service stopped cleanly:
//
//	state      event                          next       effect
//	waiting    its `after` are ready          launching  fork the launcher
//	waiting    the fork fails                 gone       VM fails, stops
//	launching  exit reaped                    launching  keep it for the outcome
//	launching  exec'd, no ready rule          ready      dependents may start
//	launching  exec'd, a ready rule           started    watch the rule
//	launching  launch failed (setup, exec)    started    VM fails, stops
//	           (any of the three, exit kept)             then the kept exit
//	started    ready rule met                 ready      dependents may start
//	started,   exit reaped after a failed     gone
//	ready      launch
//	           exit, VM killing               gone
//	           exit, VM stopping              gone       VM fails unless it stopped cleanly
//	           exit, running, restart         backoff    restart timer (core dump: gone, fails, stops)
//	           exit, running, ignore          gone       stop if no service is left
//	           exit, running, shutdown        gone       stops; fails unless exit 0
//	backoff    timer fires, VM running        launching  fork the launcher
//	waiting,   VM stops                       gone
//	backoff
//
// The outcome always follows an exit seen while launching (the outcome
// pipe closes at exec or at the launcher's death), so a launch failure
// is reported as such and not as a bare exit status; and a service
// without a ready rule that exits before its outcome is seen is still
// ready: it was started. A service that cannot be launched fails the VM
// whatever its on_exit: retrying cannot help, and its dependents would
// wait forever.
//
// Exit status (vmStatus): 1 if the VM failed, else 0 if it stopped on a
// stop request, else 3 (it ended by itself: the guest powered off). It
// fails when a service whose on_exit is shutdown ends with a non-zero
// status or a signal (exit 0 is a clean end: the guest powered off, or a
// helper saw its VMM go), when a restart service dumps core, when a
// service cannot be launched, or when anything had to be killed. While
// stopping, a shutdown service ends cleanly with exit 0, or, once vmsup
// has sent it a signal (stop_signal, the VMM's power-off signal), with
// any status or by that signal; any other end fails the VM: a VMM that
// crashes just after its helper exited 0 (which stopped the VM) is still
// a crash.

type phase int

// logFlushTimeout bounds how long teardown waits for the services' last
// output lines once every service process is gone.
const logFlushTimeout = time.Second

const (
	running phase = iota
	stopping
	killing
)

type svcState int

const (
	waiting svcState = iota
	launching
	started
	ready
	backoff
	gone
)

type eventKind int

const (
	evControl  eventKind = iota // a byte from the control pipe, or its end
	evLaunched                  // the launcher exec'd the service or failed
	evReady                     // the service's ready rule was met
	evRestart                   // a back-off timer fired
	evDeadline                  // shutdown_timeout passed
	evPoweroff                  // the guest was asked to power off
	evNotReady                  // ready.timeout passed for a launch
)

type event struct {
	kind eventKind
	svc  *service
	gen  int   // launch generation the event belongs to
	err  error // evLaunched, evReady, evPoweroff; evControl: end of pipe
	b    byte  // evControl
}

type service struct {
	cfg   *config.Service
	spec  *services.Spec
	state svcState
	pid   int
	gen   int

	everReady bool
	launchErr error
	exitSeen  *unix.WaitStatus // exit reaped while launching
	cancel    context.CancelFunc
	startedAt time.Time
	restarts  int
	lastExit  string // how the last launch ended, for the status record
	sent      uint64 // signals vmsup sent this launch: bit n for signal n

	files    map[int]*os.File // sockets and devices by service fd
	notifyR  *os.File         // read end of ready.notify_fd for this launch
	cgroup   string
	cgroupFD *os.File
}

type vm struct {
	cfg       *config.VM
	svcs      []*service
	byPid     map[int]*service
	vmm       *service
	events    chan event
	notify    *os.File
	umask     int
	cgroupDir string
	launcher  string // vmsup-exec

	phase     phase
	stops     int
	failed    bool
	byItself  bool // the VM began to stop without a stop request
	announced bool
	deadline  *time.Timer
	logs      sync.WaitGroup // one per service output pipe still open
	status    *recorder      // the state record (status.go)
}

func newVM(c *config.VM, notify *os.File, umask int) *vm {
	v := &vm{cfg: c, byPid: map[int]*service{}, events: make(chan event, 16), notify: notify, umask: umask}
	for i := range c.Services {
		s := &service{cfg: &c.Services[i], files: map[int]*os.File{}}
		v.svcs = append(v.svcs, s)
		if s.cfg.VMM != nil {
			v.vmm = s
		}
	}
	return v
}

func (v *vm) send(e event) { v.events <- e }

// readControl turns the control pipe into events; its end means the outer
// stage is gone.
func (v *vm) readControl(ctl *os.File) {
	buf := make([]byte, 1)
	for {
		if _, err := ctl.Read(buf); err != nil {
			v.send(event{kind: evControl, err: err})
			return
		}
		v.send(event{kind: evControl, b: buf[0]})
	}
}

// recordEvery bounds how many turns of the event loop may pass without
// the status record being written.
const recordEvery = 64

// run is the event loop; it returns the VM's exit status.
func (v *vm) run(sigs <-chan os.Signal) int {
	v.startEligible()
	v.record()
	turns := 0
	for !v.finished() {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGCHLD:
				v.reap()
			case syscall.SIGTERM:
				v.stopRequest()
				// SIGINT and SIGQUIT come from a terminal (Ctrl-C, Ctrl-\)
				// to the whole process group, the outer stage included,
				// which forwards them: acting on both would make one
				// keystroke two stop requests, a forceful stop.
			}
		case e := <-v.events:
			v.handle(e)
		}
		// The record says where the VM is once the events at hand are
		// handled: a stop's signal and its services' exits come
		// together, and one write says them all. A steady stream of
		// events (orphans of a forking service) still gets it written
		// every recordEvery turns. None once the last service is gone:
		// teardown removes the record a few milliseconds later (until
		// then it still says "stopping", with the services' last states).
		if turns++; !v.finished() && (turns >= recordEvery || len(sigs) == 0 && len(v.events) == 0) {
			v.record()
			turns = 0
		}
	}
	v.teardown()
	return vmStatus(v.failed, v.byItself)
}

func (v *vm) handle(e event) {
	switch e.kind {
	case evControl:
		if e.err != nil {
			logger.Print("the outer vmsup is gone: killing the VM")
			v.kill()
		} else if e.b == ctlStop {
			v.stopRequest()
		}
	case evLaunched:
		v.launched(e.svc, e.gen, e.err)
	case evReady:
		v.readied(e.svc, e.gen, e.err)
	case evNotReady:
		if s := e.svc; s.gen == e.gen && s.state == started && v.phase == running {
			logger.Printf("%s: not ready within %s (ready rule: %s): the VM failed", s.cfg.Name, seconds(s.cfg.Ready.Timeout), readyRule(s.cfg.Ready))
			v.failed = true
			v.stop(false)
		}
	case evRestart:
		if s := e.svc; s.state == backoff && s.gen == e.gen && v.phase == running {
			v.start(s)
		}
	case evDeadline:
		if v.phase == stopping {
			logger.Printf("shutdown_timeout %v passed", v.cfg.ShutdownTimeout)
			v.kill()
		}
	case evPoweroff:
		if e.err != nil && v.vmm.pid != 0 && v.phase == stopping {
			logger.Print(poweroffNote(v.vmm.cfg.Name, e.err, v.vmm.cfg.StopSignal))
			v.signal(v.vmm, v.vmm.cfg.StopSignal)
		}
	}
}

// finished: no service process is left and none will start.
func (v *vm) finished() bool {
	for _, s := range v.svcs {
		switch s.state {
		case launching, started, ready:
			return false
		case waiting, backoff:
			if v.phase == running {
				return false
			}
		}
	}
	return true
}

// reap collects every exited child: services and orphans alike.
func (v *vm) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		if ws.Stopped() || ws.Continued() {
			// Without WUNTRACED only a tracee reports stops (any thread
			// of it, by its thread ID): a process (a service, or one of
			// its orphans) that made PID 1 its tracer (PTRACE_TRACEME)
			// and stopped. Nothing would continue it, and it has not
			// exited: kill it (a thread's ID kills its whole process),
			// and its exit takes the usual way.
			if ws.Stopped() {
				name := fmt.Sprintf("process %d", pid)
				if s := v.byPid[tgid(pid)]; s != nil {
					name = s.cfg.Name
				}
				logger.Printf("%s: stopped under ptrace with PID 1 as tracer: killing it", name)
				unix.Kill(pid, unix.SIGKILL)
			}
			continue
		}
		if s := v.byPid[pid]; s != nil {
			delete(v.byPid, pid)
			v.exited(s, ws)
		}
	}
}

// startEligible starts every waiting service whose dependencies have been
// ready, and announces readiness once all are ready.
func (v *vm) startEligible() {
	if v.phase != running {
		return
	}
	for _, s := range v.svcs {
		if s.state == waiting && v.depsReady(s) {
			v.start(s)
		}
	}
	if !v.announced {
		for _, s := range v.svcs {
			if !s.everReady {
				return
			}
		}
		v.announced = true
		logger.Print("all services are ready")
		if err := s6.NotifyReady(v.notify); err != nil {
			logger.Printf("readiness notification: %v", err)
		}
		v.notify = nil
		settle()
	}
}

func (v *vm) depsReady(s *service) bool {
	for _, name := range s.cfg.After {
		for _, d := range v.svcs {
			if d.cfg.Name == name && !d.everReady {
				return false
			}
		}
	}
	return true
}

func (v *vm) start(s *service) {
	s.gen++
	s.launchErr, s.exitSeen, s.sent = nil, nil, 0
	files := s.files
	if fd := s.cfg.Ready.NotifyFD; fd != 0 {
		r, w, err := os.Pipe()
		if err != nil {
			v.launchFailed(s, err)
			return
		}
		s.notifyR = r
		files = make(map[int]*os.File, len(s.files)+1)
		for k, f := range s.files {
			files[k] = f
		}
		files[fd] = w
		defer w.Close()
	}
	logW, err := v.logPipe(s.cfg.Name)
	if err != nil {
		v.launchFailed(s, err)
		return
	}
	defer logW.Close()
	l, err := services.Start(v.launcher, s.spec, files, logW, int(s.cgroupFD.Fd()))
	if err != nil {
		v.launchFailed(s, err)
		return
	}
	s.state, s.pid, s.startedAt = launching, l.Pid, time.Now()
	v.byPid[l.Pid] = s
	gen := s.gen
	go func() { v.send(event{kind: evLaunched, svc: s, gen: gen, err: <-l.Result}) }()
}

// launchFailed handles a launcher that could not even be forked.
func (v *vm) launchFailed(s *service, err error) {
	logger.Printf("%s: cannot start: %v", s.cfg.Name, err)
	if s.notifyR != nil {
		s.notifyR.Close()
		s.notifyR = nil
	}
	v.apply(s, transition(s.state, seExecFail, v.facts(s)))
}

// launched handles the launch outcome.
func (v *vm) launched(s *service, gen int, err error) {
	if gen != s.gen || s.state != launching {
		return
	}
	f := v.facts(s)
	f.reaped = s.exitSeen != nil
	e := seExec
	if err != nil {
		e, s.launchErr = seExecFail, err
		logger.Printf("%s: cannot start: %v", s.cfg.Name, err)
		if s.notifyR != nil {
			s.notifyR.Close()
			s.notifyR = nil
		}
	} else {
		logger.Printf("%s: started (pid %d in the VM)", s.cfg.Name, s.pid)
	}
	v.apply(s, transition(s.state, e, f))
}

// facts are what the policy needs to know about s now.
func (v *vm) facts(s *service) facts {
	r := s.cfg.Ready
	return facts{
		phase:     v.phase,
		onExit:    s.cfg.OnExit,
		rule:      r.Socket != "" || r.Exists != "" || r.NotifyFD != 0,
		sent:      s.sent,
		launchErr: s.launchErr != nil,
	}
}

// apply enters a transition's next state and carries out its effects.
func (v *vm) apply(s *service, st step) {
	s.state = st.next
	if st.why != "" {
		logger.Printf("%s: %s", s.cfg.Name, st.why)
	}
	if st.do&fxFail != 0 {
		v.failed = true
	}
	if st.do&fxWatch != 0 {
		v.watchReady(s)
	}
	if st.do&fxRestart != 0 {
		v.scheduleRestart(s)
	}
	if st.do&fxStop != 0 {
		v.stop(true)
	}
	if st.do&fxReady != 0 {
		s.everReady = true
		logger.Printf("%s: ready", s.cfg.Name)
		v.startEligible()
	}
	if ws := s.exitSeen; st.do&fxExit != 0 && ws != nil {
		s.exitSeen = nil
		v.exited(s, *ws)
	}
}

// watchReady waits for the service's ready rule in a goroutine.
func (v *vm) watchReady(s *service) {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	gen, r := s.gen, s.cfg.Ready
	notifyR := s.notifyR
	s.notifyR = nil
	if rule := readyRule(r); rule != "started" {
		if r.Timeout > 0 {
			logger.Printf("%s: waiting up to %s until ready (ready rule: %s)", s.cfg.Name, seconds(r.Timeout), rule)
			t := time.AfterFunc(r.Timeout, func() { v.send(event{kind: evNotReady, svc: s, gen: gen}) })
			s.cancel = func() { cancel(); t.Stop() }
		} else {
			logger.Printf("%s: waiting until ready (ready rule: %s)", s.cfg.Name, rule)
		}
	}
	go func() {
		var err error
		switch {
		case r.Socket != "":
			err = services.WaitSocket(ctx, r.Socket, s.cfg.UID, greets(s.cfg))
		case r.Exists != "":
			err = services.WaitExists(ctx, r.Exists)
		case notifyR != nil:
			err = services.WaitLine(ctx, notifyR)
			notifyR.Close()
		}
		if ctx.Err() == nil {
			v.send(event{kind: evReady, svc: s, gen: gen, err: err})
		}
	}()
}

func (v *vm) readied(s *service, gen int, err error) {
	if gen != s.gen || s.state != started {
		return
	}
	if err != nil {
		logger.Printf("%s: will never be ready: %v", s.cfg.Name, err)
		return
	}
	// The rule is met, so its timeout must not fire: that would wake PID
	// 1 once for each service, a ready.timeout after every start.
	if s.cancel != nil {
		s.cancel()
		s.cancel = nil
	}
	v.apply(s, transition(s.state, seReady, v.facts(s)))
}

// exited applies a service's exit to the VM.
func (v *vm) exited(s *service, ws unix.WaitStatus) {
	f := v.facts(s)
	f.ws = ws
	st := transition(s.state, seExit, f)
	if s.state == launching {
		s.exitSeen = &ws // the launch outcome decides how to report it
		return
	}
	s.pid = 0
	if s.cancel != nil {
		s.cancel()
		s.cancel = nil
	}
	what := describe(ws) + endNote(ws, s.sent, s == v.vmm, v.stops > 0 || v.failed)
	if s.launchErr != nil {
		what = "could not be started"
	}
	logger.Printf("%s: %s", s.cfg.Name, what)
	s.lastExit = what
	wasStopping := v.phase == stopping
	v.apply(s, st)
	if s == v.vmm && wasStopping {
		v.signalOthers()
	}
	if v.phase == running && v.finished() {
		v.stop(true) // every service ended with on_exit ignore
	}
}

// scheduleRestart restarts s after its back-off (see restartDelay).
func (v *vm) scheduleRestart(s *service) {
	var delay time.Duration
	delay, s.restarts = restartDelay(s.restarts, time.Since(s.startedAt))
	gen := s.gen
	logger.Printf("%s: restarting in %v", s.cfg.Name, delay)
	time.AfterFunc(delay, func() { v.send(event{kind: evRestart, svc: s, gen: gen}) })
}

// stopRequest handles SIGTERM/SIGINT: the first starts a graceful stop,
// the next one makes it forceful.
func (v *vm) stopRequest() {
	v.stops++
	if v.stops == 1 {
		logger.Print("stop requested")
		v.stop(false)
		return
	}
	logger.Print("second stop request: killing")
	v.kill()
}

// stop enters the stopping phase (once); byItself: not on request.
func (v *vm) stop(byItself bool) {
	if v.phase != running {
		return
	}
	v.phase = stopping
	v.byItself = byItself
	d := v.cfg.ShutdownTimeout
	v.deadline = time.AfterFunc(d, func() { v.send(event{kind: evDeadline}) })
	for _, s := range v.svcs {
		if s.state == waiting || s.state == backoff {
			s.state = gone
		}
	}
	if s := v.vmm; s != nil && s.pid != 0 && s.launchErr == nil { // a VMM that could not be launched runs no guest
		if s.state == launching {
			v.signal(s, s.cfg.StopSignal)
			return
		}
		logger.Printf("%s: asking the guest to power off", s.cfg.Name)
		pid, how, owner := s.pid, *s.cfg.VMM, s.cfg.UID
		if how.QMP == "" && how.CloudHypervisor == "" {
			s.sent |= 1 << uint(how.Signal)
		}
		go func() { v.send(event{kind: evPoweroff, err: powerOff(how, pid, owner, d)}) }()
		return
	}
	v.signalOthers()
}

// signalOthers sends every live service but the VMM its stop_signal.
func (v *vm) signalOthers() {
	for _, s := range v.svcs {
		if s != v.vmm && s.pid != 0 {
			v.signal(s, s.cfg.StopSignal)
		}
	}
}

func (v *vm) signal(s *service, sig syscall.Signal) {
	s.sent |= 1 << uint(sig)
	if err := unix.Kill(s.pid, sig); err != nil && err != unix.ESRCH {
		logger.Printf("%s: kill %s: %v", s.cfg.Name, unix.SignalName(sig), err)
	}
}

// kill enters the killing phase: everything in the service cgroups dies.
func (v *vm) kill() {
	if v.phase == killing {
		return
	}
	// Straight to cgroup.kill: no stop signal, no power-off request.
	v.phase = killing
	for _, s := range v.svcs {
		if s.pid != 0 {
			v.failed = true
		}
		if s.state == waiting || s.state == backoff {
			s.state = gone
		}
		if s.cgroup != "" {
			if err := cgroup.Kill(s.cgroup); err != nil {
				logger.Print(err)
			}
		}
	}
}

// teardown removes the service cgroups (killing what a service left
// behind, such as a daemonized child), then the VM's cgroup, after
// moving PID 1 out of it, and the runtime directory (the outer stage
// tries again after PID 1 has exited, for when PID 1 is killed).
func (v *vm) teardown() {
	if v.deadline != nil {
		v.deadline.Stop()
	}
	for _, s := range v.svcs {
		if s.cgroup == "" {
			continue
		}
		if err := cgroup.Destroy(s.cgroup, cgroup.DestroyTimeout); err != nil {
			logger.Print(err)
		}
	}
	// Every service process is gone now, so the output pipes are at end
	// of file: let the last lines out before exiting.
	flushed := make(chan struct{})
	go func() { v.logs.Wait(); close(flushed) }()
	select {
	case <-flushed:
	case <-time.After(logFlushTimeout):
	}
	// Only the sockets bound here: a path another process holds (the
	// reason a start failed) is not ours to remove.
	for _, s := range v.svcs {
		for _, so := range s.cfg.Sockets {
			if s.files[so.FD] != nil {
				os.Remove(so.Path)
			}
		}
	}
	v.closeStatus()
	// PID 1 removes the VM itself, whether or not the outer stage is
	// still there to do it: the outer stage may be killed at any moment
	// after this process has exited, and then nobody would.
	leaveCgroup()
	if err := removeVM(v.cfg, v.cgroupDir); err != nil {
		logger.Print(err)
	}
}

func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	case ws.Signaled() && ws.CoreDump():
		return fmt.Sprintf("killed by %s (core dumped)", unix.SignalName(ws.Signal()))
	case ws.Signaled():
		return fmt.Sprintf("killed by %s", unix.SignalName(ws.Signal()))
	}
	return fmt.Sprintf("ended with wait status %#x", uint32(ws))
}

// tgid is the process (thread group) of thread tid, tid itself if unknown.
func tgid(tid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tid))
	if err != nil {
		return tid
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Tgid:"); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return n
			}
		}
	}
	return tid
}
