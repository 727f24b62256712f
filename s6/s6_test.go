package s6_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/config"
	"vmsup/internal/vmtest"
	"vmsup/s6"
)

func TestMain(m *testing.M) { vmtest.Main(m) }

// scanner is a real s6-svscan on a scan directory of its own. Not under
// /tmp: nothing in it may depend on a mount namespace.
type scanner struct {
	t    *testing.T
	base string // holds scan/ and sv/ (the service directories)
	scan string
	cmd  *exec.Cmd
	out  *vmtest.Buffer // s6-svscan's stdout and stderr: vmsup's and finish's messages
	done chan struct{}
}

func startScanner(t *testing.T) *scanner {
	t.Helper()
	vmtest.RequireRoot(t)
	base, err := os.MkdirTemp("/run", "vmsup-test-s6-")
	if err != nil {
		t.Fatal(err)
	}
	sc := &scanner{t: t, base: base, scan: filepath.Join(base, "scan"), out: &vmtest.Buffer{}, done: make(chan struct{})}
	for _, d := range []string{sc.scan, filepath.Join(base, "sv")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sc.cmd = exec.Command("s6-svscan", sc.scan)
	sc.cmd.Stdout, sc.cmd.Stderr = sc.out, sc.out
	if err := sc.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { sc.cmd.Wait(); close(sc.done) }()
	t.Cleanup(sc.stop)
	// Commands fail until s6-svscan listens on its control fifo.
	deadline := time.Now().Add(10 * time.Second)
	for exec.Command("s6-svscanctl", "-a", sc.scan).Run() != nil {
		if time.Now().After(deadline) {
			t.Fatal("s6-svscan is not listening after 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	return sc
}

// stop brings every service down, ends s6-svscan (whose supervisors exit
// with it) and removes the directories.
func (sc *scanner) stop() {
	sc.cmd.Process.Signal(syscall.SIGCONT) // in case a test stopped it
	entries, _ := os.ReadDir(sc.scan)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			exec.Command("s6-svc", "-wD", "-T", "20000", "-d", filepath.Join(sc.scan, e.Name())).Run()
		}
	}
	exec.Command("s6-svscanctl", "-t", sc.scan).Run()
	select {
	case <-sc.done:
	case <-time.After(20 * time.Second):
		sc.t.Errorf("s6-svscan did not exit after s6-svscanctl -t; killing it")
		sc.cmd.Process.Kill()
		<-sc.done
	}
	if left := supervisorsUnder(sc.base); len(left) > 0 {
		sc.t.Errorf("s6-supervise processes left: %v", left)
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if sc.t.Failed() {
		sc.t.Logf("s6-svscan output:\n%s", sc.out.String())
	}
	os.RemoveAll(sc.base)
}

// supervisorsUnder lists the s6-supervise processes whose service
// directory (their working directory) is under base.
func supervisorsUnder(base string) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		comm, _ := os.ReadFile(p + "/comm")
		cwd, _ := os.Readlink(p + "/cwd")
		if strings.TrimSpace(string(comm)) == "s6-supervise" && strings.HasPrefix(cwd, base+"/") {
			pid, _ := strconv.Atoi(filepath.Base(p))
			pids = append(pids, pid)
		}
	}
	return pids
}

// add writes a service directory with write, links it into the scan
// directory and makes s6-svscan pick it up. It returns the service's path
// in the scan directory and the time the scan was asked for.
func (sc *scanner) add(name string, write func(dir string) error) (string, time.Time) {
	sc.t.Helper()
	dir := filepath.Join(sc.base, "sv", name)
	if err := write(dir); err != nil {
		sc.t.Fatal(err)
	}
	link := filepath.Join(sc.scan, name)
	if err := os.Symlink(dir, link); err != nil {
		sc.t.Fatal(err)
	}
	t0 := time.Now()
	run(sc.t, "s6-svscanctl", "-a", sc.scan)
	return link, t0
}

var run = vmtest.MustRun

// svstat returns the s6-svstat -o fields of svc, split.
func svstat(t *testing.T, svc, fields string) []string {
	t.Helper()
	return strings.Fields(run(t, "s6-svstat", "-o", fields, svc))
}

// waitSupervised waits until an s6-supervise runs for svc.
func waitSupervised(t *testing.T, svc string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for exec.Command("s6-svok", svc).Run() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s is not supervised after 10s", svc)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// svwait runs s6-svwait with flag (-U, -D...) and returns when it does.
func svwait(t *testing.T, flag, svc string, timeout time.Duration) time.Time {
	t.Helper()
	run(t, "s6-svwait", flag, "-t", strconv.FormatInt(timeout.Milliseconds(), 10), svc)
	return time.Now()
}

// newVM writes config c and returns its path and parsed form.
func newVM(t *testing.T, c vmtest.Config) (string, *config.VM) {
	t.Helper()
	path := c.Write(t)
	vm, errs := config.Load(path)
	if len(errs) > 0 {
		t.Fatalf("config: %v", errs)
	}
	return path, vm
}

func sh(name, script string) map[string]any {
	return map[string]any{"name": name, "argv": []string{"/bin/sh", "-c", script}}
}

// writer returns an add callback writing the service directory for cfg.
func writer(t *testing.T, cfgPath string, vm *config.VM, style s6.Style) func(string) error {
	bin := vmtest.Bin(t, "vmsup")
	return func(dir string) error { return s6.WriteServiceDirStyle(dir, cfgPath, bin, vm, style) }
}

func pidAlive(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(st), ')')
	return !strings.HasPrefix(string(st[i+1:]), " Z")
}

func ppidOf(t *testing.T, pid int) int {
	t.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(string(st), ')')
	f := strings.Fields(string(st[i+1:]))
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// lines returns the lines of out that start with prefix.
func lines(out, prefix string) []string {
	var l []string
	for _, s := range strings.Split(out, "\n") {
		if strings.HasPrefix(s, prefix) {
			l = append(l, s)
		}
	}
	return l
}

// waitOut waits until s6-svscan's output holds s.
func (sc *scanner) waitOut(s string, timeout time.Duration) {
	sc.t.Helper()
	if !sc.out.WaitFor(s, timeout) {
		sc.t.Fatalf("no %q in the output within %v:\n%s", s, timeout, sc.out.String())
	}
}

// upAndDown is the life of a VM under s6: s6 learns of readiness only
// once the last service (whose ready file appears after a delay) is
// ready; no service inherits the notification fd; s6-svc -d makes vmsup
// exit 0, and the service stays down (s6 wants it down) with nothing left.
func upAndDown(t *testing.T, name string, style s6.Style) {
	shared := vmtest.SharedDir(t)
	readyFile := filepath.Join(shared, "late-ready")
	const delay = 1500 * time.Millisecond
	c := vmtest.NewConfig(t, name,
		sh("a", "exec sleep 100"),
		map[string]any{
			"name":  "late",
			"argv":  []string{"/bin/sh", "-c", fmt.Sprintf("sleep %.1f; touch %s; exec sleep 100", delay.Seconds(), readyFile)},
			"ready": map[string]any{"exists": readyFile},
		},
		// The shell lists its own descriptors while it has no more than
		// it inherited (ls runs in a child).
		sh("fds", "ls -x /proc/$$/fd; exec sleep 100"))
	cfgPath, cfg := newVM(t, c)
	vm := vmtest.Attach(t, c)

	sc := startScanner(t)
	svc, t0 := sc.add(name, writer(t, cfgPath, cfg, style))
	waitSupervised(t, svc)
	tSupervised := time.Now()

	// Sample s6's view until it says ready: whenever it says ready, the
	// ready file must already exist; and it must have said "up, not
	// ready" while the last service was still waiting.
	type sample struct{ upNotReady, readyEarly int }
	stopSampling := make(chan struct{})
	sampled := make(chan sample, 1)
	go func() {
		var s sample
		for {
			select {
			case <-stopSampling:
				sampled <- s
				return
			default:
			}
			out, _ := exec.Command("s6-svstat", "-o", "up,ready", svc).Output()
			_, ferr := os.Stat(readyFile) // after s6-svstat: a ready seen before must find it
			switch strings.Join(strings.Fields(string(out)), " ") {
			case "true false":
				s.upNotReady++
			case "true true":
				if ferr != nil {
					s.readyEarly++
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	tReady := svwait(t, "-U", svc, 10*time.Second)
	fi, err := os.Stat(readyFile)
	close(stopSampling)
	s := <-sampled
	if err != nil {
		t.Fatalf("s6-svwait -U returned before the ready file existed: %v", err)
	}
	if s.readyEarly > 0 || s.upNotReady == 0 {
		t.Fatalf("s6-svstat said ready before the ready file existed %d times, up but not ready %d times (want 0, >0)", s.readyEarly, s.upNotReady)
	}
	if tReady.Sub(t0) < delay {
		t.Fatalf("ready after %v, before the %v delay of the last service", tReady.Sub(t0), delay)
	}
	if st := run(t, "s6-svstat", svc); !strings.HasPrefix(st, "up ") || !strings.Contains(st, ", ready ") {
		t.Fatalf("s6-svstat: %q, want up and ready", st)
	}
	t.Logf("s6-svscan -a -> supervised %v, -> s6-svwait -U returned %v (last service ready file at +%v; ready file -> s6 ready %v); %d samples up and not ready",
		tSupervised.Sub(t0).Round(time.Millisecond), tReady.Sub(t0).Round(time.Millisecond),
		fi.ModTime().Sub(t0).Round(time.Millisecond), tReady.Sub(fi.ModTime()).Round(time.Millisecond), s.upNotReady)

	// The notification fd (3 for vmsup) reached no service.
	sc.waitOut("fds: ", 5*time.Second)
	if l := lines(sc.out.String(), "fds: "); len(l) != 1 || strings.Join(strings.Fields(strings.SplitN(l[0], "fds: ", 2)[1]), " ") != "0 1 2" {
		t.Fatalf("a service's descriptors: %q, want 0 1 2", l)
	}

	vm.PID1()
	outer, _ := strconv.Atoi(svstat(t, svc, "pid")[0])
	supervise := ppidOf(t, outer)
	if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", outer)); !strings.Contains(string(cmdline), "--parent-pid\x00"+strconv.Itoa(supervise)+"\x00") {
		t.Fatalf("vmsup's command line %q does not name its parent %d", cmdline, supervise)
	}

	tDown0 := time.Now()
	run(t, "s6-svc", "-d", svc)
	tDown := svwait(t, "-d", svc, 15*time.Second)
	tFinished := svwait(t, "-D", svc, 15*time.Second)
	t.Logf("s6-svc -d -> s6 reports down %v, finish done %v", tDown.Sub(tDown0).Round(time.Millisecond), tFinished.Sub(tDown0).Round(time.Millisecond))
	if st := svstat(t, svc, "up,wantedup,exitcode"); strings.Join(st, " ") != "false false 0" {
		t.Fatalf("s6-svstat up,wantedup,exitcode: %v, want false false 0", st)
	}
	sc.waitOut("vmsup-finish: run exited 0\n", 5*time.Second)
	vm.AssertClean(time.Second)

	// It stays down.
	time.Sleep(1500 * time.Millisecond)
	if st := svstat(t, svc, "up,wantedup"); st[0] != "false" {
		t.Fatalf("restarted after s6-svc -d: %v", st)
	}
	if n := len(lines(sc.out.String(), "vmsup-finish:")); n != 1 {
		t.Fatalf("finish ran %d times, want 1:\n%s", n, sc.out.String())
	}
	vm.AssertClean(0)
}

func TestUpAndDown(t *testing.T) { upAndDown(t, "s6-updown", s6.Sh) }

func TestUpAndDownExecline(t *testing.T) { upAndDown(t, "s6-updown-el", s6.Execline) }

// s6-svc -k SIGKILLs vmsup: the VM is gone within a second, finish sees
// the signal and lets s6 restart it. With -O first, s6 does not restart,
// so the whole VM (cgroup and runtime directory too) can be seen gone.
func TestKill(t *testing.T) {
	for _, style := range []struct {
		name  string
		style s6.Style
	}{{"sh", s6.Sh}, {"execline", s6.Execline}} {
		t.Run(style.name, func(t *testing.T) {
			name := "s6-kill-" + style.name
			c := vmtest.NewConfig(t, name, sh("a", "exec sleep 100"))
			cfgPath, cfg := newVM(t, c)
			sc := startScanner(t)
			svc, _ := sc.add(name, writer(t, cfgPath, cfg, style.style))
			waitSupervised(t, svc)
			svwait(t, "-U", svc, 10*time.Second)
			old := vmtest.Attach(t, c)
			old.PID1()
			oldPid := svstat(t, svc, "pid")[0]

			t0 := time.Now()
			run(t, "s6-svc", "-k", svc)
			// Only the processes can be told apart from the next run's.
			procs := vmtest.Attach(t, vmtest.Config{"name": old.Name})
			procs.PidNS, procs.MntNS = old.PidNS, old.MntNS
			procs.AssertClean(time.Second)
			t.Logf("s6-svc -k -> no process of the VM left: %v", time.Since(t0).Round(time.Millisecond))
			sc.waitOut("vmsup-finish: run was killed by signal 9", 5*time.Second)

			// s6 restarts it; it comes up and ready again.
			tUp := svwait(t, "-U", svc, 15*time.Second)
			if newPid := svstat(t, svc, "pid")[0]; newPid == oldPid {
				t.Fatalf("still pid %s after -k", oldPid)
			}
			t.Logf("s6-svc -k -> restarted VM ready: %v", tUp.Sub(t0).Round(time.Millisecond))
			if n := len(lines(sc.out.String(), "vmsup: cgroup ")); n > 0 {
				t.Logf("the restart found the old VM's cgroup still in use %d time(s)", n)
			}

			vm := vmtest.Attach(t, c)
			vm.PID1()
			run(t, "s6-svc", "-O", svc)
			t0 = time.Now()
			run(t, "s6-svc", "-k", svc)
			vm.AssertClean(time.Second)
			t.Logf("s6-svc -O; s6-svc -k -> nothing left: %v", time.Since(t0).Round(time.Millisecond))
			svwait(t, "-D", svc, 10*time.Second)
			time.Sleep(1500 * time.Millisecond)
			if st := svstat(t, svc, "up,wantedup"); st[0] != "false" {
				t.Fatalf("restarted after -O: %v", st)
			}
			vm.AssertClean(0)
		})
	}
}

// SIGKILL of s6-supervise takes vmsup with it (PR_SET_PDEATHSIG armed
// for --parent-pid): nothing is left after a second. s6-svscan is held
// stopped meanwhile, so the check is not confused by the next run; once
// it continues it starts a new s6-supervise, and a new VM comes up.
func TestSuperviseKilled(t *testing.T) {
	name := "s6-supkill"
	c := vmtest.NewConfig(t, name, sh("a", "exec sleep 100"))
	cfgPath, cfg := newVM(t, c)
	sc := startScanner(t)
	svc, _ := sc.add(name, writer(t, cfgPath, cfg, s6.Sh))
	waitSupervised(t, svc)
	svwait(t, "-U", svc, 10*time.Second)
	vm := vmtest.Attach(t, c)
	vm.PID1()
	outer, _ := strconv.Atoi(svstat(t, svc, "pid")[0])
	supervise := ppidOf(t, outer)

	if err := sc.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer sc.cmd.Process.Signal(syscall.SIGCONT)
	t0 := time.Now()
	if err := syscall.Kill(supervise, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for pidAlive(outer) {
		if time.Since(t0) > time.Second {
			t.Fatalf("vmsup (pid %d) still alive 1s after its s6-supervise was killed", outer)
		}
		time.Sleep(time.Millisecond)
	}
	tOuter := time.Since(t0)
	vm.AssertClean(time.Second)
	t.Logf("SIGKILL s6-supervise -> vmsup gone %v, nothing left %v", tOuter.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))

	sc.cmd.Process.Signal(syscall.SIGCONT)
	waitSupervised(t, svc)
	svwait(t, "-U", svc, 15*time.Second)
	t.Logf("a new s6-supervise brought the VM up again %v after the kill", time.Since(t0).Round(time.Millisecond))
	vm2 := vmtest.Attach(t, c)
	vm2.PID1()
	run(t, "s6-svc", "-d", svc)
	svwait(t, "-D", svc, 15*time.Second)
	vm2.AssertClean(time.Second)
}

// A service that ignores SIGTERM: vmsup kills it at shutdown_timeout and
// exits 1 by itself, long before s6's timeout-kill would SIGKILL it.
func TestTimeoutKill(t *testing.T) {
	name := "s6-timeout"
	c := vmtest.NewConfig(t, name, sh("stubborn", `trap "" TERM; echo trapped; while :; do sleep 1; done`))
	c["shutdown_timeout"] = "1s"
	cfgPath, cfg := newVM(t, c)
	sc := startScanner(t)
	svc, _ := sc.add(name, writer(t, cfgPath, cfg, s6.Sh))
	if b, err := os.ReadFile(filepath.Join(sc.base, "sv", name, "timeout-kill")); err != nil || string(b) != "11000\n" {
		t.Fatalf("timeout-kill: %q %v, want 11000", b, err)
	}
	waitSupervised(t, svc)
	svwait(t, "-U", svc, 10*time.Second)
	vm := vmtest.Attach(t, c)
	vm.PID1()
	sc.waitOut("stubborn: trapped", 5*time.Second)

	t0 := time.Now()
	run(t, "s6-svc", "-d", svc)
	el := svwait(t, "-d", svc, 15*time.Second).Sub(t0)
	if el < time.Second || el >= 6*time.Second {
		t.Fatalf("down after %v, want between shutdown_timeout 1s and timeout-kill 6s", el)
	}
	svwait(t, "-D", svc, 10*time.Second)
	if st := svstat(t, svc, "exitcode,signal"); strings.Join(st, " ") != "1 NA" {
		t.Fatalf("s6-svstat exitcode,signal: %v, want 1 NA (vmsup exited 1, not killed)", st)
	}
	sc.waitOut("vmsup-finish: run exited 1\n", 5*time.Second)
	vm.AssertClean(time.Second)
	t.Logf("s6-svc -d -> down at shutdown_timeout 1s: %v", el.Round(time.Millisecond))
}

// A config that became invalid after the service directory was written:
// vmsup exits 100, finish exits 125, and s6 does not retry.
func TestConfigError(t *testing.T) {
	name := "s6-badcfg"
	c := vmtest.NewConfig(t, name, sh("a", "exec sleep 100"))
	cfgPath, cfg := newVM(t, c)
	if err := os.WriteFile(cfgPath, []byte(`{"name": "s6-badcfg", "bogus": 1, "services": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	sc := startScanner(t)
	svc, _ := sc.add(name, writer(t, cfgPath, cfg, s6.Sh))
	waitSupervised(t, svc)
	sc.waitOut("vmsup-finish: run exited 100: not restarting", 10*time.Second)
	svwait(t, "-D", svc, 10*time.Second)
	time.Sleep(2500 * time.Millisecond) // s6 would have retried twice by now
	out := sc.out.String()
	if n := len(lines(out, "vmsup-finish:")); n != 1 {
		t.Fatalf("run started %d times, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "bogus") {
		t.Fatalf("vmsup did not name the bad field:\n%s", out)
	}
	if st := svstat(t, svc, "up,wantedup,exitcode"); strings.Join(st, " ") != "false false 100" {
		t.Fatalf("s6-svstat up,wantedup,exitcode: %v, want false false 100", st)
	}
	vmtest.Attach(t, c).AssertClean(0)
}

// The subcommand as users run it, from the real binary.
func TestServicedirCommand(t *testing.T) {
	bin := vmtest.Bin(t, "vmsup")
	name := "s6-cmd"
	c := vmtest.NewConfig(t, name, sh("a", "exec sleep 100"))
	cfgPath := c.Write(t)
	sc := startScanner(t)
	svc, t0 := sc.add(name, func(dir string) error {
		out, err := exec.Command(bin, "s6-servicedir", "--config", cfgPath, dir).CombinedOutput()
		if err != nil {
			return fmt.Errorf("vmsup s6-servicedir: %v\n%s", err, out)
		}
		return nil
	})
	runScript, err := os.ReadFile(filepath.Join(sc.base, "sv", name, "run"))
	if err != nil {
		t.Fatal(err)
	}
	realBin, _ := filepath.EvalSymlinks(bin)
	if !strings.Contains(string(runScript), "exec '"+realBin+"' run --parent-pid \"$PPID\" --notify-fd 3 '"+cfgPath+"'") {
		t.Fatalf("run script:\n%s", runScript)
	}
	waitSupervised(t, svc)
	tReady := svwait(t, "-U", svc, 10*time.Second)
	vm := vmtest.Attach(t, c)
	vm.PID1()
	t1 := time.Now()
	run(t, "s6-svc", "-d", svc)
	tDown := svwait(t, "-D", svc, 15*time.Second)
	vm.AssertClean(time.Second)
	t.Logf("one-service VM: s6-svscan -a -> s6-svwait -U returned %v; s6-svc -d -> down and finished %v",
		tReady.Sub(t0).Round(time.Millisecond), tDown.Sub(t1).Round(time.Millisecond))
}
