package launcher

import (
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setRlimits sets soft and hard limits to the configured value.
// syscall.Setrlimit (not unix.Setrlimit) so the Go runtime forgets the
// RLIMIT_NOFILE it would otherwise restore at execve.
func setRlimits(rl []Rlimit) error {
	for _, r := range rl {
		lim := syscall.Rlimit{Cur: r.Value, Max: r.Value}
		if err := syscall.Setrlimit(r.Resource, &lim); err != nil {
			return wrap("rlimit "+r.Name+"="+strconv.FormatUint(r.Value, 10), err)
		}
	}
	return nil
}

// setCreds leaves the calling thread with the service's uid, gid and
// groups, and with exactly the configured capabilities: in the bounding
// set, and permitted, effective, inheritable and ambient so that they
// survive execve for a non-root uid. Every call here acts on this thread
// only (raw syscalls, not Go's all-threads setuid): it is the thread that
// execs, and execve keeps only its credentials.
func setCreds(sp *Spec) error {
	keep := map[uint]bool{}
	for _, c := range sp.Caps {
		keep[c] = true
	}
	for c := uint(0); c <= sp.LastCap; c++ {
		if !keep[c] {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
				return wrap("drop capability "+itoa(c)+" from the bounding set", err)
			}
		}
	}
	// Keep permitted capabilities across the uid change; execve clears it.
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return wrap("prctl(PR_SET_KEEPCAPS)", err)
	}
	if err := setgroups(sp.Groups); err != nil {
		return wrap("setgroups", err)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(sp.GID), uintptr(sp.GID), uintptr(sp.GID)); e != 0 {
		return wrap("setresgid "+itoa(sp.GID), e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(sp.UID), uintptr(sp.UID), uintptr(sp.UID)); e != 0 {
		return wrap("setresuid "+itoa(sp.UID), e)
	}
	var data [2]unix.CapUserData
	for c := range keep {
		data[c/32].Permitted |= 1 << (c % 32)
	}
	for i := range data {
		data[i].Effective = data[i].Permitted
		data[i].Inheritable = data[i].Permitted
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return wrap("capset", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return wrap("clear ambient capabilities", err)
	}
	for c := range keep {
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			return wrap("raise ambient capability "+itoa(c), err)
		}
	}
	return nil
}

// newSessionKeyring gives the service a new, empty session keyring,
// owned by its uid: otherwise it would possess the one vmsup was started
// with (a root login's keys, say) and share it with its siblings.
// keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL) makes an anonymous one; a
// named keyring could be joined by a sibling of the same uid.
func newSessionKeyring() error {
	if _, _, e := unix.RawSyscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0); e != 0 {
		return wrap("new session keyring", e)
	}
	return nil
}

func setgroups(groups []uint32) error {
	var p unsafe.Pointer
	if len(groups) > 0 {
		p = unsafe.Pointer(&groups[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(p), 0); e != 0 {
		return e
	}
	return nil
}

func itoa[T uint | uint32](v T) string { return strconv.FormatUint(uint64(v), 10) }
