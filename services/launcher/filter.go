package launcher

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loadFilter installs the service's seccomp filter (built by the
// supervisor, see package seccomp) on this thread, the one that calls
// execve. It runs last: the launcher's own keyctl and capset come
// before it, and no_new_privs, set with Landlock, lets it load without
// CAP_SYS_ADMIN. The filter leaves seccomp(2) and prctl(2) allowed, so
// the service can stack its own.
func loadFilter(raw []uint64) error {
	if len(raw) == 0 {
		return nil
	}
	f := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		f[i] = unix.SockFilter{Code: uint16(r >> 48), Jt: uint8(r >> 40), Jf: uint8(r >> 32), K: uint32(r)}
	}
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	_, _, e := syscall.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog)))
	if e != 0 {
		return wrap("seccomp(SECCOMP_SET_MODE_FILTER)", e)
	}
	return nil
}
