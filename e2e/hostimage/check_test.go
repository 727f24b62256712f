//go:build hostimage

package hostimage

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"vmsup/internal/vmtest"
)

// `vmsup check --json` on the host image: every feature present, exit 0,
// Landlock ABI 6 or 10 (asked of the kernel here directly, not through vmsup's
// code), cgroup2 at /sys/fs/cgroup and every controller the kernel has
// reported present, memory, pids and cpu among them.
func TestCheckReport(t *testing.T) {
	requirePID1(t, "s6-svscan")
	// The tier boots two kernels: trixie's 6.12 (ABI 6) and sid's 7.2
	// (ABI 10).
	var u unix.Utsname
	unix.Uname(&u)
	rel := unix.ByteSliceToString(u.Release[:])
	wantABI := map[bool]uintptr{false: 6, true: 10}[strings.HasPrefix(rel, "7.2.")]
	if !strings.HasPrefix(rel, "6.12.") && !strings.HasPrefix(rel, "7.2.") {
		t.Fatalf("kernel %s, want Linux 6.12 or 7.2", rel)
	}
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 || abi != wantABI {
		t.Fatalf("the kernel's Landlock ABI is %d (%v); Linux %s has %d", abi, errno, rel, wantABI)
	}
	b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil {
		t.Fatal(err)
	}
	have := strings.Fields(string(b))
	for _, c := range []string{"memory", "pids", "cpu"} {
		if !slices.Contains(have, c) {
			t.Fatalf("the host image lacks the %s controller: %v", c, have)
		}
	}

	cmd := exec.Command(vmtest.Bin(t, "vmsup"), "check", "--json")
	out, err := cmd.Output()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("vmsup check --json: %v, want exit 0:\n%s", err, out)
	}
	var r struct {
		OK       bool `json:"ok"`
		Features []struct {
			Name   string `json:"name"`
			OK     bool   `json:"ok"`
			Detail string `json:"detail"`
		} `json:"features"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	seen := map[string]string{}
	// What a kernel before 7.2 lacks: informational features.
	later := map[string]bool{"landlock-tsync": wantABI >= 8, "landlock-connect": wantABI >= 9, "landlock-udp": wantABI >= 10}
	for _, f := range r.Features {
		if want, ok := later[f.Name]; ok {
			if f.OK != want {
				t.Errorf("%s: ok %v on ABI %d: %s", f.Name, f.OK, wantABI, f.Detail)
			}
			delete(later, f.Name)
			continue
		}
		if !f.OK {
			t.Errorf("%s reported missing: %s", f.Name, f.Detail)
		}
		seen[f.Name] = f.Detail
	}
	want := map[string]string{
		"landlock-scopes": fmt.Sprintf("ABI %d", wantABI),
		"landlock-fs":     fmt.Sprintf("ABI %d", wantABI),
		"cgroup2":         "mounted at /sys/fs/cgroup",
		"seccomp-filter":  "filter mode with errno",
	}
	// check reports these controllers; the kernel has each of them here.
	for _, c := range []string{"memory", "pids", "cpu", "io", "hugetlb"} {
		if !slices.Contains(have, c) {
			t.Errorf("the kernel lacks %s", c)
		}
		want[c] = "in cgroup.controllers of /sys/fs/cgroup"
	}
	for name, prefix := range want {
		if d, ok := seen[name]; !ok || !strings.HasPrefix(d, prefix) {
			t.Errorf("%s: %q, want %q...", name, d, prefix)
		}
	}
	if !r.OK {
		t.Errorf(`"ok" is false`)
	}
	if t.Failed() {
		t.Logf("vmsup check --json:\n%s", out)
	}
}
