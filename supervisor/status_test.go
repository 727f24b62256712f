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
// CAP_SYS_ADMIN and @mount lifted from the syscall filter, unmounts the
// cover and then reads, forges and removes the record, which shows the
// attack is real.
func TestStatusRecordHidden(t *testing.T) {
	prog := vmtest.Bin(t, "testprog")
	attacker := func(vmName, name string, caps []string, umount bool) map[string]any {
		argv := []string{prog, "status-attack", vmtest.StatusDir(), vmName}
		svc := map[string]any{"name": name, "argv": argv, "uid": 0, "gid": 0, "capabilities": caps, "on_exit": "ignore"}
		if umount {
			// The syscall filter refuses umount too: lifted for the control.
			svc["argv"] = append(argv, "umount")
			svc["syscalls"] = map[string]any{"allow": []string{"@mount"}}
		}
		return svc
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
