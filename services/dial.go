package services

import (
	"fmt"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// bound holds an O_PATH handle of every socket vmsup bound, taken right
// after bind, before any service runs: connecting through it reaches
// that socket whatever has since happened to its name.
var bound struct {
	sync.Mutex
	m map[string]int
}

// keepHandle takes the handle of the socket just bound at path and
// returns it; it refuses a name that is no longer a socket.
func keepHandle(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is no longer the socket bound there", path)
	}
	bound.Lock()
	defer bound.Unlock()
	if bound.m == nil {
		bound.m = map[string]int{}
	}
	if old, ok := bound.m[path]; ok {
		unix.Close(old)
	}
	bound.m[path] = fd
	return fd, nil
}

// Dial connects to the UNIX stream socket at path, which a service
// (running as owner) listens on, without trusting a name a service could
// have replaced: a socket vmsup bound is reached through the handle it
// kept; any other is opened without following a symbolic link anywhere
// on the path and must be a socket owned by owner. It returns the
// connected descriptor (close-on-exec, blocking).
func Dial(path string, owner uint32) (int, error) {
	bound.Lock()
	h, ok := bound.m[path]
	bound.Unlock()
	if !ok {
		fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != nil {
			return -1, err
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return -1, err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			return -1, fmt.Errorf("%s is not a socket", path)
		}
		if st.Uid != owner {
			return -1, fmt.Errorf("%s belongs to uid %d, not to its service's %d", path, st.Uid, owner)
		}
		h = fd
	}
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	// The handle's magic link resolves to the socket's own inode.
	if err := unix.Connect(s, &unix.SockaddrUnix{Name: "/proc/self/fd/" + strconv.Itoa(h)}); err != nil {
		unix.Close(s)
		return -1, err
	}
	return s, nil
}
