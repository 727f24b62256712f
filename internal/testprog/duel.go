package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// duel NAME PEER DIR HOSTABSTRACT: the hostile service. It sets up what a
// victim has (a PID file, files in its private /tmp and /dev/shm, an
// abstract socket, a secret in its environment), waits for PEER to do the
// same, then attacks PEER, PID 1, the host's abstract socket and its own
// sandbox. Each attempt prints one line:
//
//	attempt <what>: blocked (<error>)
//	attempt <what>: ESCAPED
//
// followed by "duel done <n>" and the process's capability lines.
func duel(name, peer, dir, hostAbstract string) {
	// Written whole or not at all (a temporary file renamed into place):
	// a peer that read a file still empty would attack PID 0, its own
	// process group, and see blocks and escapes that say nothing.
	pidFile := filepath.Join(dir, name+".pid")
	must(os.WriteFile(pidFile+".tmp", []byte(strconv.Itoa(os.Getpid())), 0o644))
	must(os.Rename(pidFile+".tmp", pidFile))
	must(os.WriteFile("/tmp/"+name+"-secret", []byte("x"), 0o600))
	must(os.WriteFile("/dev/shm/"+name+"-secret", []byte("x"), 0o600))
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	must(err)
	must(unix.Bind(fd, &unix.SockaddrUnix{Name: "@vmsup-duel-" + name + "-" + filepath.Base(dir)}))
	must(unix.Listen(fd, 8))

	var pid int
	for {
		b, err := os.ReadFile(filepath.Join(dir, peer+".pid"))
		if err == nil {
			pid, err = strconv.Atoi(string(b))
			if err != nil || pid <= 0 {
				fmt.Fprintf(os.Stderr, "duel: bad PID file of %s: %q\n", peer, b)
				os.Exit(1)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the peer finishes its own setup
	p := strconv.Itoa(pid)
	n := 0
	try := func(what string, err error) {
		n++
		if err != nil {
			fmt.Printf("attempt %s: blocked (%v)\n", what, err)
		} else {
			fmt.Printf("attempt %s: ESCAPED\n", what)
		}
	}

	try("signal peer", unix.Kill(pid, 0))
	try("signal PID 1", unix.Kill(1, 0))
	try("pidfd signal peer", pidfdSignal(pid))
	try("pidfd signal PID 1", pidfdSignal(1))
	try("connect peer abstract socket", connectUnix("@vmsup-duel-"+peer+"-"+filepath.Base(dir)))
	try("connect host abstract socket", connectUnix("@"+hostAbstract))
	try("ptrace peer", ptraceSeize(pid))
	try("ptrace PID 1", ptraceSeize(1))
	try("read peer /proc/PID/mem", readFile("/proc/"+p+"/mem"))
	try("read peer /proc/PID/environ", readFile("/proc/"+p+"/environ"))
	try("list peer /proc/PID/root/tmp", listDir("/proc/"+p+"/root/tmp"))
	try("read peer /proc/PID/root/tmp secret", readFile("/proc/"+p+"/root/tmp/"+peer+"-secret"))
	try("see peer /tmp secret", stat("/tmp/"+peer+"-secret"))
	try("see peer /dev/shm secret", stat("/dev/shm/"+peer+"-secret"))
	try("mount tmpfs", unix.Mount("tmpfs", "/mnt", "tmpfs", 0, ""))
	try("setns into PID 1 mount namespace", setns("/proc/1/ns/mnt"))
	try("setns into peer mount namespace", setns("/proc/"+p+"/ns/mnt"))
	try("mknod char device", unix.Mknod("/tmp/null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	try("move out of own cgroup", leaveCgroup())
	try("write PID 1 cgroup", joinCgroupOf(1))
	fmt.Printf("duel done %d\n", n)
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Cap") || strings.HasPrefix(l, "NoNewPrivs") {
			fmt.Println("status", strings.Join(strings.Fields(l), " "))
		}
	}
	time.Sleep(time.Hour)
}

func pidfdSignal(pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(fd)
	return unix.PidfdSendSignal(fd, 0, nil, 0)
}

func connectUnix(name string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Connect(fd, &unix.SockaddrUnix{Name: name})
}

// ptraceSeize attaches to pid and lets it go again, on a thread of its
// own (ptrace requests must come from the attaching thread). A seized
// tracee is detached properly: interrupted, waited for, then
// PTRACE_DETACH, which needs it stopped. Left attached, it would stop
// for good at the next signal it gets (a Go peer gets SIGURG from its own
// runtime), and the peer's duel would never end.
func ptraceSeize(pid int) error {
	res := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(pid), 0, 0, 0, 0)
		if e != 0 {
			res <- e
			return
		}
		res <- nil
		unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_INTERRUPT, uintptr(pid), 0, 0, 0, 0)
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
			return // gone: nothing to detach
		}
		// Hand back a signal the tracee was stopped for, not the
		// interrupt's own trap (SIGTRAP).
		sig := 0
		if ws.StopSignal() != unix.SIGTRAP {
			sig = int(ws.StopSignal())
		}
		unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(pid), 0, uintptr(sig), 0, 0)
	}()
	return <-res
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

func listDir(p string) error {
	_, err := os.ReadDir(p)
	return err
}

func stat(p string) error {
	_, err := os.Stat(p)
	return err
}

func setns(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Setns(fd, unix.CLONE_NEWNS)
}

// ownCgroup is this process's cgroup v2 directory.
func ownCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "0::"); ok {
			return cgroupMount() + rest, nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 line")
}

func cgroupMount() string {
	for _, p := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(p + "/cgroup.procs"); err == nil {
			return p
		}
	}
	return "/sys/fs/cgroup"
}

func leaveCgroup() error {
	own, err := ownCgroup()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(filepath.Dir(own), "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
}

func joinCgroupOf(pid int) error {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "0::"); ok {
			return os.WriteFile(cgroupMount()+rest+"/cgroup.procs", []byte(strconv.Itoa(os.Getpid())), 0)
		}
	}
	return fmt.Errorf("no cgroup v2 line for %d", pid)
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "testprog:", err)
		os.Exit(1)
	}
}
