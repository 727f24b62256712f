package launcher

import (
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkViewSteps prices each step of the service's view on its own:
// every sample is a fresh mount namespace (unshare on a locked thread
// that is then thrown away), with and without the step, and the figure
// is the difference of the medians. Needs root.
func BenchmarkViewSteps(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("needs root (mount namespaces)")
	}
	rundir := "/run/vmsup-bench-view-" + os.Getenv("VMSUP_TEST_TAG") + "/vm"
	if err := os.MkdirAll(rundir, 0o755); err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(parent(rundir))
	sp := &Spec{View: View{RunDir: rundir, HideParent: true}}
	steps := []struct {
		name string
		f    func() error
	}{
		{"none", func() error { return nil }},
		{"dev", func() error { return minimalDev(sp) }},
		{"sys-ro", func() error { return readOnlyTree(unix.AT_FDCWD, "/sys", 0) }},
		{"rundir", func() error { return runDirView(&sp.View) }},
		{"all", func() error { return setupView(sp) }},
	}
	d := make([][]time.Duration, len(steps))
	sample := func(i int) {
		done := make(chan error)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with its namespace
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				done <- err
				return
			}
			if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
				done <- err
				return
			}
			t0 := time.Now()
			err := steps[i].f()
			d[i] = append(d[i], time.Since(t0))
			done <- err
		}()
		if err := <-done; err != nil {
			b.Fatalf("%s: %v", steps[i].name, err)
		}
	}
	b.ResetTimer()
	for range b.N {
		for i := range steps {
			sample(i)
		}
	}
	b.StopTimer()
	for i, s := range steps {
		slices.Sort(d[i])
		b.ReportMetric(float64(d[i][len(d[i])/2].Nanoseconds())/1000, s.name+"-median-us")
	}
	b.ReportMetric(0, "ns/op")
}
