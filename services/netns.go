package services

import (
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NewNetNS creates a network namespace with only loopback, up, and
// returns it open; the launcher joins it (setns) before the service
// runs. It lives as long as this descriptor or a process in it.
//
// It is made here, in the supervisor, rather than by the launcher's
// clone: bringing loopback up takes netlink, which the launcher must not
// link (see package launcher), and a namespace made once per service at
// set-up keeps its cost off every launch and restart.
func NewNetNS() (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	// unshare acts on the calling thread: a thread of its own, moved back
	// afterwards, or ended with the goroutine if that fails.
	go func() {
		runtime.LockOSThread()
		f, err := newNetNS()
		if restore() == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{f, err}
	}()
	r := <-ch
	return r.f, r.err
}

// hostNetNS is this process's network namespace, which threads return
// to after making one (-1 if it cannot be opened).
var hostNetNS = sync.OnceValue(func() int {
	fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
})

func restore() error { return unix.Setns(hostNetNS(), unix.CLONE_NEWNET) }

func newNetNS() (*os.File, error) {
	host := hostNetNS()
	if host < 0 {
		return nil, fmt.Errorf("network namespace: cannot open /proc/self/ns/net")
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	// thread-self, not /proc/PID/task/TID: PID 1's own PID and thread ID
	// are those of its namespace, which the /proc mount may not share.
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	f := os.NewFile(uintptr(fd), "netns")
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Fstat(host, &b) != nil || a.Ino == b.Ino {
		f.Close()
		return nil, fmt.Errorf("network namespace: the new namespace cannot be told from the host's")
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("network namespace: netlink: %w", err)
	}
	defer h.Close()
	// Loopback is always index 1 in a new namespace: no lookup needed.
	if err := h.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo"}}); err != nil {
		f.Close()
		return nil, fmt.Errorf("network namespace: loopback up: %w", err)
	}
	return f, nil
}
