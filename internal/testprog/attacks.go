package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The attempts of duel.go. Each returns nil when it got through. Where an
// attempt changes something of the peer's, it writes back the value it
// read, so that a run without barriers (the tests' control) harms nothing.

func pidfdSignal(pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(fd)
	return unix.PidfdSendSignal(fd, 0, nil, 0)
}

func connectUnix(typ int, name string) error {
	fd, err := unix.Socket(unix.AF_UNIX, typ, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Connect(fd, &unix.SockaddrUnix{Name: name})
}

func sendUnix(name string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Sendto(fd, []byte("x"), 0, &unix.SockaddrUnix{Name: name})
}

// ptraceSeize attaches to pid and lets go at once. A tracer is one
// thread, hence the lock; the tracee is stopped and waited for before the
// detach, because a seized tracee left attached would stop at its next
// signal (the Go runtime sends itself SIGURG) and wait for us forever.
// ptraceSeizeShared is ptraceSeize on a process the peer may be tracing
// at the same moment (PID 1): a process has one tracer at a time, so
// EPERM while the peer holds it says nothing about a barrier. It waits,
// boundedly, for that tracer to let go.
func ptraceSeizeShared(pid int) error {
	for i := 0; ; i++ {
		err := ptraceSeize(pid)
		// The peer may have let go between our EPERM and the look at
		// TracerPid: a few tries whatever it shows.
		if err != unix.EPERM || i == 200 || (tracerPID(pid) <= 0 && i >= 10) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tracerPID is the TracerPid of pid's status, -1 if unreadable.
func tracerPID(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "TracerPid:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

func ptraceSeize(pid int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(pid), 0, 0, 0, 0); e != 0 {
		return e
	}
	unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_INTERRUPT, uintptr(pid), 0, 0, 0, 0)
	var ws unix.WaitStatus
	unix.Wait4(pid, &ws, unix.WALL, nil)
	sig := uintptr(0) // a signal that stopped it is passed on
	if ws.Stopped() && ws.StopSignal() != unix.SIGTRAP {
		sig = uintptr(ws.StopSignal())
	}
	unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(pid), 0, sig, 0, 0)
	return nil
}

func markerAddr() int64 { return int64(uintptr(unsafe.Pointer(&marker))) }

func readMem(pid int) error {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/mem")
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, len(marker))
	if _, err := f.ReadAt(b, markerAddr()); err != nil {
		return err
	}
	if !bytes.Equal(b, marker[:]) {
		return fmt.Errorf("read %q, not the marker", b)
	}
	return nil
}

func writeMem(pid int) error {
	f, err := os.OpenFile("/proc/"+strconv.Itoa(pid)+"/mem", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(marker[:], markerAddr())
	return err
}

func vmRead(pid int) error {
	b := make([]byte, len(marker))
	local := []unix.Iovec{{Base: &b[0]}}
	local[0].SetLen(len(b))
	remote := []unix.RemoteIovec{{Base: uintptr(markerAddr()), Len: len(b)}}
	if _, err := unix.ProcessVMReadv(pid, local, remote, 0); err != nil {
		return err
	}
	if !bytes.Equal(b, marker[:]) {
		return fmt.Errorf("read %q, not the marker", b)
	}
	return nil
}

func pidfdGetfd(pid int) error {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pfd)
	fd, err := unix.PidfdGetfd(pfd, 0, 0)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// kcmp compares our fd 0 with the peer's: it needs ptrace read access.
func kcmp(pid int) error {
	const kcmpFile = 0
	_, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(os.Getpid()), uintptr(pid), kcmpFile, 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func readFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Read(make([]byte, 16))
	return err
}

func openFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	return f.Close()
}

func listDir(p string) error {
	_, err := os.ReadDir(p)
	return err
}

func stat(p string) error {
	_, err := os.Stat(p)
	return err
}

// nsenter joins a mount namespace. It runs util-linux's nsenter, a
// single-threaded program: the kernel refuses setns(CLONE_NEWNS) to a
// multithreaded process such as this one, whatever its privileges.
func nsenter(ns string) error {
	return run(exec.Command("nsenter", "--mount="+ns, "--", "/bin/true"))
}

// child runs this program in another mode, for attempts that would
// change this process.
func child(mode string) error {
	return run(exec.Command("/proc/self/exe", mode))
}

func run(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// raiseRlimit lowers the hard limit of open files by one, then tries to
// raise it back, which needs CAP_SYS_RESOURCE.
func raiseRlimit() error {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return err
	}
	low := unix.Rlimit{Cur: r.Max - 1, Max: r.Max - 1}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		return fmt.Errorf("lowering: %w", err)
	}
	return unix.Setrlimit(unix.RLIMIT_NOFILE, &r)
}

// execSetuid runs a setuid-root copy of this program, which prints its
// effective uid.
func execSetuid(path string) error {
	out, err := exec.Command(path, "euid").Output()
	if err != nil {
		return err
	}
	if euid := strings.TrimSpace(string(out)); euid != "0" {
		return fmt.Errorf("effective uid stayed %s", euid)
	}
	return nil
}

// tiocsti tries to push a character into the input of a terminal
// (TIOCSTI), or to reach a virtual console's ioctls (TIOCLINUX, whose
// paste subcommand injects input the same way; probed with a harmless
// subcommand), on the standard descriptors and the controlling terminal.
func tiocsti() error {
	c := byte(' ')
	shiftState := byte(6) // TIOCL_GETSHIFTSTATE
	var errs []string
	reach := func(fd int, what string) bool {
		for _, r := range []struct {
			req  uintptr
			name string
			arg  *byte
		}{{unix.TIOCSTI, "TIOCSTI", &c}, {unix.TIOCLINUX, "TIOCLINUX", &shiftState}} {
			_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), r.req, uintptr(unsafe.Pointer(r.arg)))
			if e == 0 {
				return true
			}
			errs = append(errs, what+" "+r.name+": "+e.Error())
		}
		return false
	}
	for fd := 0; fd < 3; fd++ {
		if reach(fd, "fd "+strconv.Itoa(fd)) {
			return nil
		}
	}
	fd, err := unix.Open("/dev/tty", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		errs = append(errs, "/dev/tty: "+err.Error())
	} else {
		defer unix.Close(fd)
		if reach(fd, "/dev/tty") {
			return nil
		}
	}
	return errors.New(strings.Join(errs, ", "))
}

// perfPeer counts the peer's CPU time with a perf event: a side channel
// on what it does, guarded by a ptrace read check.
func perfPeer(pid int) error {
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_SOFTWARE,
		Config: unix.PERF_COUNT_SW_TASK_CLOCK,
		Bits:   unix.PerfBitExcludeKernel | unix.PerfBitExcludeHv,
	}
	attr.Size = uint32(unsafe.Sizeof(attr))
	fd, err := unix.PerfEventOpen(&attr, pid, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// userns starts a child in a new user and mount namespace that tries to
// unmount /tmp, which would uncover the VM's /tmp under a private one.
func userns() (createErr, umountErr error) {
	cmd := exec.Command("/proc/self/exe", "umount-tmp")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil {
		return err, fmt.Errorf("no user namespace: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil, nil
}

func prlimitPeer(pid int) error {
	var r unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_CORE, nil, &r); err != nil {
		return err
	}
	return unix.Prlimit(pid, unix.RLIMIT_CORE, &r, nil)
}

func renicePeer(pid int) error {
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, pid)
	if err != nil {
		return err
	}
	return unix.Setpriority(unix.PRIO_PROCESS, pid, 20-prio) // the syscall returns 20 - nice
}

func affinityPeer(pid int) error {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &set); err != nil {
		return err
	}
	return unix.SchedSetaffinity(pid, &set)
}

func ioprioPeer(pid int) error {
	const whoProcess = 1
	v, _, e := unix.Syscall(unix.SYS_IOPRIO_GET, whoProcess, uintptr(pid), 0)
	if e != 0 {
		return e
	}
	if _, _, e := unix.Syscall(unix.SYS_IOPRIO_SET, whoProcess, uintptr(pid), v); e != 0 {
		return e
	}
	return nil
}

func oomScorePeer(pid string) error {
	p := "/proc/" + pid + "/oom_score_adj"
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(b)
	return err
}

func readKey(ring int, name string) error {
	id, err := unix.KeyctlSearch(ring, "user", name, 0)
	if err != nil {
		return fmt.Errorf("search: %w", err)
	}
	_, err = unix.KeyctlBuffer(unix.KEYCTL_READ, id, make([]byte, 64), 0)
	return err
}

// sigio makes the kernel send SIGIO to pid: a pipe owned by pid
// (F_SETOWN) with O_ASYNC signals its owner when data arrives.
func sigio(pid int) {
	var p [2]int
	if unix.Pipe2(p[:], unix.O_CLOEXEC) != nil {
		return
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	unix.FcntlInt(uintptr(p[0]), unix.F_SETOWN, pid)
	fl, _ := unix.FcntlInt(uintptr(p[0]), unix.F_GETFL, 0)
	unix.FcntlInt(uintptr(p[0]), unix.F_SETFL, fl|unix.O_ASYNC)
	unix.Write(p[1], []byte{1})
}

// cgroupOf is the cgroup v2 directory of pid ("self" for this process).
func cgroupOf(pid string) (string, error) {
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "0::"); ok {
			return cgroupMount() + rest, nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 line for %s", pid)
}

func cgroupMount() string {
	for _, p := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(p + "/cgroup.procs"); err == nil {
			return p
		}
	}
	return "/sys/fs/cgroup"
}

func openOwnCgroupFile(name string) error {
	return openCgroupFile("self", name)
}

func openCgroupFileOf(pid int, name string) error {
	return openCgroupFile(strconv.Itoa(pid), name)
}

func openCgroupFile(pid, name string) error {
	dir, err := cgroupOf(pid)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

func leaveCgroup() error {
	own, err := cgroupOf("self")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(filepath.Dir(own), "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
}

func joinCgroupOf(pid int) error {
	dir, err := cgroupOf(strconv.Itoa(pid))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
}
