package supervisor

import (
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
)

// oneProc runs the Go scheduler of a long-lived stage on one processor:
// they run no CPU-bound Go code, a single timer heap lets the scheduler
// drop a stopped timer at once (a timer stopped on another processor's
// heap still woke the process at its original time: the runtime's monitor
// sleeps until the earliest entry, stopped or not), and fewer threads
// spin up to run goroutines in parallel. Called first thing by `vmsup
// run` and by PID 1. Better still is GOMAXPROCS=1 in the environment,
// so that the runtime starts on one processor: the outer stage starts
// PID 1 so, and the run scripts of `vmsup s6-servicedir` start vmsup so
// (100-250 KiB less memory each); oneProc covers a vmsup started
// without it.
func oneProc() { runtime.GOMAXPROCS(1) }

// settleHeadroom is how far the process may grow past its settled size
// before a collection: twice the headroom the default collector gives a
// small heap (its 4 MiB minimum), so that a live heap that grows a little
// never makes the collector run back to back.
const settleHeadroom = 8 << 20

// settle is called once by each long-lived stage when its start-up work
// is done (the outer stage once PID 1 has the VM; PID 1 once every
// service is ready). It replaces the collector's proportional pacing,
// whose forced collection every two minutes wakes every idle supervisor
// of the host (2,000 processes for 1,000 VMs), by a limit: the next
// collection runs only once the process has grown by settleHeadroom.
//
// The size is the resident set from /proc/self/statm, which stands for
// the runtime's own count of its memory: runtime.ReadMemStats would stop
// the world and flush every span cache (so later allocations take fresh
// pages), and runtime/metrics costs 15 KB of heap at every start. It
// collects nothing itself: a first collection costs more than it gives
// back, as the start-up's few hundred KiB of live objects are spread over
// the pages it touched.
func settle() {
	size := int64(64 << 20) // if statm cannot be read: still a bound
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := bytes.Fields(b); len(f) > 1 {
			if pages, err := strconv.ParseInt(string(f[1]), 10, 64); err == nil {
				size = pages * int64(os.Getpagesize())
			}
		}
	}
	debug.SetMemoryLimit(size + settleHeadroom)
	debug.SetGCPercent(-1)
}
