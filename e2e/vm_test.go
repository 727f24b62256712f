// Package e2e runs real VMs under vmsup: Debian trixie's Rust virtiofsd
// (scripts/fetch-virtiofsd) as the contract's example runs it, or the
// legacy C virtiofsd from Debian's qemu-system-x86, on a socket vmsup
// pre-binds, and a non-root qemu-system-x86_64 (TCG) booting Debian
// trixie's cloud kernel with a busybox initramfs that mounts the virtiofs
// share, writes a file and powers off on the ACPI power button.
package e2e

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/cgroup"
	"vmsup/internal/guest"
	"vmsup/internal/vmtest"
)

func TestMain(m *testing.M) { vmtest.Main(m) }

const vmmUID = 2002

// fixture is one guest ready to run: kernel and initramfs readable by the
// VMM's user, the directory virtiofsd shares and the Rust virtiofsd's
// directory. legacy runs the legacy C virtiofsd instead.
type fixture struct {
	kernel, initrd, share, virtiofsd string
	legacy                           bool
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	vmtest.RequireRoot(t)
	if err := guest.RequireHostTools(); err != nil {
		t.Fatal(err)
	}
	kdir, err := guest.Kernel()
	if err != nil {
		t.Fatalf("guest kernel: %v", err)
	}
	d := vmtest.SharedDir(t)
	f := &fixture{kernel: filepath.Join(d, "vmlinuz"), initrd: filepath.Join(d, "initrd"), share: filepath.Join(d, "share")}
	if err := copyFile(filepath.Join(kdir, "vmlinuz"), f.kernel); err != nil {
		t.Fatal(err)
	}
	if err := guest.BuildInitramfs(f.initrd, guest.InitramfsOptions{
		KernelDir: kdir,
		Modules:   guest.PowerButtonModules,
		Init:      guest.VirtiofsPowerOffInit("share", "hello.txt", "written by the guest\n"),
	}); err != nil {
		t.Fatal(err)
	}
	os.Chmod(f.initrd, 0o644)
	os.Mkdir(f.share, 0o755)
	// The Rust virtiofsd runs as its own uid without CAP_DAC_OVERRIDE:
	// the share is its.
	os.Chown(f.share, guest.RustVirtiofsdUID, guest.RustVirtiofsdUID)
	if f.virtiofsd, err = guest.RustVirtiofsd(); err != nil {
		t.Fatal(err)
	}
	return f
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// config is the VM: virtiofsd, then the VMM once virtiofsd is up, with
// QMP for power-off.
func (f *fixture) config(t *testing.T, name string) vmtest.Config {
	c := vmtest.NewConfig(t, name)
	rt := filepath.Join(vmtest.RunDir(), name)
	fs := guest.RustVirtiofsdService(f.virtiofsd, f.share, rt+"/fs.sock", vmmUID)
	if f.legacy {
		fs = guest.LegacyVirtiofsdService(f.share, rt+"/fs.sock", vmmUID)
	}
	c["services"] = []map[string]any{fs, guest.VMMService(f.kernel, f.initrd, rt, vmmUID)}
	// The share is a mount point of its own: with file handles the Rust
	// virtiofsd reopens the mount holding the share, which Landlock lets
	// it read only when that is the share.
	c["mount"] = map[string]any{"binds": []map[string]any{{"source": f.share, "target": f.share}}}
	c["shutdown_timeout"] = "30s"
	return c
}

// phases records when each step of a VM's life happened.
type phases struct{ start, ready, guestReady, stop, exit time.Time }

func (p phases) log(t *testing.T) {
	t.Logf("start to s6-style readiness: %v; start to guest ready (file written): %v; stop request to exit: %v",
		p.ready.Sub(p.start).Round(time.Millisecond), p.guestReady.Sub(p.start).Round(time.Millisecond), p.exit.Sub(p.stop).Round(time.Millisecond))
}

// boot starts the VM and waits for readiness and for the guest to have
// written its file through virtiofs.
func (f *fixture) boot(t *testing.T, name string) (*vmtest.VM, *phases) {
	p := &phases{start: time.Now()}
	vm := vmtest.Start(t, f.config(t, name), vmtest.Options{Notify: true})
	vm.PID1()
	b := make([]byte, 1)
	if n, _ := vm.Notify.Read(b); n != 1 || b[0] != '\n' {
		t.Fatalf("no readiness notification:\n%s", vm.Stderr.String())
	}
	p.ready = time.Now()
	vm.WaitFor("vmm: "+guest.MarkerReady, 90*time.Second)
	p.guestReady = time.Now()
	got, err := os.ReadFile(filepath.Join(f.share, "hello.txt"))
	if err != nil || string(got) != "written by the guest\n" {
		t.Fatalf("the guest's file on the host: %q, %v", got, err)
	}
	return vm, p
}

// s6-style stop: SIGTERM powers the guest off through QMP (not a kill),
// vmsup exits 0 and nothing is left.
func TestVMPowerOffOnStop(t *testing.T) {
	f := newFixture(t)
	vm, p := f.boot(t, "e2e-stop")
	p.stop = time.Now()
	vm.Signal(syscall.SIGTERM)
	st := vm.Wait(60 * time.Second)
	p.exit = time.Now()
	out := vm.Stderr.String()
	if st != 0 {
		t.Fatalf("status %d, want 0:\n%s", st, out)
	}
	for _, want := range []string{"vmm: asking the guest to power off", "vmm: " + guest.MarkerPowerOff, "vmm: exited with status 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "vmm: killed by") {
		t.Errorf("the VMM was killed, not powered off:\n%s", out)
	}
	vm.AssertClean(time.Second)
	p.log(t)
}

// The guest powering off by itself (here: its power button pressed
// through QMP from outside) ends the VM with 3, which s6's finish script
// maps to "stay down".
func TestVMGuestPowersOff(t *testing.T) {
	f := newFixture(t)
	vm, _ := f.boot(t, "e2e-poweroff")
	if _, err := guest.QMPExecute(filepath.Join(vm.RuntimeDir, "qmp.sock"), 10*time.Second, `{"execute":"system_powerdown"}`); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if st := vm.Wait(60 * time.Second); st != 3 {
		t.Fatalf("status %d, want 3:\n%s", st, vm.Stderr.String())
	}
	t.Logf("power button to vmsup exit: %v", time.Since(t0).Round(time.Millisecond))
	vm.AssertClean(time.Second)
}

// A crashing VMM ends the VM with 1 and leaves nothing.
func TestVMMCrash(t *testing.T) {
	f := newFixture(t)
	vm, _ := f.boot(t, "e2e-crash")
	pids, err := cgroup.Procs(filepath.Join(vm.CgroupDir, "svc.vmm"))
	if err != nil || len(pids) != 1 {
		t.Fatalf("VMM process: %v %v", pids, err)
	}
	syscall.Kill(pids[0], syscall.SIGKILL)
	if st := vm.Wait(30 * time.Second); st != 1 {
		t.Fatalf("status %d, want 1:\n%s", st, vm.Stderr.String())
	}
	if !strings.Contains(vm.Stderr.String(), "vmm: killed by SIGKILL") {
		t.Errorf("crash not reported:\n%s", vm.Stderr.String())
	}
	vm.AssertClean(time.Second)
}

// The legacy C virtiofsd (bookworm's qemu-system-x86; QEMU dropped it in
// 8.0) as a second case: root with the capabilities it drops to itself.
// SIGTERM powers the guest off, vmsup exits 0, nothing is left.
func TestVMLegacyVirtiofsd(t *testing.T) {
	f := newFixture(t)
	f.legacy = true
	vm, _ := f.boot(t, "e2e-legacy")
	pids, err := cgroup.Procs(filepath.Join(vm.CgroupDir, "svc.virtiofsd"))
	if err != nil || len(pids) == 0 {
		t.Fatalf("virtiofsd: %v %v", pids, err)
	}
	if exe, _ := os.Readlink("/proc/" + strconv.Itoa(pids[0]) + "/exe"); exe != guest.VirtiofsdBinary {
		t.Fatalf("virtiofsd runs %q, want the legacy %s", exe, guest.VirtiofsdBinary)
	}
	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(60 * time.Second); st != 0 {
		t.Fatalf("status %d, want 0:\n%s", st, vm.Stderr.String())
	}
	vm.AssertClean(time.Second)
}
