package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
//	stopping entered on SIGTERM/SIGINT (a 'T' on the control pipe) or when
//	         a service's on_exit ends the VM. Nothing new starts. With a
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
// A service is, in turn: waiting (for `after`), launching (forked; the
// outcome of exec pending), started, ready, backoff (restart pending),
// then gone. An exit seen while launching waits for the outcome, which
// always follows (the outcome pipe closes at exec or at death), so a
// launch failure is reported as such and not as a bare exit status.
//
// Exit status: 0 unless the VM failed. It fails when a service whose
// on_exit is shutdown ends with a non-zero status or a signal (exit 0 is
// a clean end: the guest powered off, or a helper saw its VMM go), when a
// restart service dumps core, when a service cannot be launched, or when
// anything had to be killed. While stopping, a shutdown service ends
// cleanly with exit 0, or, once vmsup has sent it a signal (stop_signal,
// the VMM's power-off signal), with any status or by that signal; any
// other end fails the VM: a VMM that crashes just after its helper
// exited 0 (which stopped the VM) is still a crash.

type phase int

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
)

type event struct {
	kind eventKind
	svc  *service
	gen  int   // launch generation the event belongs to
	err  error // evLaunched, evReady, evPoweroff; evControl: end of pipe
	b    byte  // evControl
}

type service struct {
	cfg    *config.Service
	spec   *services.Spec
	state  svcState
	pid    int
	gen    int
	launch *services.Launch

	everReady bool
	launchErr error
	exitSeen  *unix.WaitStatus // exit reaped while launching
	cancel    context.CancelFunc
	startedAt time.Time
	restarts  int
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

	phase     phase
	stops     int
	failed    bool
	announced bool
	orphaned  bool // the outer stage is gone
	deadline  *time.Timer
	logs      sync.WaitGroup // one per service output pipe still open
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

// run is the event loop; it returns the VM's exit status.
func (v *vm) run(sigs <-chan os.Signal) int {
	v.startEligible()
	for !v.finished() {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGCHLD:
				v.reap()
			case syscall.SIGTERM, syscall.SIGINT:
				v.stopRequest()
			}
		case e := <-v.events:
			v.handle(e)
		}
	}
	v.teardown()
	if v.failed {
		return ExitFailed
	}
	return ExitGraceful
}

func (v *vm) handle(e event) {
	switch e.kind {
	case evControl:
		if e.err != nil {
			v.orphaned = true
			logger.Print("the outer vmsup is gone: killing the VM")
			v.kill()
		} else if e.b == ctlStop {
			v.stopRequest()
		}
	case evLaunched:
		v.launched(e.svc, e.gen, e.err)
	case evReady:
		v.readied(e.svc, e.gen, e.err)
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
	l, err := services.Start(s.spec, files, logW, int(s.cgroupFD.Fd()))
	if err != nil {
		v.launchFailed(s, err)
		return
	}
	s.state, s.pid, s.launch, s.startedAt = launching, l.Pid, l, time.Now()
	v.byPid[l.Pid] = s
	gen := s.gen
	go func() { v.send(event{kind: evLaunched, svc: s, gen: gen, err: <-l.Result}) }()
}

// launchFailed handles a launcher that could not even be forked.
func (v *vm) launchFailed(s *service, err error) {
	logger.Printf("%s: cannot start: %v", s.cfg.Name, err)
	s.state = gone
	v.failed = true
	v.stop()
}

func (v *vm) launched(s *service, gen int, err error) {
	if gen != s.gen || s.state != launching {
		return
	}
	s.launchErr = err
	s.state = started
	if err != nil {
		logger.Printf("%s: cannot start: %v", s.cfg.Name, err)
	} else {
		v.watchReady(s)
	}
	if ws := s.exitSeen; ws != nil {
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
	go func() {
		var err error
		switch {
		case r.Socket != "":
			err = services.WaitSocket(ctx, r.Socket)
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
	s.state = ready
	s.everReady = true
	logger.Printf("%s: ready", s.cfg.Name)
	v.startEligible()
}

// exited applies a service's exit to the VM.
func (v *vm) exited(s *service, ws unix.WaitStatus) {
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

	if v.phase != running {
		s.state = gone
		if v.phase == stopping && s.cfg.OnExit == config.OnExitShutdown && !s.stoppedCleanly(ws) {
			logger.Printf("%s: did not stop as asked: the VM failed", s.cfg.Name)
			v.failed = true
		}
		if s == v.vmm && v.phase == stopping {
			v.signalOthers()
		}
		return
	}
	// Exit 0 is a clean end, for the VMM (the guest powered off) and for
	// a helper alike: virtiofsd, for one, exits 0 when the VMM closes its
	// vhost-user connection, which can be seen before the VMM's own exit.
	graceful := s.launchErr == nil && ws.Exited() && ws.ExitStatus() == 0
	switch s.cfg.OnExit {
	case config.OnExitRestart:
		if ws.CoreDump() {
			logger.Printf("%s: dumped core: not restarting", s.cfg.Name)
			s.state = gone
			v.failed = true
			v.stop()
			return
		}
		v.scheduleRestart(s)
	case config.OnExitIgnore:
		s.state = gone
		if v.finished() {
			v.stop()
		}
	default:
		s.state = gone
		if !graceful {
			v.failed = true
		}
		v.stop()
	}
}

// stoppedCleanly: see "Exit status" above.
func (s *service) stoppedCleanly(ws unix.WaitStatus) bool {
	switch {
	case ws.Exited():
		return ws.ExitStatus() == 0 || s.sent != 0
	case ws.Signaled() && !ws.CoreDump():
		return s.sent&(1<<uint(ws.Signal())) != 0
	}
	return false
}

// scheduleRestart restarts s after a back-off: 100 ms doubling up to 30 s;
// a service that ran for a minute starts the count again.
func (v *vm) scheduleRestart(s *service) {
	if time.Since(s.startedAt) > time.Minute {
		s.restarts = 0
	}
	delay := 100 * time.Millisecond << min(s.restarts, 9)
	delay = min(delay, 30*time.Second)
	s.restarts++
	s.state = backoff
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
		v.stop()
		return
	}
	logger.Print("second stop request: killing")
	v.kill()
}

// stop enters the stopping phase (once).
func (v *vm) stop() {
	if v.phase != running {
		return
	}
	v.phase = stopping
	d := v.cfg.ShutdownTimeout
	v.deadline = time.AfterFunc(d, func() { v.send(event{kind: evDeadline}) })
	for _, s := range v.svcs {
		if s.state == waiting || s.state == backoff {
			s.state = gone
		}
	}
	if s := v.vmm; s != nil && s.pid != 0 {
		if s.state == launching {
			v.signal(s, s.cfg.StopSignal)
			return
		}
		logger.Printf("%s: asking the guest to power off", s.cfg.Name)
		pid, how := s.pid, *s.cfg.VMM
		if how.QMP == "" && how.CloudHypervisor == "" {
			s.sent |= 1 << uint(how.Signal)
		}
		go func() { v.send(event{kind: evPoweroff, err: powerOff(how, pid, d)}) }()
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
// behind, such as a daemonized child). When the outer stage is gone it
// also removes what the outer stage would have: the VM's cgroup, after
// moving PID 1 out of it, and the runtime directory.
func (v *vm) teardown() {
	if v.deadline != nil {
		v.deadline.Stop()
	}
	for _, s := range v.svcs {
		if s.cgroup == "" {
			continue
		}
		if err := cgroup.Destroy(s.cgroup, cleanupTimeout); err != nil {
			logger.Print(err)
		}
	}
	// Every service process is gone now, so the output pipes are at end
	// of file: let the last lines out before exiting.
	flushed := make(chan struct{})
	go func() { v.logs.Wait(); close(flushed) }()
	select {
	case <-flushed:
	case <-time.After(time.Second):
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
	if v.orphaned {
		removeVM(v.cfg, v.cgroupDir)
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

// openFiles binds the service's sockets and opens its devices; they are
// kept for the VM's life, so a restarted service gets the same ones.
func (s *service) openFiles() error {
	for _, so := range s.cfg.Sockets {
		f, err := services.Listen(so)
		if err != nil {
			return err
		}
		s.files[so.FD] = f
	}
	for _, d := range s.cfg.Devices {
		f, err := services.OpenDevice(d)
		if err != nil {
			return err
		}
		s.files[d.FD] = f
	}
	return nil
}

// makeCgroup creates the service's cgroup with its limits and keeps it
// open for clone3(CLONE_INTO_CGROUP).
func (s *service) makeCgroup(vmDir string) error {
	dir := filepath.Join(vmDir, "svc."+s.cfg.Name)
	if err := cgroup.Mkdir(dir); err != nil {
		return err
	}
	s.cgroup = dir
	if err := setLimits(dir, s.cfg.Limits); err != nil {
		return err
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	s.cgroupFD = f
	return nil
}

func setLimits(dir string, l config.Limits) error {
	size := func(v int64) string {
		if v == config.Unlimited {
			return "max"
		}
		return strconv.FormatInt(v, 10)
	}
	var writes [][2]string
	if l.MemoryMax != 0 {
		writes = append(writes, [2]string{"memory.max", size(l.MemoryMax)})
	}
	if l.MemoryHigh != 0 {
		writes = append(writes, [2]string{"memory.high", size(l.MemoryHigh)})
	}
	if l.PidsMax != 0 {
		writes = append(writes, [2]string{"pids.max", size(l.PidsMax)})
	}
	if l.CPUWeight != 0 {
		writes = append(writes, [2]string{"cpu.weight", strconv.FormatUint(l.CPUWeight, 10)})
	}
	if l.CPUMax != "" {
		writes = append(writes, [2]string{"cpu.max", l.CPUMax})
	}
	for _, w := range writes {
		if err := cgroup.Write(dir, w[0], w[1]); err != nil {
			return fmt.Errorf("limits: %w", err)
		}
	}
	return nil
}

// logPipe returns the write end of a pipe for one launch's stdout and
// stderr; every line written to it reaches vmsup's stderr prefixed with
// the service's name. A pipe per launch, so that end of file (every
// process of that launch gone) flushes a last line without a newline.
func (v *vm) logPipe(name string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	v.logs.Add(1)
	go func() {
		defer v.logs.Done()
		copyLines(name, r)
		r.Close()
	}()
	return w, nil
}

var stderrMu sync.Mutex

func copyLines(name string, r io.Reader) {
	br := bufio.NewReaderSize(r, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			out := make([]byte, 0, len(name)+2+len(line)+1)
			out = append(out, name...)
			out = append(out, ": "...)
			out = append(out, line...)
			if out[len(out)-1] != '\n' {
				out = append(out, '\n')
			}
			stderrMu.Lock()
			os.Stderr.Write(out)
			stderrMu.Unlock()
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
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
