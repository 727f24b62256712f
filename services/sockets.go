package services

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"vmsup/config"
)

// Listen binds and listens on the UNIX socket of so, owned by so.UID and
// so.GID with so.Mode, and returns it for handing over. The caller's
// umask must be tight (PID 1 runs with 077): the path is chmod'ed after
// bind, and until then only root may use it.
//
// A path that is already there is refused, except a socket nobody listens
// on any more (left by a crash), which is replaced.
func Listen(so config.Socket) (*os.File, error) {
	if _, err := os.Lstat(so.Path); err == nil {
		if err := removeStale(so.Path); err != nil {
			return nil, err
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", so.Path, err)
	}
	f := os.NewFile(uintptr(fd), so.Path)
	fail := func(step string, err error) (*os.File, error) {
		f.Close()
		return nil, fmt.Errorf("socket %s: %s: %w", so.Path, step, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: so.Path}); err != nil {
		return fail("bind", err)
	}
	h, err := keepHandle(so.Path)
	if err != nil {
		os.Remove(so.Path)
		return fail("open", err)
	}
	// Owner and mode through the handle, not the name: whoever can write
	// the socket's directory could swap the name for a link to a file of
	// their choosing between bind and chown.
	if err := unix.Fchownat(h, "", int(so.UID), int(so.GID), unix.AT_EMPTY_PATH); err != nil {
		os.Remove(so.Path)
		return fail("chown", err)
	}
	if err := os.Chmod("/proc/self/fd/"+strconv.Itoa(h), os.FileMode(so.Mode)); err != nil {
		os.Remove(so.Path)
		return fail("chmod", err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		os.Remove(so.Path)
		return fail("listen", err)
	}
	return f, nil
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("socket %s: the path is taken by something that is not a socket", path)
	}
	if err := dialUnix(path); err == nil || !errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("socket %s: already in use by another process", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("socket %s: remove stale socket: %w", path, err)
	}
	return nil
}

// OpenDevice opens a device path for handing over, read-write.
func OpenDevice(d config.Device) (*os.File, error) {
	f, err := os.OpenFile(d.Path, os.O_RDWR|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	return f, nil
}
