//go:build hostimage

package hostimage

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"vmsup/cgroup"
	"vmsup/internal/vmtest"
)

// The runner's last step: after every VM the other steps ran (under s6
// or straight from the tests), no cgroup is left anywhere below the
// VMs' parents, no runtime directory and no mount under /run.
func TestNoCgroupLeft(t *testing.T) {
	requirePID1(t, "s6-svscan")
	parents := children(t, "/sys/fs/cgroup")
	for _, p := range []string{ParentCgroup, vmtest.CgroupParent(t)} {
		if !slices.Contains(parents, p) {
			t.Fatalf("no %s: the steps before this one started no VM there", p)
		}
	}
	for _, p := range parents {
		assertNoChildren(t, p)
		if pop, err := cgroup.Populated(p); err != nil || pop {
			t.Errorf("%s populated %v (%v)", p, pop, err)
		}
	}
	t.Logf("VM parents, all empty: %v", parents)
	for _, dir := range []string{vmtest.RunDir(), "/run/vmsup", "/run/hostimage"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			t.Errorf("left in %s: %s", dir, e.Name())
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], "/run/") && filepath.Dir(f[4]) != "/" {
			t.Errorf("mount left: %s", l)
		}
	}
}
