package services

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// WaitExists returns once path exists, or when ctx is done.
func WaitExists(ctx context.Context, path string) error {
	return waitPath(ctx, path, func() (bool, time.Duration, error) {
		_, err := os.Lstat(path)
		return err == nil, 0, nil
	})
}

// The pause after a refused connection to a ready socket (WaitSocket):
// refusedFirst, doubling up to refusedMax.
const (
	refusedFirst = time.Millisecond
	refusedMax   = time.Second
)

// WaitSocket returns once the UNIX socket at path, owned by owner (the
// service's uid) or bound by vmsup, accepts a connection (see Dial).
// With greet it also waits for the service's first byte on that
// connection: a socket vmsup bound accepts connections before the
// service runs, and QMP's greeting says the monitor is up.
//
// Creation of the path is seen through inotify. A socket is bound before
// it listens, so a connection can be refused in that short window; only
// then is the attempt repeated after a growing pause (1 ms doubling to
// 1 s), since listen(2) produces no file system event.
func WaitSocket(ctx context.Context, path string, owner uint32, greet bool) error {
	pause := refusedFirst
	conn := -1
	err := waitPath(ctx, path, func() (bool, time.Duration, error) {
		fd, err := Dial(path, owner)
		switch {
		case err == nil:
			conn = fd
			return true, 0, nil
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
			pause = refusedFirst
			return false, 0, nil
		}
		p := pause
		pause = min(2*pause, refusedMax)
		return false, p, nil
	})
	if err != nil || conn < 0 {
		return err
	}
	if !greet {
		unix.Close(conn)
		return nil
	}
	if err := unix.SetNonblock(conn, true); err != nil {
		unix.Close(conn)
		return err
	}
	f := os.NewFile(uintptr(conn), path)
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	if _, err := f.Read(make([]byte, 1)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: closed before the service's first byte: %w", path, err)
	}
	return nil
}

func dialUnix(path string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Connect(fd, &unix.SockaddrUnix{Name: path})
}

// WaitLine returns once a newline arrives on r (the read end of a
// service's notify_fd), the s6 readiness protocol. End of file before a
// newline means the service will never say it is ready.
func WaitLine(ctx context.Context, r *os.File) error {
	stop := context.AfterFunc(ctx, func() { r.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 512)
	for {
		n, err := r.Read(buf)
		if bytes.IndexByte(buf[:n], '\n') >= 0 {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("notification fd closed without a newline: %w", err)
		}
	}
}

// waitPath re-runs check each time something changes near path: in its
// directory, or in the nearest existing ancestor while the directory
// itself does not exist yet. check may ask for a timed retry.
func waitPath(ctx context.Context, path string, check func() (done bool, retry time.Duration, err error)) error {
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	defer unix.Close(in)
	cancel, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	defer unix.Close(cancel)
	stop := context.AfterFunc(ctx, func() { unix.Write(cancel, []byte{1, 0, 0, 0, 0, 0, 0, 0}) })
	defer stop()

	buf := make([]byte, 4096)
	for {
		dir := filepath.Dir(path)
		for {
			if _, err := unix.InotifyAddWatch(in, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ATTRIB|unix.IN_CLOSE_WRITE); err == nil || dir == "/" {
				break
			}
			dir = filepath.Dir(dir)
		}
		// Checked after the watch is in place, so no change is missed.
		done, retry, err := check()
		if done || err != nil {
			return err
		}
		timeout := -1
		if retry > 0 {
			timeout = int(retry.Milliseconds())
		}
		fds := []unix.PollFd{{Fd: int32(in), Events: unix.POLLIN}, {Fd: int32(cancel), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, timeout); err != nil && err != unix.EINTR {
			return fmt.Errorf("poll: %w", err)
		}
		if fds[1].Revents != 0 {
			return ctx.Err()
		}
		for {
			if _, err := unix.Read(in, buf); err != nil {
				break
			}
		}
	}
}
