package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// duel NAME PEER DIR HOSTABSTRACT: the hostile service. It sets up what a
// victim has (a PID file, files in its /tmp and /dev/shm, abstract
// sockets, a secret in its environment and in the user keyring, signal
// handlers that record what reaches it), waits for PEER to do the same,
// then attacks PEER, PID 1, the host and its own sandbox. Each attempt
// prints one line:
//
//	attempt <what>: blocked (<error>)
//	attempt <what>: ESCAPED
//
// followed by "duel done <n>" and the process's capability lines.
//
// Signals whose delivery only the victim can see (kill -1, a process
// group, SIGIO) are judged by the victim's record, after both sides have
// finished everything else, so that a broadcast cannot hit a helper
// process the peer is still running.
func duel(name, peer, dir, hostAbstract string) {
	d := &duelist{name: name, peer: peer, dir: dir, base: filepath.Base(dir), host: hostAbstract}
	d.setup()
	d.pid = d.waitPeerPID()
	time.Sleep(200 * time.Millisecond) // the peer finishes its own setup
	d.attackAll()
	d.sync("phase1")
	d.signalPeer()
	d.sync("phase2")
	time.Sleep(500 * time.Millisecond) // let the peer's handlers record what came
	d.judgeSignals()
	fmt.Printf("duel done %d\n", d.n)
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Cap") || strings.HasPrefix(l, "NoNewPrivs") {
			fmt.Println("status", strings.Join(strings.Fields(l), " "))
		}
	}
	time.Sleep(time.Hour)
}

type duelist struct {
	name, peer, dir, base, host string
	pid                         int // the peer's
	n                           int // attempts made
}

// marker is at the same address in both duelists (one non-PIE binary),
// so each can name the other's copy for memory reads and writes.
var marker = [16]byte{'v', 'm', 's', 'u', 'p', '-', 'd', 'u', 'e', 'l', '-', 'm', 'a', 'r', 'k'}

func (d *duelist) abstract(who, kind string) string {
	return "@vmsup-duel-" + who + "-" + kind + "-" + d.base
}

// pathSocket is a pathname socket only its owner's uid may connect to.
func (d *duelist) pathSocket(who string) string { return filepath.Join(d.dir, who+".sock") }

func (d *duelist) keyName(who string) string { return "vmsup-duel-" + who + "-" + d.base }

func (d *duelist) secret(dir, who string) string {
	return dir + "/vmsup-duel-" + who + "-" + d.base + "-secret"
}

func (d *duelist) setup() {
	// Signals whose arrival only the victim can see: it records them.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGIO)
	go func() {
		for s := range sigs {
			os.WriteFile(filepath.Join(d.dir, d.name+".got-"+unix.SignalName(s.(syscall.Signal))), nil, 0o644)
		}
	}()
	must(os.WriteFile(d.secret("/tmp", d.name), []byte("x"), 0o600))
	must(os.WriteFile(d.secret("/dev/shm", d.name), []byte("x"), 0o600))
	step := func(what string, err error) {
		if err != nil {
			must(fmt.Errorf("%s: %w", what, err))
		}
	}
	for _, k := range []struct {
		typ  int
		kind string
	}{{unix.SOCK_STREAM, "stream"}, {unix.SOCK_DGRAM, "dgram"}, {unix.SOCK_STREAM, "path"}} {
		fd, err := unix.Socket(unix.AF_UNIX, k.typ, 0)
		step("socket", err)
		addr := d.abstract(d.name, k.kind)
		if k.kind == "path" {
			addr = d.pathSocket(d.name)
		}
		step("bind", unix.Bind(fd, &unix.SockaddrUnix{Name: addr}))
		if k.typ == unix.SOCK_STREAM {
			step("listen", unix.Listen(fd, 8))
		}
	}
	// A secret in its session keyring, where a program keeps credentials
	// for itself and its children.
	// Under the default syscall filter there is no keyring to keep it in.
	_, err := unix.AddKey("user", d.keyName(d.name), []byte("secret-"+d.name), unix.KEY_SPEC_SESSION_KEYRING)
	if err != unix.EPERM {
		step("add_key", err)
	}
	// Written whole or not at all (renamed into place): a peer that read
	// it still empty would attack PID 0, its own process group.
	pidFile := filepath.Join(d.dir, d.name+".pid")
	must(os.WriteFile(pidFile+".tmp", []byte(strconv.Itoa(os.Getpid())), 0o644))
	must(os.Rename(pidFile+".tmp", pidFile))
}

func (d *duelist) waitPeerPID() int {
	waitFile(filepath.Join(d.dir, d.peer+".pid"))
	b, err := os.ReadFile(filepath.Join(d.dir, d.peer+".pid"))
	must(err)
	pid, err := strconv.Atoi(string(b))
	must(err)
	if pid <= 0 {
		must(fmt.Errorf("bad PID file of %s: %q", d.peer, b))
	}
	return pid
}

// sync marks this side as past step and waits for the peer to be too.
func (d *duelist) sync(step string) {
	must(os.WriteFile(filepath.Join(d.dir, d.name+"."+step), nil, 0o644))
	waitFile(filepath.Join(d.dir, d.peer+"."+step))
}

func waitFile(p string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(p); err == nil {
			return
		}
		if time.Now().After(deadline) {
			must(fmt.Errorf("no %s after 30s", p))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *duelist) try(what string, err error) {
	d.n++
	if err != nil {
		fmt.Printf("attempt %s: blocked (%v)\n", what, err)
	} else {
		fmt.Printf("attempt %s: ESCAPED\n", what)
	}
}

// attackAll makes every attempt whose outcome the attacker sees itself.
// The order matters where an attempt changes the attacker: moving
// between cgroups and unmounting /tmp come last.
func (d *duelist) attackAll() {
	pid, p := d.pid, strconv.Itoa(d.pid)

	// Signals (Landlock's signal scope).
	d.try("signal peer", unix.Kill(pid, 0))
	d.try("tgkill peer", unix.Tgkill(pid, pid, 0))
	d.try("pidfd signal peer", pidfdSignal(pid))
	d.try("signal PID 1", unix.Kill(1, 0))
	d.try("pidfd signal PID 1", pidfdSignal(1))

	// Abstract UNIX sockets (Landlock's abstract socket scope).
	d.try("connect peer abstract socket", connectUnix(unix.SOCK_STREAM, d.abstract(d.peer, "stream")))
	d.try("send to peer abstract datagram socket", sendUnix(d.abstract(d.peer, "dgram")))
	d.try("connect host abstract socket", connectUnix(unix.SOCK_STREAM, "@"+d.host))
	d.try("connect peer pathname socket", connectUnix(unix.SOCK_STREAM, d.pathSocket(d.peer)))

	// The peer's process (ptrace access checks).
	d.try("ptrace peer", ptraceSeize(pid))
	d.try("read peer memory via /proc/PID/mem", readMem(pid))
	d.try("write peer memory via /proc/PID/mem", writeMem(pid))
	d.try("read peer memory via process_vm_readv", vmRead(pid))
	d.try("steal peer descriptor via pidfd_getfd", pidfdGetfd(pid))
	d.try("open peer descriptor via /proc/PID/fd", openFile("/proc/"+p+"/fd/0"))
	d.try("read peer /proc/PID/environ", readFile("/proc/"+p+"/environ"))
	d.try("open peer /proc/PID/cwd", listDir("/proc/"+p+"/cwd"))
	d.try("compare peer files via kcmp", kcmp(pid))
	d.try("count peer CPU time via perf_event_open", perfPeer(pid))
	d.try("list peer /proc/PID/root/tmp", listDir("/proc/"+p+"/root/tmp"))
	d.try("read peer /proc/PID/root/tmp secret", readFile("/proc/"+p+"/root"+d.secret("/tmp", d.peer)))
	d.try("list peer /proc/PID/root/dev/shm", listDir("/proc/"+p+"/root/dev/shm"))

	// PID 1.
	d.try("ptrace PID 1", ptraceSeizeShared(1))
	d.try("list PID 1 descriptors", listDir("/proc/1/fd"))

	// Namespaces.
	d.try("setns into PID 1 mount namespace", nsenter("/proc/1/ns/mnt"))
	d.try("setns into peer mount namespace", nsenter("/proc/"+p+"/ns/mnt"))

	// Private /tmp and /dev/shm.
	d.try("see peer /tmp secret", stat(d.secret("/tmp", d.peer)))
	d.try("see peer /dev/shm secret", stat(d.secret("/dev/shm", d.peer)))
	d.try("see the VM's /tmp", stat(hostMarker(d.base)))

	// Privileges.
	d.try("mount tmpfs", unix.Mount("tmpfs", "/mnt", "tmpfs", 0, "size=4k"))
	d.try("mknod char device", unix.Mknod(filepath.Join(d.dir, d.name+"-null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	d.try("chroot", unix.Chroot("/"))
	d.try("setuid 0", child("setuid0"))
	d.try("raise rlimit above hard limit", raiseRlimit())
	d.try("exec setuid-root binary", execSetuid(filepath.Join(d.dir, "suid-testprog")))
	d.try("TIOCSTI or TIOCLINUX on a terminal", tiocsti())

	// cgroups.
	d.try("open own cgroup limits for writing", openOwnCgroupFile("cgroup.max.descendants"))
	d.try("open peer cgroup.kill for writing", openCgroupFileOf(pid, "cgroup.kill"))

	// What the same uid shares.
	createErr, umountErr := userns()
	d.try("create a user namespace", createErr)
	d.try("umount private /tmp from a user namespace", umountErr)
	d.try("prlimit peer", prlimitPeer(pid))
	d.try("renice peer", renicePeer(pid))
	d.try("set peer CPU affinity", affinityPeer(pid))
	d.try("set peer I/O priority", ioprioPeer(pid))
	d.try("set peer oom_score_adj", oomScorePeer(p))
	d.try("read peer key in the session keyring", readKey(unix.KEY_SPEC_SESSION_KEYRING, d.keyName(d.peer)))
	d.try("read the supervisor's session keyring", readKey(unix.KEY_SPEC_SESSION_KEYRING, "vmsup-duel-supervisor-"+d.base))

	// Last: these change where the attacker is.
	d.try("move out of own cgroup", leaveCgroup())
	d.try("join PID 1 cgroup", joinCgroupOf(1))
	d.try("umount own /tmp", unix.Unmount("/tmp", unix.MNT_DETACH))
}

// signalPeer sends the signals only the victim can see arrive.
func (d *duelist) signalPeer() {
	unix.Kill(-1, syscall.SIGUSR1)     // every process this one may signal
	unix.Kill(-d.pid, syscall.SIGUSR2) // the peer's process group (it leads its session)
	sigio(d.pid)
}

func (d *duelist) judgeSignals() {
	for _, a := range []struct {
		what string
		sig  syscall.Signal
	}{
		{"kill -1 SIGUSR1", syscall.SIGUSR1},
		{"killpg peer SIGUSR2", syscall.SIGUSR2},
		{"SIGIO to peer via F_SETOWN", syscall.SIGIO},
	} {
		var err error
		if _, e := os.Stat(filepath.Join(d.dir, d.peer+".got-"+unix.SignalName(a.sig))); e != nil {
			err = fmt.Errorf("the peer did not receive %s", unix.SignalName(a.sig))
		}
		d.try(a.what, err)
	}
}

// hostMarker is a file the test creates in the host's /tmp.
func hostMarker(base string) string { return "/tmp/vmsup-duel-marker-" + base }

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "testprog:", err)
		os.Exit(1)
	}
}
