package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/cgroup"
	"vmsup/config"
	"vmsup/internal/guest"
	"vmsup/internal/vmtest"
	"vmsup/s6"
)

// scanDir is a running s6-svscan with the VM's service directory.
type scanDir struct {
	t    *testing.T
	dir  string
	svc  string
	scan *exec.Cmd
	log  *vmtest.Buffer
}

// underS6 writes the service directory of c with WriteServiceDir (what
// `vmsup s6-servicedir` does) and starts s6-svscan on it.
func underS6(t *testing.T, c vmtest.Config) *scanDir {
	t.Helper()
	base, err := os.MkdirTemp("/run", "vmsup-e2e-s6-")
	if err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(base, "svc")
	writeServiceDir(t, c, staging)
	return startScan(t, base, c["name"].(string), staging)
}

// startScan moves the service directory staging into a new scan
// directory under base (removed at the end) as name and starts
// s6-svscan on it.
func startScan(t *testing.T, base, name, staging string) *scanDir {
	t.Helper()
	s := &scanDir{t: t, dir: filepath.Join(base, "scan"), log: &vmtest.Buffer{}}
	os.Mkdir(s.dir, 0o755)
	s.svc = filepath.Join(s.dir, name)
	if err := os.Rename(staging, s.svc); err != nil {
		t.Fatal(err)
	}
	s.scan = exec.Command("s6-svscan", s.dir)
	s.scan.Stdout, s.scan.Stderr = s.log, s.log
	if err := s.scan.Start(); err != nil {
		t.Fatalf("s6-svscan: %v", err)
	}
	// s6-svwait needs s6-supervise running for the directory.
	for deadline := time.Now().Add(10 * time.Second); exec.Command("s6-svok", s.svc).Run() != nil; {
		if time.Now().After(deadline) {
			t.Fatalf("s6-svscan did not start s6-supervise for %s:\n%s", s.svc, s.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() {
		exec.Command("s6-svc", "-dx", s.svc).Run()
		exec.Command("s6-svscanctl", "-t", s.dir).Run()
		done := make(chan struct{})
		go func() { s.scan.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			s.scan.Process.Kill()
		}
		os.RemoveAll(base)
		if t.Failed() {
			t.Logf("s6-svscan's log:\n%s", s.log.String())
		}
	})
	return s
}

// writeServiceDir writes c, and at dir the s6 service directory that
// runs vmsup on it (what `vmsup s6-servicedir` writes).
func writeServiceDir(t *testing.T, c vmtest.Config, dir string) {
	t.Helper()
	cfgPath := c.Write(t)
	vmc, errs := config.Load(cfgPath)
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	if err := s6.WriteServiceDir(dir, cfgPath, vmtest.Bin(t, "vmsup"), vmc); err != nil {
		t.Fatal(err)
	}
}

func (s *scanDir) run(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("%v: %v\n%s\nlog:\n%s", args, err, out, s.log.String())
	}
	return string(bytes.TrimSpace(out))
}

// superviseProcess returns the PID of the service's s6-supervise.
func (s *scanDir) supervisePID() int {
	b, err := exec.Command("s6-svstat", "-o", "pid", s.svc).Output()
	if err != nil {
		s.t.Fatal(err)
	}
	// That is the run process (vmsup); its parent is s6-supervise.
	st, _ := os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/stat")
	i := bytes.LastIndexByte(st, ')')
	f := strings.Fields(string(st[i+1:]))
	var ppid int
	if len(f) > 1 {
		ppid = atoi(f[1])
	}
	return ppid
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// The VM under s6: readiness reaches s6, the guest writes through
// virtiofs, s6-svc -d powers it off through QMP, run exits 0, s6 keeps
// it down (it was asked to) and nothing is left.
func TestS6VMLifecycle(t *testing.T) {
	f := newFixture(t)
	c := f.config(t, "e2e-s6")
	vm := vmtest.Attach(t, c)
	t0 := time.Now()
	s := underS6(t, c)
	s.run("s6-svwait", "-U", "-t", "120000", s.svc)
	ready := time.Since(t0)
	// Ready for s6 means ready by the config: the VMM's ready rule is
	// its QMP socket accepting a connection. (vmsup's own log line may
	// reach the test after s6's readiness: it travels another pipe.)
	if conn, err := net.Dial("unix", c["runtime_dir"].(string)+"/qmp.sock"); err != nil {
		t.Fatalf("s6 saw readiness before the VMM was ready: %v\n%s", err, s.log.String())
	} else {
		conn.Close()
	}
	vm.PID1()
	if !s.log.WaitFor("vmsup: all services are ready", 10*time.Second) {
		t.Fatalf("vmsup never announced readiness:\n%s", s.log.String())
	}
	if !s.log.WaitFor("vmm: GUEST-READY", 90*time.Second) {
		t.Fatalf("the guest did not come up:\n%s", s.log.String())
	}
	guestReady := time.Since(t0)
	if b, err := os.ReadFile(filepath.Join(f.share, "hello.txt")); err != nil || string(b) != "written by the guest\n" {
		t.Fatalf("the guest's file: %q %v", b, err)
	}
	t1 := time.Now()
	s.run("s6-svc", "-d", s.svc)
	s.run("s6-svwait", "-D", "-t", "60000", s.svc)
	down := time.Since(t1)
	if !s.log.WaitFor("vmsup-finish: run exited 0\n", 5*time.Second) {
		t.Fatalf("finish did not see exit 0:\n%s", s.log.String())
	}
	log := s.log.String()
	for _, want := range []string{"vmm: asking the guest to power off", "vmm: GUEST-POWEROFF", "vmm: exited with status 0"} {
		if !strings.Contains(log, want) {
			t.Errorf("no %q:\n%s", want, log)
		}
	}
	vm.AssertClean(time.Second)
	time.Sleep(time.Second)
	if st := s.run("s6-svstat", "-o", "up", s.svc); st != "false" {
		t.Fatalf("s6 restarted the VM after a graceful stop (up=%s)", st)
	}
	t.Logf("start to s6 readiness: %v; start to guest file written: %v; s6-svc -d to s6 down: %v",
		ready.Round(time.Millisecond), guestReady.Round(time.Millisecond), down.Round(time.Millisecond))
}

// bootS6 runs the fixture's VM under s6 and waits until s6 reports it
// ready and the guest is up.
func (f *fixture) bootS6(t *testing.T, name string) (*vmtest.VM, *scanDir) {
	t.Helper()
	c := f.config(t, name)
	vm := vmtest.Attach(t, c)
	s := underS6(t, c)
	s.run("s6-svwait", "-U", "-t", "120000", s.svc)
	vm.PID1()
	if !s.log.WaitFor("vmm: GUEST-READY", 90*time.Second) {
		t.Fatalf("the guest did not come up:\n%s", s.log.String())
	}
	return vm, s
}

// Under s6, a crashing VMM ends vmsup with 1 and nothing is left; finish
// lets s6 restart the VM (here s6-svc -O keeps it down for the check).
func TestS6VMMCrash(t *testing.T) {
	f := newFixture(t)
	vm, s := f.bootS6(t, "e2e-s6-crash")
	s.run("s6-svc", "-O", s.svc) // once: no restart when it dies
	pids, err := cgroup.Procs(filepath.Join(vm.CgroupDir, "svc.vmm"))
	if err != nil || len(pids) != 1 {
		t.Fatalf("VMM process: %v %v", pids, err)
	}
	syscall.Kill(pids[0], syscall.SIGKILL)
	s.run("s6-svwait", "-D", "-t", "30000", s.svc)
	if !s.log.WaitFor("vmsup-finish: run exited 1", 5*time.Second) {
		t.Fatalf("finish did not see exit 1:\n%s", s.log.String())
	}
	vm.AssertClean(time.Second)
}

// SIGKILL of s6-supervise: vmsup dies with it (its death signal, armed
// race-free with --parent-pid) and nothing of the VM is left after 1 s.
func TestS6SuperviseKilled(t *testing.T) {
	f := newFixture(t)
	vm, s := f.bootS6(t, "e2e-s6-supkill")
	sup := s.supervisePID()
	// s6-svscan would start a new s6-supervise (and a new VM): stop it
	// from scanning first, so what is checked is the old VM's end.
	// (Not waited for here: its output pipe stays open until
	// s6-supervise, which holds it too, is gone.)
	s.scan.Process.Signal(syscall.SIGKILL)
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	vm.AssertClean(time.Second)
}

// s6-svc -r restarts the VM: vmsup stops it gracefully (0), finish lets
// s6 restart, and the VM comes back up. The testprog VMM stands in for
// QEMU here: what is tested is vmsup's status and the finish script.
func TestS6RestartOnRequest(t *testing.T) {
	prog := vmtest.Bin(t, "testprog")
	c := vmtest.NewConfig(t, "e2e-s6-restart",
		map[string]any{"name": "fsd", "argv": []string{"/bin/sleep", "1000"}},
		map[string]any{"name": "vmm", "argv": []string{prog, "linger", "0s"}, "after": []string{"fsd"},
			"vmm": map[string]any{"signal": "SIGTERM"}})
	s := underS6(t, c)
	s.run("s6-svwait", "-U", "-t", "30000", s.svc)
	first := s.run("s6-svstat", "-o", "pid", s.svc)
	if !s.log.WaitFor("vmm: up", 10*time.Second) {
		t.Fatalf("the VMM did not come up:\n%s", s.log.String())
	}
	s.run("s6-svc", "-r", s.svc)
	if !s.log.WaitFor("vmsup-finish: run exited 0\n", 15*time.Second) {
		t.Fatalf("finish did not see exit 0:\n%s", s.log.String())
	}
	// Up and ready again, as a new vmsup.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := strings.Fields(s.run("s6-svstat", "-o", "up,ready,pid", s.svc))
		if len(st) == 3 && st[0] == "true" && st[1] == "true" && st[2] != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not back up after s6-svc -r (up,ready,pid %v; first pid %s):\n%s", st, first, s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(s.log.String(), "vmsup: all services are ready"); n < 1 || strings.Contains(s.log.String(), "not restarting") {
		t.Fatalf("readiness announced %d times, or finish kept it down:\n%s", n, s.log.String())
	}
}

// The guest powering off by itself under s6 (its power button pressed
// through QMP from outside, not by s6): vmsup exits 3, finish exits 125
// and s6 keeps the VM down, with nothing left.
func TestS6GuestPowerOffStaysDown(t *testing.T) {
	f := newFixture(t)
	vm, s := f.bootS6(t, "e2e-s6-poweroff")
	if _, err := guest.QMPExecute(filepath.Join(vm.RuntimeDir, "qmp.sock"), 10*time.Second, `{"execute":"system_powerdown"}`); err != nil {
		t.Fatal(err)
	}
	s.run("s6-svwait", "-D", "-t", "60000", s.svc)
	if !s.log.WaitFor("vmsup-finish: run exited 3: not restarting", 5*time.Second) {
		t.Fatalf("finish did not see exit 3:\n%s", s.log.String())
	}
	vm.AssertClean(time.Second)
	time.Sleep(1500 * time.Millisecond)
	if st := s.run("s6-svstat", "-o", "up,wantedup", s.svc); st != "false false" {
		t.Fatalf("s6-svstat up,wantedup: %q, want false false: s6 restarted the VM after the guest powered off:\n%s", st, s.log.String())
	}
	vm.AssertClean(0)
}

// guestPowerOffStatus is what `vmsup run` exits with when the guest
// powers off by itself: 3 in the contract.
const guestPowerOffStatus = 3

// The contract's VM under real s6: the Rust virtiofsd as uid 2001 with
// only CAP_DAC_READ_SEARCH and QEMU as 2002. Readiness reaches s6, the
// guest writes through virtiofs, s6-svc -d ends it with 0 and quiet logs;
// started again, the guest's own power-off ends it with
// guestPowerOffStatus, s6 keeps it down, and nothing is left either time.
func TestS6RustVirtiofsdVM(t *testing.T) {
	f := newFixture(t)
	c := f.config(t, "e2e-s6-rust")
	vm := vmtest.Attach(t, c)
	s := underS6(t, c)
	s.run("s6-svwait", "-U", "-t", "120000", s.svc)
	vm.PID1()
	if !s.log.WaitFor("vmm: GUEST-READY", 90*time.Second) {
		t.Fatalf("the guest did not come up:\n%s", s.log.String())
	}
	if b, err := os.ReadFile(filepath.Join(f.share, "hello.txt")); err != nil || string(b) != "written by the guest\n" {
		t.Fatalf("the guest's file: %q %v", b, err)
	}
	st, err := os.Stat(filepath.Join(f.share, "hello.txt"))
	if err != nil || st.Sys().(*syscall.Stat_t).Uid != guest.RustVirtiofsdUID {
		t.Fatalf("the guest's file is not virtiofsd's uid's: %v %v", st, err)
	}
	assertRustVirtiofsd(t, vm)

	s.run("s6-svc", "-d", s.svc)
	s.run("s6-svwait", "-D", "-t", "60000", s.svc)
	if !s.log.WaitFor("vmsup-finish: run exited 0\n", 5*time.Second) {
		t.Fatalf("finish did not see exit 0:\n%s", s.log.String())
	}
	vm.AssertClean(time.Second)
	first := s.log.String()
	assertQuietEnd(t, first)
	// The Rust virtiofsd exits 0 when QEMU disconnects, or 1 on the
	// SIGTERM vmsup sends it if QEMU's end is seen first: that is a stop.
	if strings.Contains(first, "virtiofsd: exited with status 1\n") {
		t.Errorf("virtiofsd's end at stop reads as a failure:\n%s", first)
	}

	// Again, and this time the guest powers off by itself (its power
	// button pressed from outside vmsup).
	s.run("s6-svc", "-u", s.svc)
	s.run("s6-svwait", "-U", "-t", "120000", s.svc)
	for deadline := time.Now().Add(90 * time.Second); !strings.Contains(s.log.String()[len(first):], "vmm: GUEST-READY"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the guest did not come up again:\n%s", s.log.String())
		}
	}
	if _, err := guest.QMPExecute(filepath.Join(c["runtime_dir"].(string), "qmp.sock"), 10*time.Second, `{"execute":"system_powerdown"}`); err != nil {
		t.Fatal(err)
	}
	s.run("s6-svwait", "-D", "-t", "60000", s.svc)
	want := fmt.Sprintf("vmsup-finish: run exited %d", guestPowerOffStatus)
	if !s.log.WaitFor(want, 5*time.Second) {
		t.Fatalf("finish did not see %d:\n%s", guestPowerOffStatus, s.log.String())
	}
	vm.AssertClean(time.Second)
	second := s.log.String()[len(first):]
	assertQuietEnd(t, second)
	if !strings.Contains(second, "vmm: exited with status 0: the guest powered off") {
		t.Errorf("the guest's own power-off does not read as one:\n%s", second)
	}
	time.Sleep(time.Second)
	if up := s.run("s6-svstat", "-o", "up", s.svc); up != "false" {
		t.Fatalf("s6 restarted the VM after the guest powered off (up=%s)", up)
	}
	t.Logf("vmsup's and the services' log, both runs:\n%s", s.log.String())
}

// assertRustVirtiofsd checks the virtiofsd that runs is the Rust one, as
// the contract's example: uid 2001, CAP_DAC_READ_SEARCH alone.
func assertRustVirtiofsd(t *testing.T, vm *vmtest.VM) {
	t.Helper()
	pids, err := cgroup.Procs(filepath.Join(vm.CgroupDir, "svc.virtiofsd"))
	if err != nil || len(pids) == 0 {
		t.Fatalf("virtiofsd process: %v %v", pids, err)
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pids[0]))
	if !bytes.Contains(cmdline, []byte("ld-linux-x86-64.so.2\x00--library-path")) || !bytes.Contains(cmdline, []byte("/virtiofsd\x00--fd=3")) {
		t.Fatalf("not the Rust virtiofsd through its loader: %q", cmdline)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pids[0]))
	for _, want := range []string{"Uid:\t2001\t2001\t2001\t2001", "CapEff:\t0000000000000004", "CapBnd:\t0000000000000004"} {
		if !bytes.Contains(status, []byte(want)) {
			t.Errorf("virtiofsd's status lacks %q:\n%s", want, status)
		}
	}
}

// assertQuietEnd checks a VM's end reads as what it is: no error-looking
// line about a power-off the guest was already doing.
func assertQuietEnd(t *testing.T, log string) {
	t.Helper()
	for _, bad := range []string{"could not ask the guest to power off", "did not stop as asked", "the VM failed"} {
		if strings.Contains(log, bad) {
			t.Errorf("%q in:\n%s", bad, log)
		}
	}
}
