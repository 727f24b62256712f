package supervisor

import (
	"runtime"
	"runtime/debug"
)

// settleHeadroom is how far the Go runtime's memory may grow past the
// settled footprint before a collection: twice the headroom the default
// collector gives a small heap (its 4 MiB minimum), so that a live heap
// that grows a little never makes the collector run back to back.
const settleHeadroom = 8 << 20

// settle is called once by each long-lived stage when its start-up work
// is done (the outer stage once PID 1 has the VM; PID 1 once every
// service is ready). It replaces the collector's proportional pacing,
// whose forced collection every two minutes would wake every idle
// supervisor of the host (2,000 processes for 1,000 VMs), by a limit: the
// next collection runs only once the process has allocated
// settleHeadroom more. It collects nothing itself: a first collection
// costs more (8 ms of CPU here) and gives back less than it costs, as the
// start-up's few hundred KiB of live objects are spread over the pages
// it touched.
func settle() {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	debug.SetMemoryLimit(int64(m.Sys-m.HeapReleased) + settleHeadroom)
	debug.SetGCPercent(-1)
}
