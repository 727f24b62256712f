package supervisor_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/internal/vmtest"
)

// BenchmarkIdle measures what one idle VM's supervisor costs: resident
// and proportional memory (RSS, PSS) of the outer vmsup and PID 1
// together, and their wake-ups per second over a 5 s window once the VM
// is ready. A wake-up is counted as a context switch, voluntary or not,
// of any thread of either process (/proc/PID/task/*/status): a thread
// that wakes up and sleeps again switches once. It measures one VM
// whatever b.N is: the window, not a repetition count, makes the figure.
// Targets: PSS at most 8 MiB, at most 1 wake-up a second.
func BenchmarkIdle(b *testing.B) {
	c := vmtest.NewConfig(b, "idle", sh("a", "exec sleep 1000"), sh("b", "exec sleep 1000"))
	vm := vmtest.Start(b, c, vmtest.Options{})
	pids := []int{vm.Cmd.Process.Pid, vm.PID1()}
	vm.WaitFor("all services are ready", 10*time.Second)
	time.Sleep(time.Second) // let start-up work settle
	before := switches(pids)
	if before == 0 {
		b.Fatal("no context switch counted at all: the measurement is broken")
	}
	const window = 5 * time.Second
	time.Sleep(window)
	after := switches(pids)
	var rss, pss int
	for _, p := range pids {
		rss += rollup(p, "Rss:")
		pss += rollup(p, "Pss:")
	}
	b.ReportMetric(float64(rss), "rss-KiB")
	b.ReportMetric(float64(pss), "pss-KiB")
	b.ReportMetric(float64(after-before)/window.Seconds(), "wakeups/s")
	vm.Signal(syscall.SIGTERM)
	vm.Wait(10 * time.Second)
	b.ReportMetric(0, "ns/op")
}

// switches sums voluntary and involuntary context switches of every
// thread of pids.
func switches(pids []int) int {
	n := 0
	for _, pid := range pids {
		tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/status")
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasSuffix(strings.Fields(l + " x")[0], "ctxt_switches:") {
					v, _ := strconv.Atoi(strings.Fields(l)[1])
					n += v
				}
			}
		}
	}
	return n
}

// rollup returns one field (in KiB) of /proc/PID/smaps_rollup.
func rollup(pid int, field string) int {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}
