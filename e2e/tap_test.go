package e2e

import (
	"os"
	"os/exec"
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

// Addresses of the guest and of the host end (the bridge), inside the
// test's own network namespace.
const (
	tapHostAddr  = "10.213.0.1"
	tapGuestAddr = "10.213.0.2"
)

// A real guest (TCG) with virtio-net on a TAP that vmsup made and put on
// a bridge: the guest pings the host end, the host end pings the guest,
// while QEMU itself runs with network "none" (a namespace with only
// loopback: the TAP's fd is all it has). When the VM ends the TAP is
// gone. Everything runs in a network namespace this test makes; the
// only addresses are on its bridge and in the guest.
func TestVMOnTap(t *testing.T) {
	vmtest.RequireRoot(t)
	if err := guest.RequireHostTools(); err != nil {
		t.Fatal(err)
	}
	kdir, err := guest.Kernel()
	if err != nil {
		t.Fatalf("guest kernel: %v", err)
	}
	vmtest.NetNS(t)
	tag := strings.ReplaceAll(os.Getenv("VMSUP_TEST_TAG"), "-", "")
	short := func(s string) string { return (s + tag)[:min(15, len(s+tag))] }
	tap, br := short("vmtap"), short("vmbr")
	vmtest.MustRun(t, "ip", "link", "add", br, "type", "bridge")
	vmtest.MustRun(t, "ip", "addr", "add", tapHostAddr+"/24", "dev", br)
	vmtest.MustRun(t, "ip", "link", "set", br, "up")

	d := vmtest.SharedDir(t)
	kernel, initrd := filepath.Join(d, "vmlinuz"), filepath.Join(d, "initrd")
	if err := copyFile(filepath.Join(kdir, "vmlinuz"), kernel); err != nil {
		t.Fatal(err)
	}
	init := guest.InitPrelude + guest.PowerButtonShell + `
ip link set eth0 up || fail "eth0 up"
ip addr add ` + tapGuestAddr + `/24 dev eth0 || fail "address"
ping -c 3 -W 5 ` + tapHostAddr + ` || fail "ping the host end"
echo GUEST-PINGED
echo ` + guest.MarkerReady + `
` + guest.IdleShell
	if err := guest.BuildInitramfs(initrd, guest.InitramfsOptions{
		KernelDir: kdir, Modules: append([]string{"virtio_net"}, guest.PowerButtonModules...), Init: init,
	}); err != nil {
		t.Fatal(err)
	}
	os.Chmod(initrd, 0o644)

	name := "e2e-tap"
	qmp := filepath.Join(vmtest.RunDir(), name, "qmp.sock")
	qemu := append([]string{guest.QEMUBinary}, guest.QEMUArgs(guest.QEMUOptions{
		Kernel: kernel, Initrd: initrd, QMPSocket: qmp, MemoryMiB: 256,
		Extra: []string{"-netdev", "tap,id=n0,fd=4", "-device", "virtio-net-pci,netdev=n0"},
	})...)
	c := vmtest.NewConfig(t, name, map[string]any{
		"name": "vmm", "argv": qemu, "uid": vmmUID, "gid": vmmUID,
		"private_tmp": "16M", "private_shm": "16M",
		"taps":  []map[string]any{{"name": tap, "fd": 4, "bridge": br}},
		"ready": map[string]any{"socket": qmp},
		"vmm":   map[string]any{"qmp": qmp},
	})
	c["shutdown_timeout"] = "30s"
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	vm.WaitFor("vmm: "+guest.MarkerReady, 120*time.Second)
	if !strings.Contains(vm.Stderr.String(), "vmm: GUEST-PINGED") {
		t.Fatalf("the guest did not reach the host end:\n%s", vm.Stderr.String())
	}
	out, err := exec.Command("busybox", "ping", "-c", "3", "-W", "5", tapGuestAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("the host end cannot ping the guest: %v\n%s", err, out)
	}
	t.Logf("host end pings the guest:\n%s", out)

	// QEMU's own network namespace has loopback alone.
	pids, err := cgroup.Procs(filepath.Join(vm.CgroupDir, "svc.vmm"))
	if err != nil || len(pids) != 1 {
		t.Fatalf("VMM process: %v %v", pids, err)
	}
	mine, _ := os.Readlink("/proc/thread-self/ns/net")
	theirs, _ := os.Readlink("/proc/" + strconv.Itoa(pids[0]) + "/ns/net")
	if theirs == "" || theirs == mine {
		t.Errorf("QEMU's network namespace %q is vmsup's (%q)", theirs, mine)
	}
	links := vmtest.MustRun(t, "nsenter", "-t", strconv.Itoa(pids[0]), "-n", "ip", "-o", "link")
	if n := strings.Count(links, "\n") + 1; n != 1 || !strings.Contains(links, " lo: ") {
		t.Errorf("QEMU's network namespace has more than loopback:\n%s", links)
	}

	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(60 * time.Second); st != 0 {
		t.Fatalf("status %d, want 0:\n%s", st, vm.Stderr.String())
	}
	vm.AssertClean(time.Second)
	if out, err := exec.Command("ip", "link", "show", tap).CombinedOutput(); err == nil {
		t.Errorf("the TAP is still there after the VM ended:\n%s", out)
	}
}
