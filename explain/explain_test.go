package explain

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vmsup/config"
	"vmsup/landlock"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// host is the kernel the golden files are written for: this project's
// machines (Linux 6.18, Landlock ABI 7).
var host = Host{Release: "6.18.0", LandlockABI: 7}

func load(t *testing.T, name string) *config.VM {
	t.Helper()
	vm, errs := config.Load(filepath.Join("testdata", name+".json"))
	if len(errs) > 0 {
		t.Fatalf("%s: %v", name, errs)
	}
	return vm
}

// The report for the contract's example (its connect, taps, syscalls
// and network included) and for services that share a uid, against
// golden files: the text is the specification.
func TestGolden(t *testing.T) {
	for _, name := range []string{"contract", "same-uid"} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			Print(&b, AnalyseOn(load(t, name), host))
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				os.WriteFile(golden, b.Bytes(), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if b.String() != string(want) {
				t.Errorf("differs from %s (go test -update, then review the diff):\n%s", golden, b.String())
			}
		})
	}
}

// --json: parsed back, the same-uid pairs name both sides and the exact
// operations; capabilities come with what they grant.
func TestJSON(t *testing.T) {
	b, err := json.Marshal(AnalyseOn(load(t, "same-uid"), host))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Kernel struct {
			LandlockABI int `json:"landlock_abi"`
		} `json:"kernel"`
		Services []struct {
			Name         string `json:"name"`
			Capabilities []struct{ Name, Grants string }
			Lacks        []struct{ Name string } `json:"lacks"`
			Network      []string                `json:"network"`
			Syscalls     []string                `json:"syscalls"`
			Devices      []string                `json:"devices"`
			Verdict      string                  `json:"verdict"`
		} `json:"services"`
		Pairs []struct {
			Members    []string `json:"members"`
			UID        uint32   `json:"uid"`
			Operations []struct {
				Call, Effect string
			} `json:"operations"`
		} `json:"same_uid_pairs"`
		Filter []struct {
			Name    string   `json:"name"`
			Refuses []string `json:"refuses"`
		} `json:"syscall_filter"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Kernel.LandlockABI != 7 || len(r.Services) != 3 || len(r.Pairs) != 2 {
		t.Fatalf("%s", b)
	}
	if len(r.Filter) == 0 || r.Filter[0].Name != "@mount" || len(r.Filter[0].Refuses) == 0 {
		t.Errorf("syscall_filter: %+v", r.Filter)
	}
	for _, s := range r.Services {
		if len(s.Network) == 0 || !strings.HasPrefix(s.Network[0], "none:") || len(s.Syscalls) == 0 || len(s.Devices) == 0 {
			t.Errorf("%s: network %q, syscalls %q, devices %q", s.Name, s.Network, s.Syscalls, s.Devices)
		}
	}
	if c := r.Services[0].Capabilities; len(c) != 1 || c[0].Name != "CAP_SYS_NICE" || !strings.Contains(c[0].Grants, "renices") {
		t.Errorf("gpu's capabilities: %+v", c)
	}
	calls := map[string]bool{}
	for _, p := range r.Pairs {
		if p.Members[0] == "gpu" && p.Members[1] == "router" && p.UID == 3000 {
			for _, o := range p.Operations {
				calls[o.Call] = true
			}
		}
	}
	for _, want := range []string{
		"prlimit(2): gpu on router", "prlimit(2): router on gpu",
		"setpriority(2): gpu on router", "sched_setaffinity(2): gpu on router", "ioprio_set(2): gpu on router",
		"write /proc/PID/oom_score_adj: router on gpu",
		"connect(2) /run/vmsup/pair/gpu.sock: router on gpu",
	} {
		if !calls[want] {
			t.Errorf("no %q among %v", want, calls)
		}
	}
	// router lacks gpu's CAP_SYS_NICE: the kernel (cap_safe_nice) stops
	// it renicing, pinning or deprioritising gpu.
	if calls["setpriority(2): router on gpu"] || calls["sched_setaffinity(2): router on gpu"] {
		t.Errorf("router may not renice or pin gpu: %v", calls)
	}
	if r.Pairs[0].Members[0] != "vmsup (PID 1)" || r.Pairs[0].Members[1] != "helper" {
		t.Errorf("the uid 0 service and PID 1: %+v", r.Pairs[0])
	}
}

// On a kernel without Landlock scopes, a "required" config is refused,
// and the report says so; on this machine's kernel the ABI is the one
// vmsup would use.
func TestRefusalsAndThisHost(t *testing.T) {
	vm := load(t, "contract")
	if got := Refusals(AnalyseOn(vm, Host{Release: "6.6.0", LandlockABI: 4})); len(got) != 1 || !strings.Contains(got[0], "cannot scope signals") {
		t.Errorf("refusals on ABI 4: %q", got)
	}
	if got := Refusals(AnalyseOn(vm, host)); len(got) != 0 {
		t.Errorf("refusals on ABI 7: %q", got)
	}
	if r := Analyse(vm); r.Kernel.LandlockABI != landlock.ABI() || r.Kernel.Release == "" {
		t.Errorf("this host: %+v", r.Kernel)
	}
}

// Every capability vmsup knows is described.
func TestEveryCapabilityDescribed(t *testing.T) {
	for _, name := range config.CapabilityNames() {
		if grants[name] == "" {
			t.Errorf("%s: no description", name)
		}
	}
}
