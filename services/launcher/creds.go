package launcher

import (
	"fmt"
	"os"
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
			return fmt.Errorf("rlimit %s=%d: %w", r.Name, r.Value, err)
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
	last, err := lastCap()
	if err != nil {
		return err
	}
	for c := uint(0); c <= last; c++ {
		if !keep[c] {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
				return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
			}
		}
	}
	// Keep permitted capabilities across the uid change; execve clears it.
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %w", err)
	}
	if err := setgroups(sp.Groups); err != nil {
		return fmt.Errorf("setgroups %v: %w", sp.Groups, err)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(sp.GID), uintptr(sp.GID), uintptr(sp.GID)); e != 0 {
		return fmt.Errorf("setresgid %d: %w", sp.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(sp.UID), uintptr(sp.UID), uintptr(sp.UID)); e != 0 {
		return fmt.Errorf("setresuid %d: %w", sp.UID, e)
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
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for c := range keep {
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			return fmt.Errorf("raise ambient capability %d: %w", c, err)
		}
	}
	// Landlock already set no_new_privs when it ran; this covers
	// "landlock": "off". It is per thread, like everything above.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
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

// lastCap is the highest capability number this kernel knows.
func lastCap() (uint, error) {
	var last uint
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read cap_last_cap: %w", err)
	}
	_, err = fmt.Sscan(string(b), &last)
	return last, err
}
