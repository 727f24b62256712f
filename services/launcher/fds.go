package launcher

import "golang.org/x/sys/unix"

// closeOthers marks every descriptor above 2 close-on-exec, then clears
// the flag on keep: the service receives exactly its own descriptors,
// whatever the launcher or the Go runtime opened (the error pipe
// included, which is how the supervisor learns that execve succeeded).
func closeOthers(keep []int) error {
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return err
	}
	for _, fd := range keep {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return err
		}
	}
	return nil
}
