//go:build hostimage

package hostimage

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vmsup/cgroup"
	"vmsup/internal/vmtest"
)

// The tests in files with the hostimage build tag run inside the host
// image only (the runner selects them); they need the real controllers
// and s6-svscan as PID 1, and fail, not skip, without them.

func TestMain(m *testing.M) { vmtest.Main(m) }

// s6VM is a VM started the way a host image starts one: `vmsup
// s6-servicedir` writes its service directory, the host adds a log
// service and a down file (it decides when the VM runs), links it into
// the scan directory of s6-svscan (PID 1) and starts it once.
type s6VM struct {
	t       *testing.T
	name    string
	svc     string // the service directory, linked into ScanDir
	log     string // what the log service received (vmsup's stdout and stderr)
	Cgroup  string
	Runtime string
}

// newConfig is vmtest.NewConfig with the VM's cgroup under parent.
func newConfig(t *testing.T, parent, name string, services ...map[string]any) vmtest.Config {
	c := vmtest.NewConfig(t, name, services...)
	c["cgroup"] = filepath.Join(parent, name)
	return c
}

// startS6 starts c under s6. With ready it returns once s6 has vmsup's
// readiness notification, else once vmsup runs.
func startS6(t *testing.T, c vmtest.Config, ready bool) *s6VM {
	t.Helper()
	requirePID1(t, "s6-svscan")
	name := c["name"].(string)
	base := filepath.Join("/run/hostimage", name)
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(base, "vm.json")
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	v := &s6VM{t: t, name: name, svc: filepath.Join(ScanDir, name), log: filepath.Join(base, "log"),
		Cgroup: c["cgroup"].(string), Runtime: c["runtime_dir"].(string)}
	dir := filepath.Join(base, "svc")
	run(t, vmtest.Bin(t, "vmsup"), "s6-servicedir", "--config", cfg, dir)
	if err := os.WriteFile(filepath.Join(dir, "down"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "log"), 0o755); err != nil {
		t.Fatal(err)
	}
	logRun := "#!/bin/sh\nexec tee -a " + v.log + "\n" // also on the console
	if err := os.WriteFile(filepath.Join(dir, "log", "run"), []byte(logRun), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, v.svc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.remove(base) })
	run(t, "s6-svscanctl", "-a", ScanDir)
	waitFor(t, 10*time.Second, "s6-supervise for "+v.svc, func() bool { return exec.Command("s6-svok", v.svc).Run() == nil })
	// s6-svlisten1 subscribes before s6-svc sends the command, so the
	// transition cannot be missed however fast it is.
	want := "-u"
	if ready {
		want = "-U"
	}
	run(t, "s6-svlisten1", want, "-t", "60000", v.svc, "s6-svc", "-o", v.svc)
	return v
}

// remove takes the service out of the scan directory and checks that
// nothing of the VM is left: no cgroup under its parent, no runtime dir.
func (v *s6VM) remove(base string) {
	t := v.t
	exec.Command("s6-svc", "-dx", v.svc).Run()
	exec.Command("s6-svc", "-dx", v.svc+"/log").Run()
	os.Remove(v.svc)
	exec.Command("s6-svscanctl", "-an", ScanDir).Run()
	waitFor(t, 30*time.Second, "s6-supervise of "+v.name+" to exit", func() bool {
		return exec.Command("s6-svok", base+"/svc").Run() != nil && exec.Command("s6-svok", base+"/svc/log").Run() != nil
	})
	if t.Failed() {
		b, _ := os.ReadFile(v.log)
		t.Logf("%s's log:\n%s", v.name, b)
	}
	os.RemoveAll(base)
	assertNoChildren(t, filepath.Dir(v.Cgroup))
	if _, err := os.Lstat(v.Runtime); err == nil {
		t.Errorf("runtime dir %s left behind", v.Runtime)
	}
}

// waitDown waits until vmsup has ended and s6 has run the finish script,
// and returns vmsup's exit status as s6 recorded it.
func (v *s6VM) waitDown(timeout time.Duration) int {
	v.t.Helper()
	run(v.t, "s6-svwait", "-D", "-t", strconv.FormatInt(timeout.Milliseconds(), 10), v.svc)
	return v.exitCode()
}

// stop is `s6-svc -d` and waitDown.
func (v *s6VM) stop(timeout time.Duration) int {
	v.t.Helper()
	run(v.t, "s6-svlisten1", "-D", "-t", strconv.FormatInt(timeout.Milliseconds(), 10), v.svc, "s6-svc", "-d", v.svc)
	return v.exitCode()
}

func (v *s6VM) exitCode() int {
	v.t.Helper()
	out := run(v.t, "s6-svstat", "-o", "up,exitcode,signal", v.svc)
	f := strings.Fields(out)
	if len(f) != 3 || f[0] != "false" {
		v.t.Fatalf("s6-svstat: %q, want a service that is down", out)
	}
	code, err := strconv.Atoi(f[1])
	if err != nil || code < 0 {
		v.t.Fatalf("vmsup did not exit normally: s6-svstat says %q", out)
	}
	return code
}

// waitLog waits until the log holds s and returns the log.
func (v *s6VM) waitLog(s string, timeout time.Duration) string {
	v.t.Helper()
	var text string
	waitFor(v.t, timeout, "\""+s+"\" in "+v.name+"'s log", func() bool {
		b, _ := os.ReadFile(v.log)
		text = string(b)
		return strings.Contains(text, s)
	})
	return text
}

var run = vmtest.MustRun

// waitFor polls cond (tests may poll, with a bound) until it holds.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
	}
}

// requirePID1 fails unless PID 1 runs comm: these tests only make sense
// in the host image.
func requirePID1(t *testing.T, comm string) {
	t.Helper()
	b, err := os.ReadFile("/proc/1/comm")
	if got := strings.TrimSpace(string(b)); err != nil || got != comm {
		t.Fatalf("PID 1 is %q, want %s: this test runs in the host image (go test ./e2e/hostimage/)", got, comm)
	}
}

// children lists the cgroups directly below dir.
func children(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

func assertNoChildren(t *testing.T, parent string) {
	t.Helper()
	if left := children(t, parent); len(left) > 0 {
		t.Errorf("cgroups left under %s: %v", parent, left)
	}
}

// eventCount reads one counter of a cgroup's *.events file.
func eventCount(t *testing.T, dir, file, key string) int {
	t.Helper()
	s, err := cgroup.Read(dir, file)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(l, key+" "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("%s/%s: %q", dir, file, l)
			}
			return n
		}
	}
	t.Fatalf("%s/%s has no %q: %q", dir, file, key, s)
	return 0
}
