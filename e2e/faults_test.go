package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vmsup/cgroup"
	"vmsup/internal/vmtest"
)

// The fault matrix: SIGKILL one process of a VM, in one phase of its
// life, at a random moment within that phase, many times; then check the
// documented outcome and that nothing is left (no process of the VM, no
// cgroup, no runtime directory with its sockets, no mount).
//
// Roles (the process killed):
//
//	s6-supervise    a real s6-supervise running the service directory
//	                `vmsup s6-servicedir` writes; vmsup must die with it
//	outer           the outer vmsup (what s6-svc -k kills)
//	pid1            the inner vmsup, PID 1 of the VM
//	vmm             the service marked "vmm", here testprog `linger`
//	                with signal power-off: a real process in the VMM's
//	                place, which is what the supervisor acts on
//	vmm-qemu        a real QEMU (TCG) guest with the Rust virtiofsd: the same
//	                cells with the real VMM, fewer iterations (a boot
//	                takes seconds)
//	helper          a helper service (on_exit "shutdown", the default)
//	helper-restart  a helper service with on_exit "restart"
//
// The VMM of the testprog VM has a TAP (faultTap), so every cell but
// vmm-qemu is also a TAP cell: the TAP must be gone with the rest. Each
// cell runs in a network namespace of its own (vmtest.NetNS).
//
// Phases (when the kill lands, chosen at random within the phase):
//
//	starting  VM roles: between the start of vmsup and the first
//	          service's launch. Service roles: during the service's own
//	          launch, from its launcher appearing in its cgroup until
//	          shortly after it exec'd the service.
//	waiting   the services are started but one (the VMM for the vmm
//	          role, the helper otherwise) is held not ready by the test
//	running   every service is ready
//	stopping  after the stop request, while the services take their
//	          time to stop (each waits 100 ms after SIGTERM)
//
// Documented outcomes (docs/reference.md, README, supervisor/run.go, vm.go):
//
//	s6-supervise    vmsup dies with it (PR_SET_PDEATHSIG, armed
//	                race-free with --parent-pid); nothing left after 1 s
//	outer           nothing left 1 s after the kill (PID 1 reads end of
//	                file on its lifeline and cleans up)
//	pid1            the outer stage cleans up and exits 111
//	vmm, helper     the VM fails, exit 1, in every phase: while
//	                stopping, a service ends cleanly only by exiting or
//	                by the signal vmsup sent it, and a SIGKILL from
//	                elsewhere is neither (supervisor/vm.go, "Exit status")
//	helper-restart  starting, waiting, running: restarted, the VM runs
//	                on (and ends with 0 when stopped); stopping: not
//	                restarted, exit 0
//
// One more cell, group-kill, is what a shutdown's kill-all does: many
// VMs (VMSUP_FAULT_GROUP_VMS, default 30) started at once by one parent
// shell, all in one process group; at a random moment while they start
// (or once they run) the whole group gets SIGTERM and the parent dies
// (SIGKILL), in a random order a random moment apart. Every vmsup then
// dies with its parent (its death signal) after forwarding the stop or
// not; nothing of any VM may be left 1 s after the last signal.
// VMSUP_FAULT_GROUP_ITER iterations (default 4), within the cell budget.
//
// Iterations: VMSUP_FAULT_ITER per cell (default 20), VMSUP_FAULT_QEMU_ITER
// per vmm-qemu cell (default 2), each cell bounded by VMSUP_FAULT_BUDGET
// (default 20s, ten times that for a vmm-qemu cell; a cell stops early
// once it is used up, after at least one iteration). The default run
// takes about 100 s here. VMSUP_FAULT_SEED repeats a run's random
// delays. `make test-long` runs 200 and 10 iterations a cell.

const (
	phStarting = "starting"
	phWaiting  = "waiting"
	phRunning  = "running"
	phStopping = "stopping"
)

var faultPhases = []string{phStarting, phWaiting, phRunning, phStopping}

var faultRoles = []string{"s6-supervise", "outer", "pid1", "vmm", "vmm-qemu", "helper", "helper-restart"}

// linger is how long the test's services take to stop after SIGTERM.
const linger = 100 * time.Millisecond

// faultMatrix holds what all cells share.
type faultMatrix struct {
	iter, qemuIter int
	budget         time.Duration
	seed           uint64
	rng            *rand.Rand
	prog           string
	cal            calibration
	qemu           *fixture
	rows           []string
	cells, total   int
}

// calibration: how long a testprog VM takes, from `vmsup run`, to reach
// each step of starting; the starting windows are drawn from these.
type calibration struct {
	pid1     time.Duration // PID 1 appears
	firstSvc time.Duration // the first service's launcher appears
	launch   time.Duration // from there to the service running ("up")
}

func TestFaultMatrix(t *testing.T) {
	m := &faultMatrix{
		iter:     envInt(t, "VMSUP_FAULT_ITER", 20),
		qemuIter: envInt(t, "VMSUP_FAULT_QEMU_ITER", 2),
		budget:   20 * time.Second,
		seed:     uint64(time.Now().UnixNano()),
		prog:     vmtest.Bin(t, "testprog"),
	}
	if v := os.Getenv("VMSUP_FAULT_BUDGET"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("VMSUP_FAULT_BUDGET: %v", err)
		}
		m.budget = d
	}
	if v := os.Getenv("VMSUP_FAULT_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("VMSUP_FAULT_SEED: %v", err)
		}
		m.seed = s
	}
	m.rng = rand.New(rand.NewPCG(m.seed, 0))
	vmtest.NetNS(t) // the calibration VMs have faultTap too
	m.calibrate(t)
	t.Logf("seed %d (VMSUP_FAULT_SEED); %d iterations a cell, %d a vmm-qemu cell, budget %v a cell; starting: PID 1 after %v, first service after %v, its launch %v",
		m.seed, m.iter, m.qemuIter, m.budget, m.cal.pid1, m.cal.firstSvc, m.cal.launch)
	for _, role := range faultRoles {
		t.Run(role, func(t *testing.T) {
			if role == "vmm-qemu" {
				m.qemu = newFixture(t)
			}
			for _, ph := range faultPhases {
				t.Run(ph, func(t *testing.T) { m.cell(t, role, ph) })
			}
		})
	}
	t.Run("group-kill", m.groupCell)
	t.Logf("fault matrix: %d cells, %d iterations\n%s", m.cells, m.total, strings.Join(m.rows, "\n"))
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// calibrate times three undisturbed starts and keeps the medians.
func (m *faultMatrix) calibrate(t *testing.T) {
	var p1, fs, ln []time.Duration
	for i := range 3 {
		c, ready := m.config(t, fmt.Sprintf("fault-cal-%d", i), false)
		release(t, ready, "helper", "vmm")
		t0 := time.Now()
		vm := vmtest.Start(t, c, vmtest.Options{})
		if vm.FindPID1(10*time.Second, 100*time.Microsecond) == 0 {
			t.Fatalf("calibration: no PID 1:\n%s", vm.Stderr.String())
		}
		p1 = append(p1, time.Since(t0))
		waitProc(t, vm, "helper")
		fs = append(fs, time.Since(t0))
		vm.WaitFor("helper: up", 10*time.Second)
		ln = append(ln, time.Since(t0)-fs[i])
		vm.WaitFor("all services are ready", 10*time.Second)
		vm.Signal(syscall.SIGTERM)
		if st := vm.Wait(10 * time.Second); st != 0 {
			t.Fatalf("calibration: status %d:\n%s", st, vm.Stderr.String())
		}
		vm.AssertClean(time.Second)
	}
	m.cal = calibration{median(p1), median(fs), median(ln)}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// config is the testprog VM: helper (a socket in the runtime dir, a
// private /tmp), then the VMM once helper is ready. Each says it is
// ready (notify_fd) once the test created its gate file in the returned
// directory.
func (m *faultMatrix) config(t *testing.T, name string, restart bool) (vmtest.Config, string) {
	gates := vmtest.SharedDir(t) // services, as another user, look in it
	rt := filepath.Join(vmtest.RunDir(), name)
	helper := map[string]any{
		"name": "helper", "argv": []string{m.prog, "linger", linger.String(), "4", gates + "/helper"},
		"private_tmp": "1M",
		"sockets":     []map[string]any{{"path": rt + "/helper.sock", "fd": 3}},
		"ready":       map[string]any{"notify_fd": 4},
	}
	if restart {
		helper["on_exit"] = "restart"
	}
	vmm := map[string]any{
		"name": "vmm", "argv": []string{m.prog, "linger", linger.String(), "3", gates + "/vmm"},
		"after": []string{"helper"},
		"ready": map[string]any{"notify_fd": 3},
		"vmm":   map[string]any{"signal": "SIGTERM"},
		"taps":  []map[string]any{{"name": faultTap, "fd": 5}},
	}
	return vmtest.NewConfig(t, name, helper, vmm), gates
}

// release lets the named services say they are ready.
func release(t *testing.T, dir string, names ...string) {
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// cell runs one role × phase as often as its count and budget allow.
func (m *faultMatrix) cell(t *testing.T, role, ph string) {
	vmtest.NetNS(t) // for the VMM's TAP: see faultTap
	n, budget := m.iter, m.budget
	if role == "vmm-qemu" {
		n, budget = m.qemuIter, 10*m.budget
	}
	deadline := time.Now().Add(budget)
	var done, inPhase int
	var worst time.Duration
	for done < n && (done == 0 || time.Now().Before(deadline)) {
		var r result
		if role == "vmm-qemu" {
			r = m.qemuOnce(t, ph, done)
		} else {
			r = m.once(t, role, ph, done)
		}
		if t.Failed() {
			t.FailNow()
		}
		done++
		if r.inPhase {
			inPhase++
		}
		worst = max(worst, r.clean)
	}
	row := fmt.Sprintf("%-15s %-8s %4d iterations, %4d kills inside the phase, kill (or later stop) to nothing left: max %v", role, ph, done, inPhase, worst.Round(time.Millisecond))
	t.Log(row)
	m.rows = append(m.rows, row)
	m.cells++
	m.total += done
}

// result of one iteration.
type result struct {
	inPhase bool          // the kill landed inside the phase (not just after it)
	clean   time.Duration // from the kill (or the later stop) to nothing left
}

// attempt is one iteration on the testprog VM.
type attempt struct {
	t        *testing.T
	m        *faultMatrix
	role, ph string
	vm       *vmtest.VM
	ready    string
	start    time.Time
	sup      *exec.Cmd // s6-supervise, for that role
	svcDir   string
	stopped  time.Time // the stop request, when the VM ran on after the kill
}

func (m *faultMatrix) once(t *testing.T, role, ph string, i int) result {
	a := &attempt{t: t, m: m, role: role, ph: ph}
	c, ready := m.config(t, fmt.Sprintf("fault-%s-%s-%d", role, ph, i), role == "helper-restart")
	a.ready = ready
	switch {
	case ph != phWaiting:
		release(t, ready, "helper", "vmm")
	case role == "vmm":
		release(t, ready, "helper") // the VMM is held
	}
	a.launch(c)

	target, inPhase := a.reach()
	kill := time.Now()
	if err := unix.PidfdSendSignal(target, unix.SIGKILL, nil, 0); err == unix.ESRCH && ph == phStopping {
		inPhase = false // it had already stopped (a slow test under load)
	} else if err != nil {
		t.Fatalf("kill %s: %v", role, err)
	}
	unix.Close(target)
	inPhase = a.outcome(inPhase)
	return result{inPhase: inPhase, clean: a.clean(kill)}
}

// launch starts the VM: under a real s6-supervise for that role, else
// straight.
func (a *attempt) launch(c vmtest.Config) {
	a.start = time.Now()
	if a.role != "s6-supervise" {
		a.vm = vmtest.Start(a.t, c, vmtest.Options{})
		return
	}
	t := a.t
	base, err := os.MkdirTemp("/run", "vmsup-fault-s6-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	a.svcDir = filepath.Join(base, "svc")
	writeServiceDir(t, c, a.svcDir)
	a.vm = vmtest.Attach(t, c)
	a.sup = exec.Command("s6-supervise", a.svcDir)
	a.sup.Stdout, a.sup.Stderr = a.vm.Stderr, a.vm.Stderr
	// Its output pipe stays open as long as anything of the VM holds it.
	a.sup.WaitDelay = 5 * time.Second
	a.start = time.Now()
	if err := a.sup.Start(); err != nil {
		t.Fatalf("s6-supervise: %v", err)
	}
	t.Cleanup(func() {
		a.sup.Process.Kill()
		a.sup.Wait()
		if t.Failed() {
			t.Logf("s6-supervise's output:\n%s", a.vm.Stderr.String())
		}
	})
}

// reach waits for the phase, sleeps a random part of it and returns a
// pidfd of the process to kill, and whether the kill will land inside
// the phase as far as can be told beforehand.
func (a *attempt) reach() (int, bool) {
	t, vm, m := a.t, a.vm, a.m
	vmRole := a.role == "outer" || a.role == "s6-supervise" || a.role == "pid1"
	inPhase := true
	switch a.ph {
	case phStarting:
		switch a.role {
		case "outer", "s6-supervise":
			sleepUntil(a.start.Add(m.randDur(m.cal.firstSvc)))
			return a.target(), a.beforeFirstService()
		case "pid1":
			fd := a.target()
			sleepUntil(time.Now().Add(m.randDur(m.cal.firstSvc - m.cal.pid1)))
			return fd, a.beforeFirstService()
		}
		pid := waitProc(t, vm, a.svc())
		fd := pidfd(t, pid)
		sleepUntil(time.Now().Add(m.randDur(m.cal.launch)))
		// Inside the launch if the service has not been exec'd yet.
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		return fd, filepath.Base(exe) == "vmsup-exec"
	case phWaiting:
		vm.WaitFor(a.svc()+": up", 10*time.Second)
		a.pid1()
		sleepUntil(time.Now().Add(m.randDur(50 * time.Millisecond)))
		inPhase = !strings.Contains(vm.Stderr.String(), "all services are ready")
	case phRunning:
		vm.WaitFor("all services are ready", 10*time.Second)
		a.pid1()
		sleepUntil(time.Now().Add(m.randDur(50 * time.Millisecond)))
	case phStopping:
		vm.WaitFor("all services are ready", 10*time.Second)
		a.pid1()
		fd := a.target() // before it starts to stop
		a.stop()
		// The VMM lingers 100 ms after its power-off signal, then the
		// helper 100 ms after its SIGTERM: stay inside.
		window := 2*linger - 20*time.Millisecond
		if a.role == "vmm" {
			window = linger - 20*time.Millisecond
		}
		sleepUntil(time.Now().Add(m.randDur(window)))
		if vmRole {
			select {
			case <-vm.Done():
				inPhase = false
			default:
			}
		}
		return fd, inPhase
	}
	return a.target(), inPhase
}

// svc is the service the phase is about: the one killed (service roles)
// or held not ready (waiting).
func (a *attempt) svc() string {
	if a.role == "vmm" {
		return "vmm"
	}
	return "helper"
}

// beforeFirstService: no service has been launched yet.
func (a *attempt) beforeFirstService() bool {
	procs, _ := cgroup.Procs(filepath.Join(a.vm.CgroupDir, "svc.helper"))
	return len(procs) == 0
}

// target returns a pidfd of the process the role names.
func (a *attempt) target() int {
	var pid int
	switch a.role {
	case "outer":
		pid = a.vm.Cmd.Process.Pid
	case "s6-supervise":
		pid = a.sup.Process.Pid
	case "pid1":
		pid = a.pid1()
	default:
		pid = waitProc(a.t, a.vm, a.svc())
	}
	return pidfd(a.t, pid)
}

func pidfd(t *testing.T, pid int) int {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd of %d: %v", pid, err)
	}
	return fd
}

// pid1 finds PID 1 (and records its namespaces for the leftover check).
func (a *attempt) pid1() int {
	p := a.vm.FindPID1(10*time.Second, time.Millisecond)
	if p == 0 {
		a.t.Fatalf("no PID 1:\n%s", a.vm.Stderr.String())
	}
	return p
}

// stop asks the VM to stop as its supervisor would.
func (a *attempt) stop() {
	if a.sup != nil {
		if out, err := exec.Command("s6-svc", "-d", a.svcDir).CombinedOutput(); err != nil {
			a.t.Fatalf("s6-svc -d: %v %s", err, out)
		}
		return
	}
	a.vm.Signal(syscall.SIGTERM)
}

// outcome checks what the kill led to; it returns inPhase, corrected by
// what the output shows.
//
// A kill meant for the stopping phase can come after the process has
// ended on its own when the test runs late (the machine is busy): the
// VM's end is then the plain stop, status 0, and is counted as a kill
// outside the phase. The output tells which happened.
func (a *attempt) outcome(inPhase bool) bool {
	t, vm := a.t, a.vm
	// missed tells, once vmsup has exited, whether the kill came late.
	want := func(st int, missed func() bool) {
		t.Helper()
		got := vm.Wait(30 * time.Second)
		if a.ph == phStopping && got == 0 && missed() {
			inPhase = false
			return
		}
		if got != st {
			t.Fatalf("%s/%s: status %d, want %d:\n%s", a.role, a.ph, got, st, vm.Stderr.String())
		}
	}
	switch a.role {
	case "s6-supervise":
		a.sup.Wait()
	case "outer":
		want(128+int(syscall.SIGKILL), func() bool { return true })
	case "pid1":
		want(111, func() bool { return !strings.Contains(vm.Stderr.String(), "PID 1 was killed") })
	case "vmm", "helper":
		want(1, func() bool { return !killedShows(vm, a.svc()) })
		if inPhase && !killedShows(vm, a.svc()) {
			t.Fatalf("%s/%s: the kill does not show:\n%s", a.role, a.ph, vm.Stderr.String())
		}
	case "helper-restart":
		if a.ph == phStopping {
			want(0, func() bool { return false })
			if strings.Contains(vm.Stderr.String(), "helper: restarting") {
				t.Fatalf("restarted while stopping:\n%s", vm.Stderr.String())
			}
			break
		}
		vm.WaitFor("helper: restarting in", 10*time.Second)
		release(t, a.ready, "helper", "vmm")
		waitCount(t, vm, "helper: ready", 1+strings.Count(cutAt(vm.Stderr.String(), "helper: restarting in"), "helper: ready"))
		vm.WaitFor("all services are ready", 10*time.Second)
		select {
		case <-vm.Done():
			t.Fatalf("the VM ended after a restart service died:\n%s", vm.Stderr.String())
		default:
		}
		a.stopped = time.Now()
		a.vm.Signal(syscall.SIGTERM)
		want(0, func() bool { return false })
	}
	return inPhase
}

// killedShows: vmsup reported the service's end as the kill.
func killedShows(vm *vmtest.VM, svc string) bool {
	out := vm.Stderr.String()
	return strings.Contains(out, svc+": killed by SIGKILL") || strings.Contains(out, svc+": could not be started")
}

// cutAt returns s up to the first sep.
func cutAt(s, sep string) string {
	before, _, _ := strings.Cut(s, sep)
	return before
}

// waitCount waits until s appears n times in the VM's output.
func waitCount(t *testing.T, vm *vmtest.VM, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(vm.Stderr.String(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q not seen %d times:\n%s", s, n, vm.Stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// clean waits until nothing of the VM is left, at most 1 s after the
// kill (or after the stop request, when the VM ran on), and returns the
// time it took from there.
func (a *attempt) clean(kill time.Time) time.Duration {
	t, vm := a.t, a.vm
	from := kill
	if !a.stopped.IsZero() {
		from = a.stopped
	}
	if vm.PidNS == "" {
		vm.FindPID1(0, 0) // killed while starting: PID 1 may not have been seen
	}
	for {
		left := vm.Leftovers()
		if a.svcDir != "" {
			left = append(left, inDir(a.svcDir)...)
		}
		left = append(left, tapLeft()...)
		if len(left) == 0 {
			return time.Since(from)
		}
		if time.Since(from) > time.Second {
			t.Fatalf("%s/%s: left behind after 1 s: %s\n%s", a.role, a.ph, strings.Join(left, "; "), vm.Stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// inDir lists processes whose working directory is dir: everything
// s6-supervise starts (the run script, vmsup, PID 1) runs there.
func inDir(dir string) []string {
	var left []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if cwd, _ := os.Readlink(p + "/cwd"); cwd == dir {
			comm, _ := os.ReadFile(p + "/comm")
			left = append(left, fmt.Sprintf("process %s (%s) in %s", filepath.Base(p), strings.TrimSpace(string(comm)), dir))
		}
	}
	return left
}

// waitProc waits for the first process in a service's cgroup.
func waitProc(t *testing.T, vm *vmtest.VM, svc string) int {
	t.Helper()
	dir := filepath.Join(vm.CgroupDir, "svc."+svc)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if pids, _ := cgroup.Procs(dir); len(pids) > 0 {
			return pids[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no process in %s:\n%s", dir, vm.Stderr.String())
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// randDur is a uniformly random duration in [0, d].
func (m *faultMatrix) randDur(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(m.rng.Int64N(int64(d) + 1))
}

func sleepUntil(at time.Time) {
	if d := time.Until(at); d > 0 {
		time.Sleep(d)
	}
}

// groupCell is the group-kill cell (see the top of this file).
func (m *faultMatrix) groupCell(t *testing.T) {
	n, vms := envInt(t, "VMSUP_FAULT_GROUP_ITER", 4), envInt(t, "VMSUP_FAULT_GROUP_VMS", 30)
	deadline := time.Now().Add(2 * m.budget)
	var done, readyMin, readyMax int
	var worst time.Duration
	readyMin = vms
	for done < n && (done == 0 || time.Now().Before(deadline)) {
		clean, ready := m.groupOnce(t, done, vms)
		if t.Failed() {
			t.FailNow()
		}
		done++
		worst, readyMin, readyMax = max(worst, clean), min(readyMin, ready), max(readyMax, ready)
	}
	row := fmt.Sprintf("%-15s %-8s %4d iterations of %d VMs (%d-%d of them ready before the signals), group SIGTERM + parent SIGKILL to nothing left: max %v",
		"group-kill", "any", done, vms, readyMin, readyMax, worst.Round(time.Millisecond))
	t.Log(row)
	m.rows = append(m.rows, row)
	m.cells++
	m.total += done
}

// groupOnce starts vms VMs from one shell in a process group of its
// own, signals the group and kills the shell at random moments, and
// returns the time from the last signal to nothing left, and how many
// VMs had announced readiness (before the stop: a stopping VM does not).
func (m *faultMatrix) groupOnce(t *testing.T, iter, vms int) (time.Duration, int) {
	bin := vmtest.Bin(t, "vmsup")
	os.MkdirAll(vmtest.RunDir(), 0o755)
	var all []*vmtest.VM
	var cfgs []string
	for k := range vms {
		c := vmtest.NewConfig(t, fmt.Sprintf("fault-group-%d-%d", iter, k),
			map[string]any{"name": "helper", "argv": []string{"/bin/sleep", "1000"}},
			map[string]any{"name": "vmm", "argv": []string{m.prog, "linger", linger.String()}, "after": []string{"helper"},
				"vmm": map[string]any{"signal": "SIGTERM"}})
		vm := vmtest.Attach(t, c)
		if left := vm.Leftovers(); len(left) > 0 {
			t.Fatalf("left by an earlier run: %s", strings.Join(left, "; "))
		}
		all = append(all, vm)
		cfgs = append(cfgs, c.Write(t))
	}
	// After a failure, what the VMs left would fail the next run.
	t.Cleanup(func() {
		if t.Failed() {
			for _, vm := range all {
				cgroup.Destroy(vm.CgroupDir, 5*time.Second)
				os.RemoveAll(vm.RuntimeDir)
			}
		}
	})
	// Each vmsup's messages go to a file next to its config.
	sh := exec.Command("/bin/sh", append([]string{"-c", `for c; do "$0" run --parent-pid $$ "$c" 2>"$c.log" & done; wait`, bin}, cfgs...)...)
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &vmtest.Buffer{}
	sh.Stdout, sh.Stderr = out, out
	t0 := time.Now()
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { sh.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-sh.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	// The moment: anywhere from the first vmsups starting to well after
	// the last (30 VMs take a second or more to start here).
	sleepUntil(t0.Add(m.randDur(3 * time.Second)))
	gap := m.randDur(50 * time.Millisecond)
	termFirst := m.rng.IntN(2) == 0
	group := func() {
		if err := syscall.Kill(-sh.Process.Pid, syscall.SIGTERM); err != nil {
			t.Fatalf("kill -TERM -%d: %v", sh.Process.Pid, err)
		}
	}
	parent := func() { sh.Process.Signal(syscall.SIGKILL) }
	if termFirst {
		group()
		time.Sleep(gap)
		parent()
	} else {
		parent()
		time.Sleep(gap)
		group()
	}
	last := time.Now()
	<-exited
	for {
		at := time.Now()
		// The cgroups and runtime dirs first: a walk of /proc per VM
		// (Leftovers) takes long with 30 VMs on a busy machine.
		var left []string
		for _, vm := range all {
			for _, p := range []string{vm.CgroupDir, vm.RuntimeDir} {
				if _, err := os.Lstat(p); err == nil {
					left = append(left, p)
				}
			}
		}
		if len(left) > 0 && at.Sub(last) <= time.Second {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		left = nil
		for k, vm := range all {
			for _, l := range vm.Leftovers() {
				log, _ := os.ReadFile(cfgs[k] + ".log")
				left = append(left, fmt.Sprintf("%s: %s; its log:\n%s", vm.Name, l, log))
			}
		}
		if len(left) == 0 {
			took, ready := at.Sub(last), 0
			for _, c := range cfgs {
				if log, _ := os.ReadFile(c + ".log"); strings.Contains(string(log), "all services are ready") {
					ready++
				}
			}
			return took, ready
		}
		if at.Sub(last) > time.Second {
			vmsLeft := 0
			for _, vm := range all {
				if len(vm.Leftovers()) > 0 {
					vmsLeft++
				}
			}
			t.Fatalf("group-kill %d (SIGTERM first %v, %v apart, %v after the start): %d of %d VMs left something after 1 s:\n%s",
				iter, termFirst, gap, last.Sub(t0).Round(time.Millisecond), vmsLeft, vms, strings.Join(left, "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// faultTap is the TAP of the testprog VM's VMM, in the cell's own
// network namespace.
const faultTap = "fault-tap0"

// tapLeft reports faultTap if it is still there.
func tapLeft() []string {
	if _, err := netlink.LinkByName(faultTap); err == nil {
		return []string{"TAP " + faultTap}
	}
	return nil
}
