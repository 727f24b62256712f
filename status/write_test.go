package status

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A reader sees each record whole while the writer replaces it again and
// again; a file a failed write left is no obstacle; nothing but the
// record and the lock stays in the directory.
func TestWriteAtomic(t *testing.T) {
	d := testDir(t)
	w, err := Create("vm1")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Remove()
	// What a write that failed after creating its file leaves.
	if err := os.WriteFile(filepath.Join(d, "vm1", tmpName), []byte("{half"), 0o600); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Second)
	phases := []string{"running", "stopping"}
	if err := w.Write(&VM{Name: "vm1", Phase: phases[1], Since: t0}); err != nil {
		t.Fatalf("first write, over a failed one's file: %v", err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 1)
	reads := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			r, err := Read("vm1")
			if err == nil && r.Phase != phases[0] && r.Phase != phases[1] {
				err = fmt.Errorf("phase %q", r.Phase)
			}
			if err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			reads++
		}
	}()
	for i := 0; i < 2000; i++ {
		if err := w.Write(&VM{Name: "vm1", Phase: phases[i%2], Since: t0.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	close(done)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("a reader saw a record that was not whole: %v", err)
	default:
	}
	t.Logf("%d reads during 2000 writes", reads)
	ents, _ := os.ReadDir(filepath.Join(d, "vm1"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "lock status.json" {
		t.Errorf("record directory holds %v, want [lock status.json]", names)
	}
}

// BenchmarkWrite replaces a record, printing the disk writes each
// replacement costs the block device under the status directory (none
// when it is on tmpfs, as on most hosts).
func BenchmarkWrite(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("needs root: the record directory must be root's")
	}
	d := filepath.Join(b.TempDir(), "status")
	b.Setenv(DirEnv, d)
	w, err := Create("vm1")
	if err != nil {
		b.Fatal(err)
	}
	defer w.Remove()
	stat := deviceStat(b, filepath.Dir(d))
	rec := &VM{Name: "vm1", Phase: "running", Services: []Service{{Name: "a", State: Ready}}}
	w0 := diskWrites(stat)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec.Since = time.Unix(int64(i), 0)
		if err := w.Write(rec); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	unix.Sync() // what the kernel has queued is counted once written
	b.ReportMetric(float64(diskWrites(stat)-w0)/float64(b.N), "disk-writes/op")
}

// deviceStat is the /sys stat file of the block device holding dir, ""
// if it has none (tmpfs).
func deviceStat(b *testing.B, dir string) string {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		b.Fatal(err)
	}
	p := fmt.Sprintf("/sys/dev/block/%d:%d/stat", unix.Major(st.Dev), unix.Minor(st.Dev))
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// diskWrites is the device's count of completed writes (0 without one).
func diskWrites(stat string) int {
	if stat == "" {
		return 0
	}
	b, _ := os.ReadFile(stat)
	f := strings.Fields(string(b))
	if len(f) < 5 {
		return 0
	}
	var n int
	fmt.Sscan(f[4], &n)
	return n
}
