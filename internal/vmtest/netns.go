package vmtest

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NetNS moves the calling test goroutine, locked to its thread, into a
// network namespace of its own with loopback up, until the test ends.
// Everything it starts from then on (vmsup through Start, commands) and
// every socket it opens on this goroutine lives there, so a network test
// puts addresses only on interfaces inside it and no packet leaves it.
// It must be called from the test's own goroutine, and the test must
// not call it twice or use t.Parallel.
func NetNS(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("network namespace: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("network namespace: %v", err)
	}
	t.Cleanup(func() {
		ns.Close()
		// Back to the original namespace; if that fails the thread
		// stays locked and ends with the goroutine.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		orig.Close()
	})
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("network namespace: loopback up: %v", err)
	}
}
