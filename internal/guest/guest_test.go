package guest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests boot real guests: real QEMU (TCG), real virtiofsd, the real
// trixie kernel. They need root. A missing kernel is a failure, not a skip.

var (
	kernelOnce sync.Once
	kernelDir  string
	kernelErr  error
)

func testKernel(t *testing.T) string {
	t.Helper()
	kernelOnce.Do(func() {
		if kernelErr = RequireHostTools(); kernelErr != nil {
			return
		}
		kernelDir, kernelErr = Kernel()
	})
	if kernelErr != nil {
		t.Fatalf("cannot get the guest kernel (scripts/fetch-guest-kernel): %v", kernelErr)
	}
	return kernelDir
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test boots a QEMU guest with virtiofsd and must run as root")
	}
}

// readNewc parses a newc archive into name -> (mode, data).
type newcEntry struct {
	mode  uint32
	data  []byte
	major uint32
	minor uint32
}

func readNewc(t *testing.T, b []byte) ([]string, map[string]newcEntry) {
	t.Helper()
	var order []string
	ents := make(map[string]newcEntry)
	off := 0
	hex := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+6+8*i+8]), 16, 32)
		if err != nil {
			t.Fatalf("bad header at %d: %v", off, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at offset %d", off)
		}
		mode, size, rmaj, rmin, nsize := hex(1), int(hex(6)), hex(9), hex(10), int(hex(11))
		name := string(b[off+110 : off+110+nsize-1])
		off = align(off + 110 + nsize)
		data := b[off : off+size]
		off = align(off + size)
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after trailer", len(b)-off)
			}
			return order, ents
		}
		if _, dup := ents[name]; dup {
			t.Fatalf("duplicate entry %q", name)
		}
		order = append(order, name)
		ents[name] = newcEntry{mode, data, rmaj, rmin}
	}
}

func TestInitramfsNewc(t *testing.T) {
	var buf bytes.Buffer
	a := NewInitramfs(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.File("/a/b/c.txt", 0o640, []byte("hello")))
	must(a.Symlink("bin/sh", "/bin/busybox"))
	must(a.CharDev("dev/console", 0o600, 5, 1))
	must(a.Dir("/a", 0o700)) // exists already: no-op
	if err := a.File("a/b/c.txt", 0o644, nil); err == nil {
		t.Fatal("duplicate entry accepted")
	}
	must(a.Close())
	order, ents := readNewc(t, buf.Bytes())
	want := []string{"a", "a/b", "a/b/c.txt", "bin", "bin/sh", "dev", "dev/console"}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Fatalf("entries %v, want %v", order, want)
	}
	if e := ents["a/b/c.txt"]; e.mode != 0o100640 || string(e.data) != "hello" {
		t.Fatalf("file entry %o %q", e.mode, e.data)
	}
	if e := ents["bin/sh"]; e.mode != 0o120777 || string(e.data) != "/bin/busybox" {
		t.Fatalf("symlink entry %o %q", e.mode, e.data)
	}
	if e := ents["dev/console"]; e.mode != 0o020600 || e.major != 5 || e.minor != 1 {
		t.Fatalf("device entry %o %d:%d", e.mode, e.major, e.minor)
	}
	if e := ents["a"]; e.mode != 0o040755 {
		t.Fatalf("implicit dir mode %o", e.mode)
	}
	// The host's cpio reads it too, when installed.
	if _, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command("cpio", "-it", "--quiet")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -it: %v", err)
		}
		if got := strings.Fields(string(out)); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("cpio -it lists %v, want %v", got, want)
		}
	}
}

func TestBuildInitramfsModules(t *testing.T) {
	kdir := testKernel(t)
	kver, err := KernelRelease(kdir)
	if err != nil {
		t.Fatal(err)
	}
	pkg, _ := KernelPackage(kdir)
	t.Logf("kernel %s (%s) in %s", kver, pkg, kdir)
	out := filepath.Join(t.TempDir(), "initrd")
	err = BuildInitramfs(out, InitramfsOptions{
		Init:      "#!/bin/sh\n",
		KernelDir: kdir,
		Modules:   append([]string{"fuse", "virtiofs"}, PowerButtonModules...), // first two are built in
		Files: map[string]File{
			"/etc/hello":  {Content: []byte("hi"), Mode: 0o600},
			"/usr/bin/ls": {Content: []byte("#!/bin/sh\n"), Mode: 0o755}, // replaces an applet link
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	_, ents := readNewc(t, b)
	load := string(ents["etc/modules.load"].data)
	for _, m := range []string{"/button.ko", "/evdev.ko"} {
		if !strings.Contains(load, m) {
			t.Errorf("modules.load lacks %s:\n%s", m, load)
		}
	}
	for _, l := range strings.Fields(load) {
		if _, ok := ents[strings.TrimPrefix(l, "/")]; !ok {
			t.Errorf("module %s listed but not in the archive", l)
		}
	}
	if _, ok := ents["lib/modules/"+kver+"/modules.dep"]; !ok {
		t.Error("no modules.dep")
	}
	if e := ents["etc/hello"]; string(e.data) != "hi" || e.mode != 0o100600 {
		t.Errorf("etc/hello: %o %q", e.mode, e.data)
	}
	if e := ents["usr/bin/ls"]; e.mode != 0o100755 {
		t.Errorf("usr/bin/ls should be the extra file, mode %o", e.mode)
	}
	if e := ents["sbin/acpid"]; e.mode != 0o120777 || string(e.data) != "/bin/busybox" {
		t.Errorf("sbin/acpid: %o %q", e.mode, e.data)
	}
	if e := ents["init"]; e.mode != 0o100755 {
		t.Errorf("init mode %o", e.mode)
	}
	if err := BuildInitramfs(out, InitramfsOptions{Init: "x", KernelDir: kdir, Modules: []string{"no_such_module"}}); err == nil {
		t.Error("unknown module accepted")
	}
}

// virtiofsd starts the legacy virtiofsd serving dir. With listenFD it gets
// a pre-bound listening socket at sock as fd 3 and --fd=3, as the
// supervisor will do; otherwise --socket-path=sock.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for
	err  error         // its exit status, valid after done
}

func (p *proc) wait() {
	p.err = p.cmd.Wait()
	close(p.done)
}

func startVirtiofsd(t *testing.T, sock, dir string, listenFD bool) (*proc, *bytes.Buffer) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(VirtiofsdBinary)
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if listenFD {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		f, err := l.File() // a dup, blocking mode
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.ExtraFiles = []*os.File{f} // fd 3
		cmd.Args = append(cmd.Args, VirtiofsdArgs("", 3, dir)...)
	} else {
		cmd.Args = append(cmd.Args, VirtiofsdArgs(sock, 0, dir)...)
	}
	t.Logf("%s", strings.Join(cmd.Args, " "))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start virtiofsd: %v", err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go p.wait()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	if !listenFD {
		// Wait for the socket: QEMU fails if it is not there yet.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
				break
			}
			select {
			case <-p.done:
				t.Fatalf("virtiofsd exited before creating its socket: %v\n%s", p.err, stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("virtiofsd created no socket in 10s\n%s", stderr.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return p, &stderr
}

type bootTimes struct {
	ready, powerdown time.Duration
}

// bootVirtiofsGuest runs the whole scenario and returns its timings.
func bootVirtiofsGuest(t *testing.T, listenFD bool) bootTimes {
	requireRoot(t)
	kdir := testKernel(t)
	tmp := t.TempDir()
	share := filepath.Join(tmp, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	const tag, file = "vmsuptest", "from-guest.txt"
	content := fmt.Sprintf("written by the guest, listenFD=%v, it's \"quoted\" $HOME\n", listenFD)

	initrd := filepath.Join(tmp, "initrd")
	if err := BuildInitramfs(initrd, InitramfsOptions{
		KernelDir: kdir,
		Modules:   PowerButtonModules,
		Init:      VirtiofsPowerOffInit(tag, file, content),
	}); err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(tmp, "fs.sock")
	vfs, vfsLog := startVirtiofsd(t, sock, share, listenFD)

	qmp := filepath.Join(tmp, "qmp.sock")
	args := QEMUArgs(QEMUOptions{
		Kernel:         filepath.Join(kdir, "vmlinuz"),
		Initrd:         initrd,
		VirtiofsSocket: sock,
		VirtiofsTag:    tag,
		QMPSocket:      qmp,
	})
	t.Logf("%s %s", QEMUBinary, strings.Join(args, " "))
	cmd := exec.Command(QEMUBinary, args...)
	var qemuErr bytes.Buffer
	cmd.Stderr = &qemuErr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	con := NewConsole(stdout, nil)
	qemu := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		con.Wait() // read all output before Wait closes the pipe
		qemu.wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-qemu.done
		if t.Failed() || testing.Verbose() {
			t.Logf("console:\n%s\nqemu stderr:\n%s\nvirtiofsd:\n%s", con.String(), qemuErr.String(), vfsLog.String())
		}
	})

	if _, err := con.WaitFor(MarkerReady, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	var times bootTimes
	times.ready = time.Since(start)
	t.Logf("QEMU start -> %s: %v", MarkerReady, times.ready)

	got, err := os.ReadFile(filepath.Join(share, file))
	if err != nil {
		t.Fatalf("file written by the guest is not on the host: %v", err)
	}
	if string(got) != content {
		t.Fatalf("host sees %q, guest wrote %q", got, content)
	}

	pd := time.Now()
	if _, err := QMPExecute(qmp, 10*time.Second, `{"execute":"system_powerdown"}`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-qemu.done:
		times.powerdown = time.Since(pd)
		if qemu.err != nil {
			t.Fatalf("qemu exited with %v, want status 0", qemu.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("qemu did not exit within 60s of system_powerdown")
	}
	t.Logf("system_powerdown -> QEMU exit: %v", times.powerdown)
	if !con.Contains(MarkerPowerOff) {
		t.Fatalf("console lacks %s", MarkerPowerOff)
	}

	// virtiofsd exits by itself once QEMU closes the vhost-user connection.
	select {
	case <-vfs.done:
		t.Logf("virtiofsd exited after QEMU: %v", vfs.err)
	case <-time.After(5 * time.Second):
		t.Logf("virtiofsd still running 5s after QEMU exited (killed by cleanup)")
	}
	return times
}

// TestGuestVirtiofsPowerOff: virtiofsd --socket-path, guest writes a file
// through virtiofs, QMP system_powerdown makes it power off with status 0.
func TestGuestVirtiofsPowerOff(t *testing.T) {
	t.Parallel()
	bootVirtiofsGuest(t, false)
}

// TestVirtiofsdListenFD: the same with virtiofsd given a pre-bound listening
// socket as fd 3 (--fd=3), which is how the supervisor passes sockets.
func TestVirtiofsdListenFD(t *testing.T) {
	t.Parallel()
	bootVirtiofsGuest(t, true)
}

// TestGuestFailFast: a guest whose virtiofs share is missing reports
// GUEST-FAIL on the console and powers off at once, instead of hanging.
func TestGuestFailFast(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	kdir := testKernel(t)
	tmp := t.TempDir()
	initrd := filepath.Join(tmp, "initrd")
	if err := BuildInitramfs(initrd, InitramfsOptions{
		KernelDir: kdir,
		Modules:   PowerButtonModules,
		Init:      VirtiofsPowerOffInit("absent", "f", "x"),
	}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(QEMUBinary, QEMUArgs(QEMUOptions{Kernel: filepath.Join(kdir, "vmlinuz"), Initrd: initrd})...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	con := NewConsole(stdout, nil)
	done := make(chan error, 1)
	go func() { con.Wait(); done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	line, err := con.WaitFor(MarkerReady, 60*time.Second)
	if err == nil {
		t.Fatalf("guest without a virtiofs device printed %q", line)
	}
	if !strings.Contains(err.Error(), MarkerFail+": mount virtiofs absent") {
		t.Fatalf("want %s for the mount, got %v\n%s", MarkerFail, err, con.String())
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("qemu: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("guest did not power off after GUEST-FAIL")
	}
}

func TestQEMUArgs(t *testing.T) {
	args := QEMUArgs(QEMUOptions{Kernel: "k", Initrd: "i", VirtiofsSocket: "/s", VirtiofsTag: "t", QMPSocket: "/q", Append: "x=1"})
	s := strings.Join(args, " ")
	for _, want := range []string{
		"-accel tcg", "-m 512", "-object memory-backend-memfd,id=mem,size=512M,share=on", "-numa node,memdev=mem",
		"-kernel k", "-initrd i", "-append console=ttyS0 panic=-1 quiet no_timer_check x=1", "-serial stdio", "-no-reboot",
		"-chardev socket,id=fs,path=/s", "-device vhost-user-fs-pci,chardev=fs,tag=t", "-qmp unix:/q,server=on,wait=off",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("args lack %q: %s", want, s)
		}
	}
	if got, want := strings.Join(VirtiofsdArgs("", 3, "/d"), " "), "--fd=3 -o source=/d -o sandbox=chroot"; got != want {
		t.Errorf("VirtiofsdArgs = %q, want %q", got, want)
	}
	if got, want := strings.Join(VirtiofsdArgs("/s", 0, "/d"), " "), "--socket-path=/s -o source=/d -o sandbox=chroot"; got != want {
		t.Errorf("VirtiofsdArgs = %q, want %q", got, want)
	}
	if s := strings.Join(QEMUArgs(QEMUOptions{Kernel: "k", Initrd: "i"}), " "); strings.Contains(s, "vhost-user") || strings.Contains(s, "-qmp") {
		t.Errorf("unexpected devices: %s", s)
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "fetch-guest-kernel")); err != nil {
		t.Fatal(err)
	}
}

// SharedObjects finds what the host's loader loads: the same set as
// ldd (which asks the loader itself) for a dynamically linked s6 program,
// nothing for the static busybox.
func TestSharedObjects(t *testing.T) {
	prog, err := exec.LookPath("s6-svscan")
	if err != nil {
		t.Fatalf("s6-svscan not found (install s6): %v", err)
	}
	got, err := SharedObjects(prog)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ldd", prog).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", prog, err)
	}
	var want []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 4 && f[1] == "=>":
			want = append(want, f[2])
		case len(f) == 2 && strings.HasPrefix(f[0], "/"):
			want = append(want, f[0]) // the interpreter
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if len(want) < 3 || !slices.Equal(got, want) {
		t.Fatalf("SharedObjects(%s) = %v, ldd says %v", prog, got, want)
	}
	if got, err := SharedObjects("/bin/busybox"); err != nil || len(got) != 0 {
		t.Fatalf("static busybox: %v, %v", got, err)
	}
}
