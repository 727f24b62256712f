package cgroup_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"vmsup/cgroup"
	"vmsup/internal/vmtest"
)

// Destroy's two paths: a tree with processes in it and below is killed
// and removed, deepest first; an empty tree (the usual end, its
// processes already reaped) is removed without a kill, a child cgroup
// included (the first rmdir fails on it and the tree is walked).
func TestDestroy(t *testing.T) {
	vmtest.RequireRoot(t)
	parent := filepath.Join(vmtest.CgroupParent(t), "destroy")
	t.Cleanup(func() { os.Remove(parent) })
	for _, populated := range []bool{true, false} {
		dir := filepath.Join(parent, map[bool]string{true: "populated", false: "empty"}[populated])
		child := filepath.Join(dir, "child")
		if err := os.MkdirAll(child, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(child); os.Remove(dir) })
		var cmds []*exec.Cmd
		if populated {
			for _, d := range []string{dir, child} {
				cmds = append(cmds, startIn(t, d))
			}
		}
		if err := cgroup.Destroy(dir, 10*time.Second); err != nil {
			t.Fatalf("populated %v: %v", populated, err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("populated %v: %s still there (%v)", populated, dir, err)
		}
		for _, c := range cmds {
			c.Wait()
			if ws := c.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Errorf("pid %d ended %v, want killed by SIGKILL", c.Process.Pid, c.ProcessState)
			}
		}
	}
	if err := cgroup.Destroy(filepath.Join(parent, "missing"), time.Second); err != nil {
		t.Errorf("a missing cgroup: %v, want nil", err)
	}
}

// startIn starts a sleep in the cgroup dir.
func startIn(t *testing.T, dir string) *exec.Cmd {
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	cmd := exec.Command("/bin/sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd
}
