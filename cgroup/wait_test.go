package cgroup_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vmsup/cgroup"
	"vmsup/internal/vmtest"
)

// WaitEmpty returns as soon as the last process of the cgroup is gone,
// woken by the kernel's event on cgroup.events, and holds no inotify
// instance while it waits: those are limited per user (128 by default),
// and 1,000 VMs stopping together would exhaust them.
func TestWaitEmptyWithoutInotify(t *testing.T) {
	vmtest.RequireRoot(t)
	dir := filepath.Join(vmtest.CgroupParent(t), "wait-empty")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	cmd := startIn(t, dir)

	done := make(chan error, 1)
	go func() { done <- cgroup.WaitEmpty(dir, time.Minute) }()
	time.Sleep(200 * time.Millisecond) // let it reach its wait
	select {
	case err := <-done:
		t.Fatalf("WaitEmpty returned with a process left: %v", err)
	default:
	}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, e := range fds {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.Contains(l, "inotify") {
			t.Errorf("fd %s is an inotify instance (%s) while WaitEmpty waits", e.Name(), l)
		}
	}
	killed := time.Now()
	cmd.Process.Kill()
	cmd.Wait()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("returned %v after the kill", time.Since(killed))
	case <-time.After(10 * time.Second):
		t.Fatal("WaitEmpty still waits 10 s after the cgroup's last process died (pid " + strconv.Itoa(cmd.Process.Pid) + ")")
	}
}
