package launcher

import "golang.org/x/sys/unix"

// joinNetNS moves this thread into the network namespace the supervisor
// made for the service (loopback already up); fd -1 keeps the host's.
// The descriptor is close-on-exec like everything not kept.
func joinNetNS(fd int) error {
	if fd < 0 {
		return nil
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return wrap("join network namespace", err)
	}
	return nil
}
