package supervisor_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/internal/vmtest"
	"vmsup/status"
)

var vmsupStatus = vmtest.StatusCmd

func statusJSON(t *testing.T, name string) (*status.VM, int) {
	t.Helper()
	out, errs, code := vmsupStatus(t, "--json", name)
	if code != 0 {
		return nil, code
	}
	var r status.VM
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("status --json: %v\n%s%s", err, out, errs)
	}
	return &r, 0
}

func svc(r *status.VM, name string) status.Service {
	for _, s := range r.Services {
		if s.Name == name {
			return s
		}
	}
	return status.Service{}
}

// waitStatus reads the record until ok holds (a test may poll; vmsup
// does not).
func waitStatus(t *testing.T, name string, timeout time.Duration, what string, ok func(*status.VM) bool) *status.VM {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *status.VM
	for time.Now().Before(deadline) {
		if r, code := statusJSON(t, name); code == 0 {
			last = r
			if ok(r) {
				return r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", "  ")
	t.Fatalf("status never showed %s within %v; last record:\n%s", what, timeout, b)
	return nil
}

// vmsup status shows every state on a real VM: waiting (for after),
// starting (ready rule not met), ready, restarting (back-off) with the
// restart count, stopped (on_exit ignore), with host PIDs and the phase;
// once the VM is gone, 1.
func TestStatusStates(t *testing.T) {
	flag := filepath.Join(vmtest.SharedDir(t), "ready")
	name := "status-states"
	c := vmtest.NewConfig(t, name,
		map[string]any{"name": "a", "argv": []string{"/bin/sleep", "100"}, "ready": map[string]any{"exists": flag}},
		map[string]any{"name": "b", "argv": []string{"/bin/sleep", "100"}, "after": []string{"a"}},
		map[string]any{"name": "r", "argv": []string{"/bin/sh", "-c", "exit 7"}, "on_exit": "restart"},
		// Ready once started, then ends: it counts as ready for the VM.
		map[string]any{"name": "i", "argv": []string{"/bin/sh", "-c", "sleep 0.3"}, "on_exit": "ignore"})
	vm := vmtest.Start(t, c, vmtest.Options{})
	pid1 := vm.PID1()

	r := waitStatus(t, name, 15*time.Second, "a starting, b waiting, r restarting, i stopped", func(r *status.VM) bool {
		return svc(r, "a").State == status.Starting && svc(r, "b").State == status.Waiting &&
			svc(r, "r").State == status.Restarting && svc(r, "r").Restarts >= 1 && svc(r, "i").State == status.Stopped
	})
	if r.Phase != "starting" {
		t.Errorf("phase %q before a is ready, want starting", r.Phase)
	}
	a := svc(r, "a")
	if a.PID <= 0 || a.HostPID <= 0 || a.Ready || a.WaitsFor != "exists "+flag {
		t.Errorf("a: %+v", a)
	}
	if cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(a.HostPID) + "/cmdline"); !strings.HasPrefix(string(cmdline), "/bin/sleep\x00100") {
		t.Errorf("host pid %d of a is %q, not a's sleep", a.HostPID, cmdline)
	}
	if b := svc(r, "b"); b.PID != 0 || !strings.Contains(b.WaitsFor, "after a") {
		t.Errorf("b: %+v", b)
	}
	if rs := svc(r, "r"); !strings.Contains(rs.LastExit, "status 7") || rs.PID != 0 {
		t.Errorf("r: %+v", rs)
	}
	if i := svc(r, "i"); i.LastExit != "exited with status 0" {
		t.Errorf("i: %+v", i)
	}

	// Human output, one line per service, as s6-svstat.
	out, _, code := vmsupStatus(t, name)
	if code != 0 {
		t.Fatalf("status %d", code)
	}
	for _, re := range []string{
		`^status-states: starting \(pid ` + strconv.Itoa(pid1) + `\) \d+s, \d of 4 services ready\n`,
		`\n  a: starting \(pid \d+, \d+ in the VM\) \d+s, restarts 0, not ready: waits for exists ` + regexp.QuoteMeta(flag) + `\n`,
		`\n  b: waiting \d+s, restarts 0, then ready on after a, started\n`,
		`\n  i: stopped \d+s, restarts 0, last exited with status 0\n`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status output does not match %s:\n%s", re, out)
		}
	}

	// a becomes ready, b starts and is ready.
	os.WriteFile(flag, nil, 0o644)
	r = waitStatus(t, name, 10*time.Second, "a and b ready", func(r *status.VM) bool {
		return svc(r, "a").State == status.Ready && svc(r, "b").State == status.Ready
	})
	if !svc(r, "a").Ready || svc(r, "b").HostPID <= 0 {
		t.Errorf("after readiness: %+v", r.Services)
	}
	if r.Phase != "running" {
		t.Errorf("phase %q once every service was ready, want running", r.Phase)
	}
	// Listed among the running VMs.
	if out, _, code := vmsupStatus(t); code != 0 || !strings.Contains(out, "status-states: running ") {
		t.Errorf("vmsup status (%d):\n%s", code, out)
	}

	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(10 * time.Second); st != 0 {
		t.Fatalf("status %d, want 0", st)
	}
	vm.AssertClean(time.Second)
	out, errs, code := vmsupStatus(t, name)
	if code != 1 || out != "" || errs != "vmsup: status: status-states: no such VM runs\n" {
		t.Errorf("after the VM: %d %q %q", code, out, errs)
	}
}

// A record that outlived its PID 1 (killed while the outer stage could
// not clean up) does not make the VM look running: the lock decides.
func TestStatusStaleRecord(t *testing.T) {
	name := "status-stale"
	c := vmtest.NewConfig(t, name, sh("a", "exec sleep 100"))
	vm := vmtest.Start(t, c, vmtest.Options{})
	pid1 := vm.PID1()
	waitStatus(t, name, 10*time.Second, "a ready", func(r *status.VM) bool { return svc(r, "a").State == status.Ready })

	// Freeze the outer stage, so that nothing removes the record, then
	// kill PID 1 as a crash would.
	outer := vm.Cmd.Process.Pid
	syscall.Kill(outer, syscall.SIGSTOP)
	syscall.Kill(pid1, syscall.SIGKILL)
	rec := filepath.Join(vmtest.StatusDir(), name, "status.json")
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid1) + "/stat")
		if err != nil || strings.Contains(string(st), ") Z ") {
			break // PID 1 is a zombie or gone: its descriptors are closed
		}
		if time.Now().After(deadline) {
			t.Fatal("PID 1 did not die")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, err := os.ReadFile(rec)
	if err != nil || !strings.Contains(string(b), `"phase":"running"`) {
		t.Fatalf("the crash's record should still be there, saying running: %v %s", err, b)
	}
	out, errs, code := vmsupStatus(t, name)
	if code != 1 || !strings.Contains(errs, "no such VM runs") {
		t.Errorf("stale record: status %d, %q %q", code, out, errs)
	}
	if out, _, _ := vmsupStatus(t); strings.Contains(out, name) {
		t.Errorf("stale VM listed: %s", out)
	}
	syscall.Kill(outer, syscall.SIGCONT)
	vm.Wait(10 * time.Second)
	vm.AssertClean(time.Second)
}

// No service can read or write the status record: not as uid 0 without
// capabilities, not with CAP_DAC_OVERRIDE (file modes alone would not
// stop either: the directory is root's). The control run, with
// CAP_SYS_ADMIN, unmounts the cover and then reads, forges and removes
// the record, which shows the attack is real.
func TestStatusRecordHidden(t *testing.T) {
	prog := vmtest.Bin(t, "testprog")
	attacker := func(vmName, name string, caps []string, umount bool) map[string]any {
		argv := []string{prog, "status-attack", vmtest.StatusDir(), vmName}
		if umount {
			argv = append(argv, "umount")
		}
		return map[string]any{"name": name, "argv": argv, "uid": 0, "gid": 0, "capabilities": caps, "on_exit": "ignore"}
	}
	attacks := []string{"read", "read via /proc/1/root", "open for writing", "create", "replace", "remove"}
	run := func(vmName string, intact bool, services ...map[string]any) string {
		c := vmtest.NewConfig(t, vmName, append(services, sh("keep", "exec sleep 100"))...)
		vm := vmtest.Start(t, c, vmtest.Options{})
		vm.PID1()
		for _, s := range services {
			vm.WaitFor(s["name"].(string)+": status-attack done", 15*time.Second)
		}
		out := vm.Stderr.String()
		if intact { // PID 1 still owns an unchanged record
			waitStatus(t, vmName, 5*time.Second, "keep ready", func(r *status.VM) bool { return svc(r, "keep").State == status.Ready })
		}
		vm.Signal(syscall.SIGTERM)
		vm.Wait(10 * time.Second)
		vm.AssertClean(time.Second)
		return out
	}

	out := run("status-hidden", true,
		attacker("status-hidden", "nocaps", []string{}, false),
		attacker("status-hidden", "dacoverride", []string{"CAP_DAC_OVERRIDE"}, false))
	for _, s := range []string{"nocaps", "dacoverride"} {
		for _, what := range attacks {
			if line := grepLine(out, s+": status-attack "+what+":"); !strings.Contains(line, "refused") {
				t.Errorf("%s: %q", s, line)
			}
		}
		// It sees an empty directory: the cover.
		if line := grepLine(out, s+": status-attack list:"); !strings.HasSuffix(line, ": ok") {
			t.Errorf("%s: %q", s, line)
		}
	}

	out = run("status-hidden-control", false,
		attacker("status-hidden-control", "control", []string{"CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE"}, true))
	for _, what := range []string{"umount", "read", "open for writing", "create", "replace", "remove"} {
		if line := grepLine(out, "control: status-attack "+what+":"); !strings.HasSuffix(line, ": ok") {
			t.Errorf("control run: %q (the attack should work once the cover is gone)", line)
		}
	}
}

// ready.timeout: a line when the wait begins (with the default, 60 s,
// when none is given), and a service not ready in time fails the VM with
// a line naming its rule; "0" waits for ever.
func TestReadyTimeout(t *testing.T) {
	prog := vmtest.Bin(t, "testprog")
	dir := vmtest.SharedDir(t)
	sock := filepath.Join(dir, "never.sock")
	c := vmtest.NewConfig(t, "ready-timeout",
		map[string]any{"name": "slow", "argv": []string{prog, "listen", sock, "1h"}, "ready": map[string]any{"socket": sock, "timeout": "1.5s"}},
		map[string]any{"name": "dflt", "argv": []string{"/bin/sleep", "100"}, "ready": map[string]any{"exists": filepath.Join(dir, "x")}},
		map[string]any{"name": "forever", "argv": []string{"/bin/sleep", "100"}, "ready": map[string]any{"exists": filepath.Join(dir, "y"), "timeout": "0"}})
	t0 := time.Now()
	vm := vmtest.Start(t, c, vmtest.Options{})
	st := vm.Wait(20 * time.Second)
	el := time.Since(t0)
	out := vm.Stderr.String()
	if st != 1 {
		t.Fatalf("status %d, want 1", st)
	}
	for _, want := range []string{
		"vmsup: slow: waiting up to 1.5s until ready (ready rule: socket " + sock + ")\n",
		"vmsup: dflt: waiting up to 60s until ready (ready rule: exists " + filepath.Join(dir, "x") + ")\n",
		"vmsup: forever: waiting until ready (ready rule: exists " + filepath.Join(dir, "y") + ")\n",
		"vmsup: slow: not ready within 1.5s (ready rule: socket " + sock + "): the VM failed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if el < 1500*time.Millisecond {
		t.Errorf("failed after %v, before the timeout", el)
	}
	vm.AssertClean(time.Second)
}

// SIGQUIT (s6-svc -q) is a stop request, not Go's goroutine dump; ps
// shows the VM's name in PID 1's title; a line says when each service
// started, with its PID.
func TestQuitAndTitle(t *testing.T) {
	c := vmtest.NewConfig(t, "quit-title", sh("a", "exec sleep 100"))
	vm := vmtest.Start(t, c, vmtest.Options{})
	pid1 := vm.PID1()
	vm.WaitFor("all services are ready", 10*time.Second)
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid1) + "/cmdline")
	if string(cmdline) != "vmsup-pid1\x00quit-title\x00" {
		t.Errorf("PID 1's command line %q, want vmsup-pid1 quit-title", cmdline)
	}
	if !regexp.MustCompile(`(?m)^vmsup: a: started \(pid \d+ in the VM\)$`).MatchString(vm.Stderr.String()) {
		t.Errorf("no start line with the PID")
	}
	vm.Signal(syscall.SIGQUIT)
	if st := vm.Wait(10 * time.Second); st != 0 {
		t.Fatalf("status %d after SIGQUIT, want 0", st)
	}
	out := vm.Stderr.String()
	if !strings.Contains(out, "vmsup: SIGQUIT: stopping") || strings.Contains(out, "goroutine ") {
		t.Errorf("SIGQUIT not handled as a stop:\n%s", out)
	}
	vm.AssertClean(time.Second)
}

// Every line of a multi-line error carries vmsup's prefix.
func TestMultiLineErrorPrefixed(t *testing.T) {
	c := vmtest.NewConfig(t, "multi-line",
		map[string]any{"name": "a", "argv": []string{"/no/such/a"}},
		map[string]any{"name": "b", "argv": []string{"/no/such/b"}})
	vm, st := vmtest.Run(t, c, 10*time.Second)
	if st != 100 {
		t.Fatalf("status %d, want 100", st)
	}
	lines := strings.Split(strings.TrimSpace(vm.Stderr.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one line per problem:\n%s", vm.Stderr.String())
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "vmsup: config: services[") {
			t.Errorf("line without the prefix: %q", l)
		}
	}
}

// What explain reports for a uid 0 service and PID 1 is real: without
// any capability, a uid 0 service may prlimit PID 1 (same uid and gid;
// Landlock does not cover prlimit). Here it lowers PID 1's core limit,
// which is harmless; a uid 65534 service, the control, is refused.
func TestUID0ServicePrlimitsPID1(t *testing.T) {
	c := vmtest.NewConfig(t, "prlimit-pid1",
		map[string]any{"name": "root", "argv": []string{"/bin/sh", "-c", "prlimit --pid 1 --core=0:0 && echo prlimit ok; exec sleep 100"}, "uid": 0, "gid": 0},
		map[string]any{"name": "nobody", "argv": []string{"/bin/sh", "-c", "prlimit --pid 1 --nofile=64:64 2>&1 || echo prlimit refused; exec sleep 100"}})
	vm := vmtest.Start(t, c, vmtest.Options{})
	pid1 := vm.PID1()
	vm.WaitFor("root: prlimit ok", 10*time.Second)
	vm.WaitFor("nobody: prlimit refused", 10*time.Second)
	limits, _ := os.ReadFile("/proc/" + strconv.Itoa(pid1) + "/limits")
	if !regexp.MustCompile(`Max core file size\s+0\s+0\s`).Match(limits) {
		t.Errorf("PID 1's core limit not lowered:\n%s", limits)
	}
	if regexp.MustCompile(`Max open files\s+64\s`).Match(limits) {
		t.Errorf("uid 65534 changed PID 1's nofile:\n%s", limits)
	}
	vm.Signal(syscall.SIGTERM)
	vm.Wait(10 * time.Second)
	vm.AssertClean(time.Second)
}

// One Ctrl-C or Ctrl-\ in a terminal (the signal to the whole process
// group: the outer vmsup and PID 1) is one stop request, not two: the VM
// stops gracefully, its service gets its stop signal and is not killed.
func TestKeyboardSignalIsOneStop(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			c := vmtest.NewConfig(t, "keyboard-"+strings.ToLower(unix.SignalName(sig)),
				sh("a", `trap 'echo got TERM; sleep 0.3; exit 0' TERM; echo up; while :; do sleep 0.1; done`))
			// setsid: vmsup leads a process group of its own, as in a terminal.
			vm := vmtest.Start(t, c, vmtest.Options{Wrap: []string{"setsid"}})
			vm.PID1()
			vm.WaitFor("a: up", 10*time.Second)
			syscall.Kill(-vm.Cmd.Process.Pid, sig)
			if st := vm.Wait(10 * time.Second); st != 0 {
				t.Fatalf("status %d, want 0", st)
			}
			out := vm.Stderr.String()
			if strings.Contains(out, "second stop request") || !strings.Contains(out, "a: got TERM") {
				t.Errorf("not one graceful stop:\n%s", out)
			}
			vm.AssertClean(time.Second)
		})
	}
}
