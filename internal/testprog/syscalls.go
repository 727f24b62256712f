package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// syscallAttacks DIR MOUNTDIR HANDLE: the attacks a service's seccomp
// filter stops, each needing a capability the test grants so that it
// works without the filter (the control): open_by_handle_at past a
// masked directory (CAP_DAC_READ_SEARCH; HANDLE is "type:hex" of a file
// under it, MOUNTDIR a directory of the same file system), bpf
// (CAP_BPF), perf_event_open (CAP_PERFMON), userfaultfd (user-mode only,
// no capability), mount and unshare (CAP_SYS_ADMIN, also through the
// i386 entry, int 0x80, where the kernel has one), and clearing the user keyring (@u) that the keeper service
// of the same uid keeps a key in. Each attempt prints one line as duel's
// do; then it installs a filter of its own, which must work.
func syscallAttacks(dir, mountDir, handle string) {
	try := func(what string, err error) {
		if err != nil {
			fmt.Printf("attempt %s: blocked (%v)\n", what, err)
		} else {
			fmt.Printf("attempt %s: ESCAPED\n", what)
		}
	}
	try("open_by_handle_at past a masked path", openByHandle(mountDir, handle))
	try("bpf map create", bpfMap())
	try("perf_event_open", perfPeer(os.Getpid()))
	try("userfaultfd", uffd())
	try("mount tmpfs", mountTmpfs(filepath.Join(dir, "mnt")))
	try("unshare", onThread(func() error { return unix.Unshare(unix.CLONE_NEWUTS) }))
	try("unshare through the i386 entry", i386Entry())
	waitFile(filepath.Join(dir, "keeper.ready"))
	_, err := unix.KeyctlInt(unix.KEYCTL_CLEAR, unix.KEY_SPEC_USER_KEYRING, 0, 0, 0)
	try("clear the user keyring", err)
	must(os.WriteFile(filepath.Join(dir, "attacker.done"), nil, 0o644))
	fmt.Println("own filter:", ownFilter())
	time.Sleep(time.Hour)
}

// keeper DIR: keeps a key in its uid's user keyring and reports, once
// the attacker is done, whether it is still there.
func keeper(dir string) {
	name := "vmsup-keeper-" + filepath.Base(dir)
	_, err := unix.AddKey("user", name, []byte("secret"), unix.KEY_SPEC_USER_KEYRING)
	must(err)
	must(os.WriteFile(filepath.Join(dir, "keeper.ready"), nil, 0o644))
	waitFile(filepath.Join(dir, "attacker.done"))
	if _, err := unix.KeyctlSearch(unix.KEY_SPEC_USER_KEYRING, "user", name, 0); err != nil {
		fmt.Println("keeper: key gone:", err)
	} else {
		fmt.Println("keeper: key kept")
	}
	time.Sleep(time.Hour)
}

// onThread runs f on a thread of its own that then ends, so that what f
// changes (a namespace) leaves the rest of the process alone.
func onThread(f func() error) error {
	ch := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		ch <- f()
	}()
	return <-ch
}

func openByHandle(mountDir, handle string) error {
	typ, hx, ok := strings.Cut(handle, ":")
	if !ok {
		return fmt.Errorf("bad handle %q", handle)
	}
	t, err := strconv.Atoi(typ)
	if err != nil {
		return err
	}
	b, err := hex.DecodeString(hx)
	if err != nil {
		return err
	}
	mfd, err := unix.Open(mountDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(int32(t), b), unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	buf := make([]byte, 64)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return err
	}
	fmt.Printf("read by handle: %q\n", buf[:n])
	return nil
}

func bpfMap() error {
	attr := [4]uint32{2, 4, 4, 1} // BPF_MAP_TYPE_ARRAY, key 4, value 4, one entry
	fd, _, e := unix.Syscall(unix.SYS_BPF, 0 /* BPF_MAP_CREATE */, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if e != 0 {
		return e
	}
	return unix.Close(int(fd))
}

func uffd() error {
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|1 /* UFFD_USER_MODE_ONLY */, 0, 0)
	if e != 0 {
		return e
	}
	return unix.Close(int(fd))
}

func mountTmpfs(target string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", target, "tmpfs", 0, "size=4k"); err != nil {
		return err
	}
	return unix.Unmount(target, 0)
}

// ownFilter installs a filter that refuses getppid with EPERM on top of
// the one the service runs under, as QEMU's -sandbox and virtiofsd do,
// and checks it acts.
func ownFilter() string {
	f := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_GETPPID, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	var out string
	onThread(func() error {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			out = "prctl: " + err.Error()
			return nil
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); e != 0 {
			out = "seccomp: " + e.Error()
			return nil
		}
		if _, _, e := unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0); e != unix.EPERM {
			out = fmt.Sprintf("installed, but getppid gave %v", e)
			return nil
		}
		out = "installed and acting"
		return nil
	})
	return out
}
