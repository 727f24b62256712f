package cgroup

import (
	"os"

	"golang.org/x/sys/unix"
)

// readFile and writeFile are os.ReadFile and os.WriteFile for interface
// files, without Go's poller: kernfs files accept epoll, so an os.File
// registers each one (two fcntl, two epoll_ctl and an fstat around every
// read or write), yet a cgroup file never returns EAGAIN. That was 24 of
// the 171 system calls PID 1 made in a VM's stop.
func readFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	// Grown as os.ReadFile grows it (these files stat as empty): most
	// fit in the first 512 bytes, and every byte allocated before the
	// stage settles stays in its memory.
	b := make([]byte, 0, 512)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		} else if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return b, nil
		}
		b = b[:len(b)+n]
	}
}

// writeFile writes value in one write(2), as the kernel takes an
// interface file's value; its error is the kernel's, without the path,
// which Write names.
func writeFile(path, value string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for {
		_, err = unix.Write(fd, []byte(value))
		if err != unix.EINTR {
			return err
		}
	}
}
