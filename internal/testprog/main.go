// Command testprog is a service for vmsup's tests: each mode does one
// thing a test needs to observe from inside a VM.
//
// It is test infrastructure: no product package may import it, and vmsup
// never runs it outside tests.
package main

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testprog MODE ARGS...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "listen": // listen PATH DELAY: listen on a UNIX socket after DELAY, accept forever
		time.Sleep(dur(os.Args[3]))
		l, err := net.Listen("unix", os.Args[2])
		check(err)
		for {
			c, err := l.Accept()
			check(err)
			c.Close()
		}
	case "duel": // duel NAME PEER DIR HOSTABSTRACT: see duel.go
		duel(os.Args[2], os.Args[3], os.Args[4], os.Args[5])
	case "setuid0": // setuid0: become root (duel's helper)
		check(syscall.Setuid(0))
		os.Exit(0)
	case "euid": // euid: print the effective uid (duel runs a setuid copy)
		fmt.Println(os.Geteuid())
		os.Exit(0)
	case "umount-tmp": // umount-tmp: unmount /tmp (duel runs it in a user namespace)
		mi, err := os.ReadFile("/proc/self/mountinfo")
		check(err)
		if !strings.Contains(string(mi), " /tmp ") {
			check(fmt.Errorf("/tmp is not a mount point here"))
		}
		check(unix.Unmount("/tmp", unix.MNT_DETACH))
		os.Exit(0)
	case "traceme": // traceme MARKER [thread]: the first time (no MARKER yet), make the parent (PID 1) the tracer and stop
		traceme(os.Args[2], len(os.Args) > 3 && os.Args[3] == "thread")
	case "keyring-exec": // keyring-exec KEYNAME PROG ARGS...: exec PROG in a new session keyring holding KEYNAME
		keyringExec(os.Args[2], os.Args[3:])
	case "forkstorm": // forkstorm N DONEFILE: see forkstorm.go
		n, err := strconv.Atoi(os.Args[2])
		check(err)
		forkstorm(n, os.Args[3])
	case "serve": // serve FD: see peer.go
		serve(os.Args[2])
	case "dial": // dial PATH: see peer.go
		dial(os.Args[2])
	case "view": // view NAME RUNDIR OTHERSOCK CGFILE HOSTPTS DEV1 DEV2 CAPS CONNECT: see view.go
		view(os.Args[2:])
	case "linger": // linger DELAY: see linger.go
		linger(dur(os.Args[2]), os.Args[3:])
	case "syscall-attacks": // syscall-attacks DIR MOUNTDIR HANDLE: see syscalls.go
		syscallAttacks(os.Args[2], os.Args[3], os.Args[4])
	case "i386-unshare": // i386-unshare: see int80.go
		i386Unshare()
	case "connect-each": // connect-each PATH...: see connect.go
		connectEach(os.Args[2:])
	case "keeper": // keeper DIR: see syscalls.go
		keeper(os.Args[2])
	case "net": // net TCPADDR UDPADDR LISTENADDR ABSTRACT PEERADDR: see netattack.go
		netAttacks(os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6])
	case "status-attack": // status-attack DIR NAME [umount]: see statusattack.go
		statusAttack(os.Args[2], os.Args[3], len(os.Args) > 4 && os.Args[4] == "umount")
	case "fds": // fds: print the open descriptors, then sleep
		fmt.Println("fds", strings.Join(openFDs(), " "))
		fmt.Println("env", strings.Join(os.Environ(), " "))
		time.Sleep(time.Hour)
	}
	fmt.Fprintln(os.Stderr, "testprog: unknown mode", os.Args[1])
	os.Exit(2)
}

// openFDs lists the open descriptors and what they are, leaving out the
// one used to list them. It uses raw syscalls: os.Open would start the
// Go poller (an epoll and an eventfd). Run it with
// GODEBUG=containermaxprocs=0, or the Go runtime itself keeps cgroup cpu
// files open.
func openFDs() []string {
	d, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	check(err)
	buf := make([]byte, 64*1024)
	n, err := syscall.ReadDirent(d, buf)
	check(err)
	_, _, names := syscall.ParseDirent(buf[:n], -1, nil)
	var fds []int
	for _, name := range names {
		if fd, _ := strconv.Atoi(name); fd != d {
			fds = append(fds, fd)
		}
	}
	sort.Ints(fds)
	var out []string
	for _, fd := range fds {
		t, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		out = append(out, fmt.Sprintf("%d=%s", fd, t))
	}
	syscall.Close(d)
	return out
}

// traceme ... thread needs the main goroutine on the process's first
// thread, which only a lock taken in init guarantees.
func init() {
	if len(os.Args) > 3 && os.Args[1] == "traceme" && os.Args[3] == "thread" {
		runtime.LockOSThread()
	}
}

// keyringExec gives prog a session keyring of its own holding a secret
// key, as a login shell's pam_keyinit would: what a service must not be
// able to read. The keyring belongs to the thread, so the thread that
// joins it is the one that execs.
func keyringExec(key string, argv []string) {
	runtime.LockOSThread()
	_, err := unix.KeyctlJoinSessionKeyring("vmsup-test")
	check(err)
	_, err = unix.AddKey("user", key, []byte("supervisor-secret"), unix.KEY_SPEC_SESSION_KEYRING)
	check(err)
	check(syscall.Exec(argv[0], argv, os.Environ()))
}

// traceme makes PID 1, this service's parent, its tracer and stops
// itself: PID 1 then sees a stop, not an exit, in wait4. A second run
// (MARKER present) just stays.
//
// With "thread" it does so from a thread other than the process's first
// (the main goroutine holds the first, locked in init), which PID 1's
// wait sees only with __WALL, and stops that thread alone.
func traceme(marker string, thread bool) {
	if _, err := os.Stat(marker); err != nil {
		check(os.WriteFile(marker, nil, 0o644))
		stop := func() {
			runtime.LockOSThread()
			_, _, e := syscall.RawSyscall(syscall.SYS_PTRACE, syscall.PTRACE_TRACEME, 0, 0)
			if e != 0 {
				check(e)
			}
			tid := syscall.Gettid()
			fmt.Printf("traced by PID 1 (thread %d of %d), stopping\n", tid, os.Getpid())
			check(syscall.Tgkill(os.Getpid(), tid, syscall.SIGSTOP))
		}
		if !thread {
			stop()
		} else {
			if syscall.Gettid() != os.Getpid() {
				check(fmt.Errorf("main goroutine not on the first thread"))
			}
			go stop()
			time.Sleep(time.Hour) // killed by PID 1, or the test fails
		}
	}
	fmt.Println("running untraced")
	time.Sleep(time.Hour)
	os.Exit(0)
}

func dur(s string) time.Duration {
	d, err := time.ParseDuration(s)
	check(err)
	return d
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "testprog:", err)
		os.Exit(1)
	}
}
