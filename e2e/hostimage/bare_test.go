//go:build hostimage

package hostimage

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/cgroup"
	"vmsup/owned"
)

// The guest boots as a bare cgroup2 host: its init enables no controller
// (the root's cgroup.subtree_control is empty) and prepares no parent for
// the VMs. This test runs before any VM of the tier: vmsup enables what
// the limits need from the root down, creates and marks the VMs' parent,
// and memory, pids and cpu limits reach the service's cgroup.
func TestBareHostLimits(t *testing.T) {
	requirePID1(t, "s6-svscan")
	if sub, err := cgroup.Read("/sys/fs/cgroup", "cgroup.subtree_control"); err != nil || sub != "" {
		t.Fatalf("the root's cgroup.subtree_control is %q (%v): the init must enable nothing, vmsup is what this test proves", sub, err)
	}
	if _, err := os.Stat(ParentCgroup); err == nil {
		t.Fatalf("%s exists before the first VM: the init must not prepare it", ParentCgroup)
	}
	c := newConfig(t, ParentCgroup, "bare",
		map[string]any{"name": "a", "argv": []string{"/bin/sleep", "3600"},
			"limits": map[string]any{"memory_max": "64M", "pids_max": 32, "cpu_weight": 50}})
	vm := startS6(t, c, true)
	for file, want := range map[string]string{"memory.max": "67108864", "pids.max": "32", "cpu.weight": "50"} {
		if got, err := cgroup.Read(filepath.Join(vm.Cgroup, "svc.a"), file); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", file, got, err, want)
		}
	}
	for _, dir := range []string{"/sys/fs/cgroup", ParentCgroup} {
		sub, _ := cgroup.Read(dir, "cgroup.subtree_control")
		if f := strings.Fields(sub); !slices.Contains(f, "cpu") || !slices.Contains(f, "memory") || !slices.Contains(f, "pids") {
			t.Errorf("%s/cgroup.subtree_control = %q", dir, sub)
		}
	}
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(ParentCgroup, owned.Attr, buf); err != nil || string(buf[:n]) != ":parent" {
		t.Errorf("%s: mark %q, %v", ParentCgroup, buf[:max(n, 0)], err)
	}
	if st := vm.stop(30 * time.Second); st != 0 {
		t.Errorf("vmsup exited %d after s6-svc -d, want 0", st)
	}
}

// A VM's parent found with a controller not enabled for its children
// (the others are): vmsup enables it there, and the limit is applied.
func TestControllerEnabledInParent(t *testing.T) {
	requirePID1(t, "s6-svscan")
	all := []string{"cpu", "memory", "pids"}
	for _, tc := range []struct {
		controller, file, want string
		limits                 map[string]any
	}{
		{"memory", "memory.max", "67108864", map[string]any{"memory_max": "64M"}},
		{"pids", "pids.max", "64", map[string]any{"pids_max": 64}},
		{"cpu", "cpu.weight", "100", map[string]any{"cpu_weight": 100}},
	} {
		t.Run(tc.controller, func(t *testing.T) {
			parent := "/sys/fs/cgroup/hostimage-no-" + tc.controller
			if err := os.Mkdir(parent, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := os.Remove(parent); err != nil {
					t.Errorf("remove %s: %v", parent, err)
				}
			})
			var others []string
			for _, o := range all {
				if o != tc.controller {
					others = append(others, o)
				}
			}
			if err := cgroup.Enable(parent, others); err != nil {
				t.Fatal(err)
			}
			c := newConfig(t, parent, "no-"+tc.controller,
				map[string]any{"name": "a", "argv": []string{"/bin/sleep", "3600"}, "limits": tc.limits})
			vm := startS6(t, c, true)
			if got, err := cgroup.Read(filepath.Join(vm.Cgroup, "svc.a"), tc.file); err != nil || got != tc.want {
				t.Errorf("%s = %q, %v; want %q", tc.file, got, err, tc.want)
			}
			if st := vm.stop(30 * time.Second); st != 0 {
				t.Errorf("vmsup exited %d, want 0", st)
			}
		})
	}
}

// A refused write to an ancestor's cgroup.subtree_control (a parent that
// holds a process cannot enable a domain controller such as memory: "no
// internal processes") is 111 naming that file, and the process and the
// parent are left as they were.
func TestControllerWriteRefused(t *testing.T) {
	requirePID1(t, "s6-svscan")
	parent := "/sys/fs/cgroup/hostimage-busy"
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(parent) })
	sleeper := startIn(t, parent)
	c := newConfig(t, parent, "busy-parent",
		map[string]any{"name": "a", "argv": []string{"/bin/sleep", "3600"}, "limits": map[string]any{"memory_max": "64M"}})
	vm := startS6(t, c, false)
	if st := vm.waitDown(30 * time.Second); st != 111 {
		t.Fatalf("vmsup exited %d, want 111", st)
	}
	vm.waitLog(`cgroup: write "+memory" to `+parent+`/cgroup.subtree_control: device or resource busy`, 10*time.Second)
	if err := unix.Kill(sleeper, 0); err != nil {
		t.Errorf("the parent's process is gone: %v", err)
	}
}

// startIn starts a sleeping process in the cgroup dir and returns its
// PID; the test's cleanup kills it.
func startIn(t *testing.T, dir string) int {
	t.Helper()
	cmd := exec.Command("/bin/sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}
