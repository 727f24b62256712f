package check

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"vmsup/cgroup"
	"vmsup/config"

	"golang.org/x/sys/unix"

	"vmsup/landlock"
)

// These tests run against the real kernel of the machine. They compute
// their expectations from the host's own files, independently of the
// package, so they hold on the hybrid developer/CI machines and on the
// pure-v2 host-image guests alike.

func feature(t *testing.T, r Report, name string) Feature {
	t.Helper()
	for _, f := range r.Features {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("Probe reported no feature %q; got %+v", name, r.Features)
	return Feature{}
}

// mountinfoCgroup2 finds the cgroup2 mount point with a plain reading of
// /proc/self/mountinfo (fstype is the first field after " - ").
func mountinfoCgroup2(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		i := strings.Index(line, " - cgroup2 ")
		if i < 0 {
			continue
		}
		f := strings.Fields(line[:i])
		point := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(f[4])
		if f[3] == "/" {
			return point
		}
		points = append(points, point)
	}
	if len(points) == 0 {
		t.Fatal("no cgroup2 mount in /proc/self/mountinfo: this machine must have one")
	}
	return points[0]
}

func TestLandlock(t *testing.T) {
	abi := landlock.ABI()
	if abi < landlock.ScopeABI {
		t.Fatalf("landlock.ABI() = %d, the test machines have >= %d", abi, landlock.ScopeABI)
	}
	r := Probe()
	for _, name := range []string{"landlock-scopes", "landlock-fs"} {
		f := feature(t, r, name)
		if !f.OK {
			t.Errorf("%s missing: %+v", name, f)
		}
		if want := "ABI " + strconv.Itoa(abi); !strings.HasPrefix(f.Detail, want) {
			t.Errorf("%s detail %q does not start with %q", name, f.Detail, want)
		}
	}
	if !feature(t, r, "landlock-scopes").Required || feature(t, r, "landlock-fs").Required {
		t.Error("landlock-scopes must be required and landlock-fs informational")
	}
}

func TestCgroup2Mount(t *testing.T) {
	want := mountinfoCgroup2(t)
	got, err := cgroup.Mount()
	if err != nil || got != want {
		t.Fatalf("cgroup.Mount() = %q, %v; mountinfo says %q", got, err, want)
	}
	f := feature(t, Probe(), "cgroup2")
	if !f.OK || !f.Required || f.Detail != "mounted at "+want {
		t.Errorf("cgroup2 = %+v, want ok, required, mounted at %s", f, want)
	}
}

func TestControllers(t *testing.T) {
	mount := mountinfoCgroup2(t)
	b, err := os.ReadFile(filepath.Join(mount, "cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	have := strings.Fields(string(b))
	disables := map[string]string{
		"memory":  "limits.memory_max, limits.memory_high",
		"pids":    "limits.pids_max",
		"cpu":     "limits.cpu_weight, limits.cpu_max",
		"io":      "",
		"hugetlb": "",
	}
	r := Probe()
	for name, dis := range disables {
		f := feature(t, r, name)
		want := slices.Contains(have, name)
		if f.OK != want || f.Required || f.Disables != dis {
			t.Errorf("%s = %+v; %s/cgroup.controllers is %q", name, f, mount, have)
		}
		if !want && f.Detail != "not in cgroup.controllers of "+mount {
			t.Errorf("%s detail %q", name, f.Detail)
		}
	}
}

func TestCgroupKill(t *testing.T) {
	f := feature(t, Probe(), "cgroup.kill")
	if !f.OK || !f.Required {
		t.Fatalf("cgroup.kill = %+v, want present (Linux >= 5.14)", f)
	}
	// When we live in a non-root cgroup the file itself is the evidence.
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok && p != "/" {
			if _, err := os.Stat(filepath.Join(mountinfoCgroup2(t), p, "cgroup.kill")); err != nil {
				t.Errorf("own cgroup %s: %v", p, err)
			}
		}
	}
}

func TestNamespacesAndSyscalls(t *testing.T) {
	r := Probe()
	for _, name := range []string{"pid-namespace", "mount-namespace", "pidfd", "clone3-into-cgroup", "mount_setattr"} {
		if f := feature(t, r, name); !f.OK || !f.Required {
			t.Errorf("%s = %+v, want present and required (root on Linux 6.18)", name, f)
		}
	}
}

// Probe must leave nothing behind: the pidfd it opens is closed.
func TestProbeLeaksNoFD(t *testing.T) {
	Probe() // warm up anything opened once
	before := countFDs(t)
	for range 5 {
		Probe()
	}
	if after := countFDs(t); after > before {
		t.Errorf("open fds grew from %d to %d", before, after)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func TestMainText(t *testing.T) {
	var out bytes.Buffer
	if code := Main(false, &out); code != 0 {
		t.Fatalf("Main = %d, want 0:\n%s", code, out.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	// The last line sums up.
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "summary: ") || !strings.HasSuffix(last, "; everything vmsup run requires is present") {
		t.Errorf("summary line %q", last)
	}
	lines = lines[:len(lines)-1]
	if n := len(Probe().Features); len(lines) != n {
		t.Fatalf("%d lines for %d features:\n%s", len(lines), n, out.String())
	}
	// Columns line up: every detail starts at the same offset.
	col := -1
	for _, line := range lines {
		verdict, rest, _ := strings.Cut(line, " ")
		if verdict != "ok" && verdict != "missing" {
			t.Errorf("line %q: verdict %q", line, verdict)
		}
		name := strings.Fields(rest)[0]
		at := strings.Index(line, name) + len(name)
		at += len(line[at:]) - len(strings.TrimLeft(line[at:], " "))
		if col < 0 {
			col = at
		} else if at != col {
			t.Errorf("line %q: detail at column %d, others at %d", line, at, col)
		}
	}
	if !strings.Contains(out.String(), "ok      landlock-scopes ") {
		t.Errorf("no aligned landlock-scopes line:\n%s", out.String())
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := Probe()
	var out bytes.Buffer
	if code := write(r, true, &out); code != 0 {
		t.Fatalf("write = %d:\n%s", code, out.String())
	}
	var got struct {
		OK       bool      `json:"ok"`
		Features []Feature `json:"features"`
		Refusals []string  `json:"refusals"`
		Missing  []string  `json:"missing_required"`
		Summary  string    `json:"summary"`
	}
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if !got.OK || !reflect.DeepEqual(got.Features, r.Features) {
		t.Errorf("round trip: got %+v, want %+v", got, r.Features)
	}

	// Main itself prints the same shape, with lower-case keys.
	out.Reset()
	if code := Main(true, &out); code != 0 {
		t.Fatalf("Main(json) = %d", code)
	}
	var raw map[string]any
	if err := json.Unmarshal(out.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	first := raw["features"].([]any)[0].(map[string]any)
	for _, key := range []string{"name", "ok", "required", "detail", "disables"} {
		if _, ok := first[key]; !ok {
			t.Errorf("feature object lacks %q: %v", key, first)
		}
	}
	if raw["ok"] != true {
		t.Errorf(`"ok" = %v`, raw["ok"])
	}
}

// A kernel below ABI 6 (simulated by the ABI cap every vmsup command
// honours) cannot scope: check must say so and exit 111.
func TestLandlockCapped(t *testing.T) {
	t.Setenv(landlock.ABIMaxEnv, "5")
	r := Probe()
	f := feature(t, r, "landlock-scopes")
	if f.OK || r.OK() {
		t.Fatalf("with ABI capped at 5: landlock-scopes = %+v, report ok %v", f, r.OK())
	}
	if !strings.Contains(f.Detail, "ABI 5") || f.Disables == "" {
		t.Errorf("landlock-scopes = %+v", f)
	}
	if fs := feature(t, r, "landlock-fs"); !fs.OK {
		t.Errorf("landlock-fs must still work at ABI 5: %+v", fs)
	}

	var out bytes.Buffer
	if code := Main(false, &out); code != 111 {
		t.Errorf("Main = %d, want 111:\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "missing landlock-scopes ") {
		t.Errorf("no missing landlock-scopes line:\n%s", out.String())
	}
	out.Reset()
	if code := Main(true, &out); code != 111 {
		t.Errorf("Main(json) = %d, want 111", code)
	}
	var got struct {
		OK bool `json:"ok"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got.OK {
		t.Errorf("json ok = %v, %v; want false", got.OK, err)
	}
}

func TestKernelVersion(t *testing.T) {
	for in, want := range map[string]version{
		"6.18.44-fc-v769":    {6, 18},
		"5.14.0-427.el9":     {5, 14},
		"6.12.12+bpo-amd64":  {6, 12},
		"garbage":            {0, 0},
		"5.7-rc1":            {5, 7},
		"4.19.0-27-amd64":    {4, 19},
		"6.1.0-31-cloud-amd": {6, 1},
	} {
		if got := parseRelease(in); got != want {
			t.Errorf("parseRelease(%q) = %v, want %v", in, got, want)
		}
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	if v := kernelVersion(); !v.atLeast(5, 14) || v.atLeast(99, 0) {
		t.Errorf("kernelVersion() = %v for %q", v, unix.ByteSliceToString(u.Release[:]))
	}
	if !(version{5, 14}).atLeast(5, 7) || (version{4, 20}).atLeast(5, 7) || !(version{6, 0}).atLeast(5, 14) {
		t.Error("atLeast compares wrongly")
	}
}

// A missing required feature is marked as required by run, and the
// summary names it; refusals of a config get a line each and make the
// status 111.
func TestSummaryAndRefusals(t *testing.T) {
	r := Report{Features: []Feature{
		{Name: "pidfd", OK: false, Required: true, Detail: "pidfd_open: ENOSYS", Disables: runDisabled},
		{Name: "memory", OK: false, Detail: "not there", Disables: "limits.memory_max"},
		{Name: "cgroup2", OK: true, Required: true, Detail: "mounted"},
	}}
	var out bytes.Buffer
	if code := writeReport(r, []string{"services[0].limits: needs memory"}, false, &out); code != exitMissing {
		t.Errorf("status %d", code)
	}
	for _, want := range []string{
		"missing pidfd    pidfd_open: ENOSYS: required by vmsup run\n",
		"missing memory   not there: disables limits.memory_max\n",
		"refused config   services[0].limits: needs memory\n",
		"summary: 1 of 3 features present; vmsup run cannot work without pidfd; run would refuse this config (1 reason)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
}

// `vmsup check CONFIG`: where the cgroup2 root offers no memory
// controller (the development machine), a config with memory_max is
// refused, naming the limit; where it does (the host image), it is not.
func TestMainCLIConfig(t *testing.T) {
	memory := false
	for _, f := range Probe().Features {
		if f.Name == "memory" {
			memory = f.OK
		}
	}
	vm, errs := config.Parse([]byte(`{"name":"x","uid":1,"gid":1,"services":[{"name":"a","argv":["/bin/true"],"limits":{"memory_max":"1G"}}]}`))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var out bytes.Buffer
	MainCLI(vm, nil, false, &out)
	if refused := strings.Contains(out.String(), "services[0].limits: needs the memory controller"); refused == memory {
		t.Errorf("memory controller present: %v, but:\n%s", memory, out.String())
	}
	if !strings.Contains(out.String(), "vmsup-exec ") {
		t.Errorf("no vmsup-exec line:\n%s", out.String())
	}
}
