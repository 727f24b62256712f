//go:build hostimage

package hostimage

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"vmsup/cgroup"
	"vmsup/internal/vmtest"
)

// A service that writes more into its private /tmp than its memory_max is
// killed: tmpfs pages are charged to the cgroup of the process that
// writes them, so the write is what exceeds the limit (dd itself needs
// 1 MiB). Its sibling, which holds 16M in its own /tmp under the same
// limit, is untouched: it runs until the VM stops it and exits 0 from its
// SIGTERM trap. vmsup ends with 1 (a service died), which s6 records.
func TestMemoryMaxChargesTmpfs(t *testing.T) {
	oomBefore := eventCount(t, ParentCgroup, "memory.events", "oom_kill")
	c := newConfig(t, ParentCgroup, "tmpfs")
	rd := c["runtime_dir"].(string)
	c["services"] = []map[string]any{
		{"name": "bystander", "private_tmp": "24M", "limits": map[string]any{"memory_max": "32M"},
			"ready": map[string]any{"exists": rd + "/bystander.up"},
			"argv": []string{"/bin/sh", "-c", `trap 'echo stopping; exit 0' TERM
dd if=/dev/zero of=/tmp/f bs=1M count=16 2>/dev/null && echo "wrote 16M to /tmp"
touch ` + rd + `/bystander.up
sleep 3600 & wait`}},
		{"name": "hog", "after": []string{"bystander"}, "private_tmp": "128M", "limits": map[string]any{"memory_max": "32M"},
			"argv": []string{"/bin/dd", "if=/dev/zero", "of=/tmp/fill", "bs=1M", "count=64"}},
	}
	vm := startS6(t, c, false)
	if st := vm.waitDown(60 * time.Second); st != 1 {
		t.Fatalf("vmsup exited %d, want 1 (a service died):\n%s", st, vm.waitLog("", 0))
	}
	out := vm.waitLog("", 0)
	for _, want := range []string{
		"bystander: wrote 16M to /tmp",
		"hog: killed by SIGKILL",
		"bystander: stopping",
		"bystander: exited with status 0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(out, "hog: exited with status 0") {
		t.Errorf("dd wrote 64M into /tmp under a 32M memory_max: the tmpfs was not charged to the service")
	}
	// memory.events of the parent counts its descendants' OOM kills and
	// outlives the VM's cgroups: exactly one, and not the bystander's.
	if got := eventCount(t, ParentCgroup, "memory.events", "oom_kill") - oomBefore; got != 1 {
		t.Errorf("%d OOM kills under %s, want 1 (the hog)", got, ParentCgroup)
	}
	if t.Failed() {
		t.Logf("log:\n%s", out)
	}
}

// pids_max contains a fork storm: the storm gets at most pids_max tasks
// (its Go threads included) and every other fork fails with EAGAIN,
// while vmsup goes on to start a sibling that forks freely.
func TestPidsMaxContainsForkStorm(t *testing.T) {
	const limit, storm, calm = 24, 200, 10
	c := newConfig(t, ParentCgroup, "forkstorm")
	rd := c["runtime_dir"].(string)
	c["services"] = []map[string]any{
		{"name": "storm", "limits": map[string]any{"pids_max": limit},
			"argv":  []string{vmtest.Bin(t, "testprog"), "forkstorm", strconv.Itoa(storm), rd + "/storm.done"},
			"ready": map[string]any{"exists": rd + "/storm.done"}},
		{"name": "calm", "after": []string{"storm"},
			"argv": []string{"/bin/sh", "-c", fmt.Sprintf(`i=0; while [ $i -lt %d ]; do sleep 3600 & i=$((i+1)); done; echo "forked $i"; wait`, calm)}},
	}
	vm := startS6(t, c, true)
	out := vm.waitLog("calm: forked", 30*time.Second)
	m := regexp.MustCompile(`storm: forkstorm: started (\d+) of (\d+), refused (\d+) \(first refusal: (.*)\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no forkstorm line:\n%s", out)
	}
	started, _ := strconv.Atoi(m[1])
	refused, _ := strconv.Atoi(m[3])
	if started >= limit || refused == 0 || started+refused != storm || !strings.HasSuffix(m[4], "[EAGAIN]") {
		t.Errorf("storm: started %d, refused %d (%s); want fewer than %d started, the rest refused with EAGAIN", started, refused, m[4], limit)
	}
	stormCg := filepath.Join(vm.Cgroup, "svc.storm")
	if cur, max := readInt(t, stormCg, "pids.current"), readInt(t, stormCg, "pids.max"); max != limit || cur > limit {
		t.Errorf("storm's pids.current %d, pids.max %d; want at most %d", cur, max, limit)
	}
	if n := eventCount(t, stormCg, "pids.events", "max"); n < refused {
		t.Errorf("pids.events max %d, want at least the %d refusals", n, refused)
	}
	if !strings.Contains(out, fmt.Sprintf("calm: forked %d", calm)) {
		t.Errorf("the sibling could not fork:\n%s", out)
	}
	if cur := readInt(t, filepath.Join(vm.Cgroup, "svc.calm"), "pids.current"); cur != calm+1 {
		t.Errorf("calm's pids.current %d, want %d", cur, calm+1)
	}
	if st := vm.stop(30 * time.Second); st != 0 {
		t.Errorf("vmsup exited %d after s6-svc -d, want 0", st)
	}
}

// Every limit reaches its cgroup file (read back from the services'
// cgroups), and cpu.max is enforced: a busy service is throttled.
func TestLimitsReadBack(t *testing.T) {
	c := newConfig(t, ParentCgroup, "limits",
		map[string]any{"name": "busy", "argv": []string{"/bin/sh", "-c", "while :; do :; done"},
			"limits": map[string]any{"cpu_weight": 50, "cpu_max": "20000 100000", "memory_max": "48M", "pids_max": 8}},
		map[string]any{"name": "idle", "argv": []string{"/bin/sleep", "3600"},
			"limits": map[string]any{"cpu_weight": 200, "cpu_max": "max 50000", "memory_high": "16M", "memory_max": "max"}})
	vm := startS6(t, c, true)
	for _, w := range []struct{ svc, file, want string }{
		{"busy", "cpu.weight", "50"}, {"busy", "cpu.max", "20000 100000"},
		{"busy", "memory.max", "50331648"}, {"busy", "memory.high", "max"}, {"busy", "pids.max", "8"},
		{"idle", "cpu.weight", "200"}, {"idle", "cpu.max", "max 50000"},
		{"idle", "memory.max", "max"}, {"idle", "memory.high", "16777216"}, {"idle", "pids.max", "max"},
	} {
		if got, err := cgroup.Read(filepath.Join(vm.Cgroup, "svc."+w.svc), w.file); err != nil || got != w.want {
			t.Errorf("%s %s = %q, %v; want %q", w.svc, w.file, got, err, w.want)
		}
	}
	busy := filepath.Join(vm.Cgroup, "svc.busy")
	waitFor(t, 20*time.Second, "throttling of the busy service", func() bool {
		return statCount(t, busy, "nr_throttled") >= 3 && statCount(t, busy, "throttled_usec") > 0
	})
	if n := statCount(t, filepath.Join(vm.Cgroup, "svc.idle"), "nr_throttled"); n != 0 {
		t.Errorf("the idle service was throttled %d times", n)
	}
	if st := vm.stop(30 * time.Second); st != 0 {
		t.Errorf("vmsup exited %d after s6-svc -d, want 0", st)
	}
}

func readInt(t *testing.T, dir, file string) int {
	t.Helper()
	s, err := cgroup.Read(dir, file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s/%s: %q", dir, file, s)
	}
	return n
}

func statCount(t *testing.T, dir, key string) int {
	t.Helper()
	return eventCount(t, dir, "cpu.stat", key)
}
