package services

import (
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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
// to after making one.
var hostNetNS = sync.OnceValue(func() netns.NsHandle {
	h, _ := netns.GetFromPath("/proc/self/ns/net")
	return h
})

func restore() error { return netns.Set(hostNetNS()) }

func newNetNS() (*os.File, error) {
	if !hostNetNS().IsOpen() {
		return nil, fmt.Errorf("network namespace: cannot open /proc/self/ns/net")
	}
	ns, err := netns.New()
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	f := os.NewFile(uintptr(ns), "netns")
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
