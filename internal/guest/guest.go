// Package guest is the test infrastructure for booting real QEMU guests:
// Debian trixie's cloud kernel (fetched and cached by
// scripts/fetch-guest-kernel), a busybox initramfs written in Go (newc cpio),
// guest /init recipes, the qemu-system-x86_64 argument list, a QMP client and
// a serial-console watcher.
//
// Typical use from a test (as root):
//
//	kdir, err := guest.Kernel()                       // cached trixie kernel
//	err = guest.BuildInitramfs(initrd, guest.InitramfsOptions{
//		KernelDir: kdir,
//		Modules:   guest.PowerButtonModules,
//		Init:      guest.VirtiofsPowerOffInit("share", "hello.txt", "hi\n"),
//	})
//	args := guest.QEMUArgs(guest.QEMUOptions{
//		Kernel: filepath.Join(kdir, "vmlinuz"), Initrd: initrd,
//		VirtiofsSocket: sock, VirtiofsTag: "share", QMPSocket: qmp,
//	})
//	cmd := exec.Command(guest.QEMUBinary, args...)    // serial on stdout
//	stdout, _ := cmd.StdoutPipe(); cmd.Start()
//	con := guest.NewConsole(stdout, nil)
//	_, err = con.WaitFor(guest.MarkerReady, 60*time.Second)
//	_, err = guest.QMPExecute(qmp, 10*time.Second, `{"execute":"system_powerdown"}`)
//	// cmd.Wait() returns nil; con.Contains(guest.MarkerPowerOff)
//
// virtiofsd for the share: exec VirtiofsdBinary with VirtiofsdArgs(sock, 0,
// dir) (or a pre-bound listening socket as fd N and VirtiofsdArgs("", N,
// dir)); guest_test.go shows the whole sequence.
//
// Measured on the project machine (2 cores, no KVM, QEMU 7.2 -accel tcg,
// kernel linux-image-6.12.117+deb13-cloud-amd64-unsigned 6.12.117-1, busybox
// 1.35.0 static, the tests in guest_test.go):
//
//	QEMU start -> GUEST-READY (SeaBIOS, kernel, insmod button+evdev,
//	acpid, virtiofs mount, file written and synced):
//	  one guest at a time               3.6-4.0 s (guest clock ~2.4 s)
//	  two guests at once on 2 cores     3.8-7.7 s (host load matters)
//	system_powerdown -> QEMU exit status 0:             45-170 ms
//	go test ./internal/guest/ (kernel cached, 3 guests): 7-18 s wall
//	scripts/fetch-guest-kernel: first run ~12 s (apt-get update, 34.7 MB
//	  download, dpkg-deb -x, depmod); cached run ~0.02 s
//	Variants tried, all within noise of each other: -machine pc instead of
//	q35, -bios qboot.rom (~0.3 s faster), -cpu qemu64, no "quiet".
//
// What worked:
//
//	virtiofsd (legacy C, /usr/lib/qemu/virtiofsd from bookworm's
//	qemu-system-x86 1:7.2+dfsg-7+deb12u18+b3):
//	  virtiofsd --socket-path=SOCK -o source=DIR -o sandbox=chroot
//	  virtiofsd --fd=3 -o source=DIR -o sandbox=chroot
//	    (fd 3: a listening, already bound AF_UNIX SOCK_STREAM socket; works)
//	  It exits by itself when QEMU closes the vhost-user connection. Its
//	  default --rlimit-nofile wants 1000000; with the machine's hard limit
//	  of 20000 (no CAP_SYS_RESOURCE) it keeps 20000 and still serves.
//	  The test runs it as full root; see ENGINEERING.md for the reduced
//	  capability set it needs (CAP_SETPCAP, or it dies of SIGSYS).
//	qemu-system-x86_64 (QEMUArgs):
//	  -machine q35 -accel tcg -cpu max -m 512 -smp 1
//	  -object memory-backend-memfd,id=mem,size=512M,share=on
//	  -numa node,memdev=mem -nodefaults -no-user-config -display none
//	  -serial stdio -no-reboot -kernel vmlinuz -initrd initrd
//	  -append "console=ttyS0 panic=-1 quiet no_timer_check"
//	  -chardev socket,id=fs,path=SOCK
//	  -device vhost-user-fs-pci,chardev=fs,tag=TAG
//	  -qmp unix:QMP,server=on,wait=off
//	ACPI power button: q35 and pc both deliver system_powerdown as the ACPI
//	fixed power-button event; the guest needs button.ko (CONFIG_ACPI_BUTTON=m)
//	and evdev.ko (CONFIG_INPUT_EVDEV=m) loaded, then busybox acpid maps
//	KEY_POWER to /etc/acpi/PWRF/00000080. virtiofs, FUSE and virtio-pci
//	are built into this kernel. Modules are decompressed on the host
//	(.ko.xz -> .ko): busybox insmod can load .ko.xz, but only after a
//	failed finit_module that logs "Invalid ELF header magic".
//
// It is test infrastructure: no product package may import it.
package guest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Console markers printed by the recipes in this package.
const (
	MarkerReady    = "GUEST-READY"
	MarkerPowerOff = "GUEST-POWEROFF"
	MarkerFail     = "GUEST-FAIL"
)

// QEMUBinary is the VMM the tests run.
const QEMUBinary = "qemu-system-x86_64"

// VirtiofsdBinary is the legacy C virtiofsd shipped by Debian bookworm's
// qemu-system-x86 package.
const VirtiofsdBinary = "/usr/lib/qemu/virtiofsd"

// PowerButtonModules are the modules a guest of the cached kernel needs to
// see ACPI power-button presses (QMP system_powerdown) as input events.
var PowerButtonModules = []string{"button", "evdev"}

// ModuleRoot returns the directory holding vmsup's go.mod: the first
// ancestor of the working directory with a go.mod declaring module vmsup,
// else the directory of `go env GOMOD`.
func ModuleRoot() (string, error) {
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; {
			if isVmsupRoot(dir) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		gomod := strings.TrimSpace(string(out))
		if gomod != "" && gomod != os.DevNull && isVmsupRoot(filepath.Dir(gomod)) {
			return filepath.Dir(gomod), nil
		}
	}
	return "", errors.New("guest: cannot find the vmsup module root (go.mod) from the working directory")
}

func isVmsupRoot(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "module" {
			return f[1] == "vmsup"
		}
	}
	return false
}

// Kernel runs scripts/fetch-guest-kernel and returns the directory it prints:
// it holds vmlinuz, config, kver, package and modules/ (see the script). The
// first call may download the kernel (~35 MB); later calls are instant.
// Errors carry the script's stderr.
func Kernel() (string, error) { return KernelOf("trixie") }

// KernelOf is Kernel for a Debian suite the script knows: "trixie"
// (Linux 6.12) or "sid" (Linux 7.2).
func KernelOf(suite string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "scripts", "fetch-guest-kernel")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(script)
	cmd.Env = append(os.Environ(), "VMSUP_KERNEL_SUITE="+suite)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("guest: %s: %v\n%s", script, err, strings.TrimSpace(stderr.String()))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	dir := strings.TrimSpace(lines[len(lines)-1])
	if dir == "" {
		return "", fmt.Errorf("guest: %s printed no directory\n%s", script, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "vmlinuz")); err != nil {
		return "", fmt.Errorf("guest: %s: %w", script, err)
	}
	return dir, nil
}

// KernelRelease returns the kernel release (uname -r) of a Kernel directory.
func KernelRelease(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kver"))
	if err != nil {
		return "", fmt.Errorf("guest: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// KernelPackage returns "<package> <version>" of a Kernel directory.
func KernelPackage(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "package"))
	if err != nil {
		return "", fmt.Errorf("guest: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// RequireHostTools makes sure qemu-system-x86_64, the legacy virtiofsd and a
// static busybox are present, installing the Debian packages that provide
// them with apt-get when they are missing (needs root).
func RequireHostTools() error {
	var missing []string
	if _, err := exec.LookPath(QEMUBinary); err != nil {
		missing = append(missing, "qemu-system-x86")
	} else if _, err := os.Stat(VirtiofsdBinary); err != nil {
		missing = append(missing, "qemu-system-x86")
	}
	if checkStatic("/bin/busybox") != nil {
		missing = append(missing, "busybox-static")
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("guest: missing %v and not root to install them", missing)
	}
	if out, err := exec.Command("apt-get", "update", "-qq").CombinedOutput(); err != nil {
		return fmt.Errorf("guest: apt-get update: %v\n%s", err, out)
	}
	cmd := exec.Command("apt-get", append([]string{"install", "-y", "-qq"}, missing...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("guest: apt-get install %v: %v\n%s", missing, err, out)
	}
	return nil
}

// VirtiofsdArgs returns the arguments (without the program name) for the
// legacy virtiofsd serving source. With fd > 0 it takes an already bound,
// listening AF_UNIX socket as that fd (--fd=N; the supervisor's way), else it
// creates socketPath itself (--socket-path). sandbox=chroot is used because
// sandbox=namespace needs namespaces a supervised service may not get.
func VirtiofsdArgs(socketPath string, fd int, source string) []string {
	var args []string
	if fd > 0 {
		args = append(args, "--fd="+strconv.Itoa(fd))
	} else {
		args = append(args, "--socket-path="+socketPath)
	}
	return append(args, "-o", "source="+source, "-o", "sandbox=chroot")
}

// QEMUOptions configures QEMUArgs.
type QEMUOptions struct {
	Kernel string // path to vmlinuz (required)
	Initrd string // path to the initramfs (required)
	// Append is added to the kernel command line after
	// "console=ttyS0 panic=-1 quiet no_timer_check".
	Append string
	// MemoryMiB is the guest RAM, default 512. It is a shared memfd
	// backend (vhost-user needs shared guest memory).
	MemoryMiB int
	CPUs      int    // default 1
	Machine   string // default "q35"
	// Serial is the -serial target, default "stdio" (the console on
	// QEMU's stdout). "file:PATH", "unix:PATH,server=on,wait=off"... work.
	Serial string
	// VirtiofsSocket is the vhost-user socket of a running virtiofsd;
	// when set, a vhost-user-fs-pci device with VirtiofsTag (default
	// "share") is added.
	VirtiofsSocket string
	VirtiofsTag    string
	// QMPSocket, when set, is a UNIX socket QEMU listens on for QMP.
	QMPSocket string
	// QMPFD, when set, is a listening socket QEMU is handed for QMP
	// instead (vmsup binds it: the VMM's "sockets").
	QMPFD int
	// Extra arguments appended verbatim.
	Extra []string
}

// QEMUArgs returns the qemu-system-x86_64 arguments (without the program
// name) for a TCG guest that boots opts.Kernel with opts.Initrd, prints its
// console on the serial port and exits when the guest powers off or reboots
// (-no-reboot; with panic=-1 a kernel panic also ends QEMU with status 0, so
// look for console markers, not only the exit status).
func QEMUArgs(opts QEMUOptions) []string {
	mem := opts.MemoryMiB
	if mem <= 0 {
		mem = 512
	}
	cpus := opts.CPUs
	if cpus <= 0 {
		cpus = 1
	}
	machine := opts.Machine
	if machine == "" {
		machine = "q35"
	}
	serial := opts.Serial
	if serial == "" {
		serial = "stdio"
	}
	// no_timer_check: on a loaded host a TCG guest can miss the IO-APIC
	// timer check and panic ("IO-APIC + timer doesn't work!").
	cmdline := "console=ttyS0 panic=-1 quiet no_timer_check"
	if opts.Append != "" {
		cmdline += " " + opts.Append
	}
	args := []string{
		"-machine", machine,
		"-accel", "tcg",
		"-cpu", "max",
		"-m", strconv.Itoa(mem),
		"-smp", strconv.Itoa(cpus),
		"-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", mem),
		"-numa", "node,memdev=mem",
		"-nodefaults",
		"-no-user-config",
		"-display", "none",
		"-serial", serial,
		"-no-reboot",
		"-kernel", opts.Kernel,
		"-initrd", opts.Initrd,
		"-append", cmdline,
	}
	if opts.VirtiofsSocket != "" {
		tag := opts.VirtiofsTag
		if tag == "" {
			tag = "share"
		}
		args = append(args,
			"-chardev", "socket,id=fs,path="+opts.VirtiofsSocket,
			"-device", "vhost-user-fs-pci,chardev=fs,tag="+tag)
	}
	switch {
	case opts.QMPFD != 0:
		args = append(args, "-chardev", "socket,id=qmp,fd="+strconv.Itoa(opts.QMPFD)+",server=on,wait=off",
			"-mon", "chardev=qmp,mode=control")
	case opts.QMPSocket != "":
		args = append(args, "-qmp", "unix:"+opts.QMPSocket+",server=on,wait=off")
	}
	return append(args, opts.Extra...)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// InitPrelude is the start of every /init recipe here: PATH, a fail
// function (prints "GUEST-FAIL: why" and powers off at once, so a test sees
// the reason instead of a timeout), and proc, sysfs and devtmpfs mounts.
const InitPrelude = `#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
fail() {
	echo "` + MarkerFail + `: $*" >/dev/console
	sync
	poweroff -f
	exit 1
}
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
mkdir -p /dev/pts /dev/shm /run /tmp
`

// PowerButtonShell is an /init fragment that loads the modules listed by
// BuildInitramfs (build with PowerButtonModules) and starts busybox acpid
// so that the ACPI power button (QMP system_powerdown) prints
// GUEST-POWEROFF on the console, syncs and powers off (poweroff -f: QEMU
// exits with status 0). It returns once acpid holds an input event device
// open, so the button works from then on.
const PowerButtonShell = LoadModulesShell + `mkdir -p /etc/acpi/PWRF
cat >/etc/acpi/PWRF/00000080 <<'EOF'
#!/bin/sh
echo ` + MarkerPowerOff + ` >/dev/console
sync
poweroff -f
EOF
chmod 755 /etc/acpi/PWRF/00000080
i=0
until ls /dev/input/event* >/dev/null 2>&1; do
	i=$((i+1)); [ $i -le 100 ] || fail "no /dev/input/event* (button/evdev modules?)"
	usleep 50000
done
acpid -f -c /etc/acpi -l /dev/null -p /run/acpid.pid &
acpid_pid=$!
i=0
until ls -l /proc/$acpid_pid/fd 2>/dev/null | grep -q /dev/input/event; do
	i=$((i+1)); [ $i -le 100 ] || fail "acpid did not open /dev/input/event*"
	kill -0 $acpid_pid 2>/dev/null || fail "acpid exited"
	usleep 50000
done
`

// IdleShell ends an /init script: PID 1 waits forever (until the power
// button or a kill from the host).
const IdleShell = `while :; do sleep 3600; done
`

// VirtiofsPowerOffInit returns a guest /init script (for an initramfs built
// with Modules: PowerButtonModules) that:
//
//  1. mounts /proc, /sys and devtmpfs on /dev;
//  2. loads button and evdev and starts busybox acpid, mapping the ACPI
//     power button to: print GUEST-POWEROFF, sync, poweroff -f;
//  3. mounts the virtiofs share tag on /mnt;
//  4. writes content to /mnt/<file> and syncs;
//  5. prints GUEST-READY on the console and waits.
//
// Any failing step prints "GUEST-FAIL: <step>" and powers off at once.
func VirtiofsPowerOffInit(tag, file, content string) string {
	return virtiofsInit(tag, file, content, "")
}

// ExampleModules are the modules of the examples' guest (ExampleInit).
var ExampleModules = append([]string{"virtio_blk"}, PowerButtonModules...)

// ExampleInit is VirtiofsPowerOffInit that also, when the VM has a
// virtio disk (/dev/vda: build with ExampleModules), copies the disk's
// first line to /mnt/<diskFile> before GUEST-READY.
func ExampleInit(tag, file, content, diskFile string) string {
	return virtiofsInit(tag, file, content, diskFile)
}

func virtiofsInit(tag, file, content, diskFile string) string {
	disk := ""
	if diskFile != "" {
		disk = `if [ -e /sys/block/vda ]; then
	i=0
	until [ -b /dev/vda ]; do i=$((i+1)); [ $i -le 40 ] || fail "no /dev/vda"; usleep 50000; done
	head -n1 /dev/vda >/mnt/` + shellQuote(diskFile) + ` || fail "read /dev/vda"
fi
`
	}
	return InitPrelude + PowerButtonShell +
		"mount -t virtiofs " + shellQuote(tag) + " /mnt || fail " + shellQuote("mount virtiofs "+tag) + "\n" +
		"printf '%s' " + shellQuote(content) + " >/mnt/" + shellQuote(file) + " || fail " + shellQuote("write /mnt/"+file) + "\n" +
		disk +
		"sync\n" +
		"echo " + MarkerReady + "\n" +
		IdleShell
}

// VirtiofsdCapabilities is what the legacy virtiofsd needs in its bounding
// set: it drops to these itself, then installs its own seccomp filter.
var VirtiofsdCapabilities = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_SETGID", "CAP_SETUID", "CAP_MKNOD", "CAP_SETFCAP", "CAP_SYS_CHROOT", "CAP_SETPCAP"}

// VMServices returns the "services" of a vmsup config for this guest:
// the legacy virtiofsd sharing share on a socket vmsup pre-binds in
// runtimeDir, and the VMM (VMMService).
func VMServices(kernel, initrd, share, runtimeDir string, vmmUID int) []map[string]any {
	return []map[string]any{LegacyVirtiofsdService(share, runtimeDir+"/fs.sock", vmmUID), VMMService(kernel, initrd, runtimeDir, vmmUID)}
}

// LegacyVirtiofsdService is the "services" entry for the legacy C
// virtiofsd as root with the capabilities it drops to itself.
func LegacyVirtiofsdService(share, sock string, vmmUID int) map[string]any {
	return map[string]any{
		"name":         "virtiofsd",
		"argv":         []string{VirtiofsdBinary, "--fd=3", "-o", "source=" + share, "-o", "sandbox=chroot"},
		"uid":          0,
		"gid":          0,
		"capabilities": VirtiofsdCapabilities,
		"private_tmp":  "16M",
		"sockets":      []map[string]any{{"path": sock, "fd": 3, "mode": "0600", "uid": vmmUID}},
	}
}

// VMMService is the "services" entry for a QEMU booting kernel and initrd
// as vmmUID once virtiofsd (on runtimeDir/fs.sock) is up, ready when its
// QMP socket runtimeDir/qmp.sock accepts and powered off through it.
func VMMService(kernel, initrd, runtimeDir string, vmmUID int) map[string]any {
	fsSock, qmp := runtimeDir+"/fs.sock", runtimeDir+"/qmp.sock"
	qemu := append([]string{QEMUBinary}, QEMUArgs(QEMUOptions{
		Kernel: kernel, Initrd: initrd, VirtiofsSocket: fsSock, VirtiofsTag: "share", QMPFD: 3,
	})...)
	return map[string]any{
		"name": "vmm", "argv": qemu, "uid": vmmUID, "gid": vmmUID,
		"after":       []string{"virtiofsd"},
		"private_tmp": "16M", "private_shm": "16M",
		// vmsup binds the QMP socket and hands it over (fd 3), so no
		// service creates anything in the runtime dir.
		"sockets": []map[string]any{{"path": qmp, "fd": 3, "mode": "0600"}},
		"connect": []string{fsSock},
		"ready":   map[string]any{"socket": qmp},
		"vmm":     map[string]any{"qmp": qmp},
	}
}
