package status

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the record directory must be root's")
	}
	d := filepath.Join(t.TempDir(), "status")
	t.Setenv(DirEnv, d)
	return d
}

// A record written by PID 1's side reads back while the writer lives;
// once it is gone without removing the record (a crash), the record no
// longer counts, and RemoveStale removes it.
func TestWriteReadStale(t *testing.T) {
	d := testDir(t)
	w, err := Create("vm1")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	rec := &VM{Name: "vm1", Phase: "running", Since: now, Services: []Service{{Name: "a", State: Ready, Since: now, PID: 3, Ready: true, WaitsFor: "started"}}}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	got, err := Read("vm1")
	if err != nil || got.Schema != Schema || got.Services[0].State != Ready || !got.Since.Equal(now) {
		t.Fatalf("read back: %+v, %v", got, err)
	}
	if l, err := List(); err != nil || len(l) != 1 || l[0].Name != "vm1" {
		t.Fatalf("list: %v %v", l, err)
	}
	// A second PID 1 of the same name is refused.
	if _, err := Create("vm1"); err == nil || !strings.Contains(err.Error(), "already runs") {
		t.Errorf("second writer: %v", err)
	}
	st, _ := os.Stat(d)
	if st.Mode().Perm() != 0o700 {
		t.Errorf("%s mode %v", d, st.Mode())
	}

	w.Close() // as a crash: the record stays, the lock goes
	if _, err := os.Stat(filepath.Join(d, "vm1", "status.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := Read("vm1"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("stale record: %v, want ErrNotRunning", err)
	}
	if l, _ := List(); len(l) != 0 {
		t.Errorf("stale record listed: %v", l)
	}
	RemoveStale("vm1")
	if _, err := os.Stat(filepath.Join(d, "vm1")); !os.IsNotExist(err) {
		t.Errorf("stale record not removed: %v", err)
	}

	// Remove takes the record away with its directory.
	w, err = Create("vm2")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(rec)
	RemoveStale("vm2") // a live one is left alone
	if _, err := Read("vm2"); err != nil {
		t.Errorf("RemoveStale touched a live record: %v", err)
	}
	w.Remove()
	if _, err := os.Stat(filepath.Join(d, "vm2")); !os.IsNotExist(err) {
		t.Errorf("not removed: %v", err)
	}
}

// A directory anybody but root could enter is refused, as is a relative
// VMSUP_STATUS_DIR.
func TestDirRefused(t *testing.T) {
	d := testDir(t)
	os.Mkdir(d, 0o755)
	if _, err := Create("vm"); err == nil || !strings.Contains(err.Error(), "must belong to root with mode 0700") {
		t.Errorf("0755 directory: %v", err)
	}
	t.Setenv(DirEnv, "relative/dir")
	if _, err := Create("vm"); err == nil || !strings.Contains(err.Error(), "not a clean absolute path") {
		t.Errorf("relative: %v", err)
	}
}

// The human form, one line per service as s6-svstat.
func TestLines(t *testing.T) {
	now := time.Date(2026, 12, 1, 20, 0, 10, 0, time.UTC)
	t0 := now.Add(-5 * time.Second)
	for _, c := range []struct {
		s    Service
		want string
	}{
		{Service{Name: "a", State: Ready, Since: t0, PID: 3, HostPID: 4000, Ready: true, WaitsFor: "started"}, "a: ready (pid 4000, 3 in the VM) 5s, restarts 0"},
		{Service{Name: "b", State: Starting, Since: t0, PID: 4, WaitsFor: "socket /run/q.sock"}, "b: starting (pid 4 in the VM) 5s, restarts 0, not ready: waits for socket /run/q.sock"},
		{Service{Name: "c", State: Waiting, Since: t0, WaitsFor: "after a, started"}, "c: waiting 5s, restarts 0, then ready on after a, started"},
		{Service{Name: "d", State: Restarting, Since: t0, Restarts: 3, LastExit: "exited with status 1"}, "d: restarting 5s, restarts 3, last exited with status 1"},
		{Service{Name: "e", State: Stopped, Since: t0, LastExit: "killed by SIGKILL"}, "e: stopped 5s, restarts 0, last killed by SIGKILL"},
	} {
		if got := Line(c.s, now); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}
