package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/internal/guest"
	"vmsup/internal/vmtest"
)

// The configs in examples/ validate as written and run on this machine
// once guest.SetupExamples has put what they name in place (what
// `make demo` does). To run beside other checkouts' tests, the run
// renames the VM (name, runtime dir, cgroup) and changes nothing else.
func TestExamples(t *testing.T) {
	vmtest.RequireRoot(t)
	if _, err := guest.SetupExamples(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"work", "desk"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(vmtest.Root(), "examples", name+".json")
			if out, err := exec.Command(vmtest.Bin(t, "vmsup"), "validate", path).CombinedOutput(); err != nil {
				t.Fatalf("vmsup validate %s: %v\n%s", path, err, out)
			}
			c := renamedExample(t, path, name, "ex-"+name)
			share := guest.ExampleShares[name].Dir
			vm := vmtest.Start(t, c, vmtest.Options{Notify: true})
			vm.PID1()
			b := make([]byte, 1)
			if n, _ := vm.Notify.Read(b); n != 1 {
				t.Fatalf("no readiness:\n%s", vm.Stderr.String())
			}
			vm.WaitFor("vmm: "+guest.MarkerReady, 120*time.Second)
			if got, err := os.ReadFile(filepath.Join(share, guest.ExampleHello)); err != nil || string(got) != "written by the guest\n" {
				t.Fatalf("the guest's file: %q %v", got, err)
			}
			if name == "desk" {
				got, err := os.ReadFile(filepath.Join(share, guest.ExampleDiskFile))
				if err != nil || string(got) != guest.ExampleDiskLine+"\n" {
					t.Fatalf("the guest did not read its vhost-user-blk disk: %q %v\n%s", got, err, vm.Stderr.String())
				}
			}
			assertOwnUIDs(t, vm, c)
			vm.Signal(syscall.SIGTERM)
			if st := vm.Wait(60 * time.Second); st != 0 {
				t.Fatalf("status %d, want 0:\n%s", st, vm.Stderr.String())
			}
			vm.AssertClean(time.Second)
			assertQuietEnd(t, vm.Stderr.String())
		})
	}
}

// renamedExample reads the example at path and gives VM old the name
// new, its runtime dir and cgroup under the tests' own.
func renamedExample(t *testing.T, path, old, new string) vmtest.Config {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := vmtest.NewConfig(t, new)
	rt := c["runtime_dir"].(string)
	s := strings.ReplaceAll(string(b), "/run/vmsup/"+old+"/", rt+"/")
	var doc vmtest.Config
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["name"] != old {
		t.Fatalf("%s: name %v, want %s", path, doc["name"], old)
	}
	doc["name"], doc["runtime_dir"], doc["cgroup"] = new, rt, c["cgroup"]
	return doc
}

// assertOwnUIDs checks each service runs as the uid its config gives,
// and no two share one.
func assertOwnUIDs(t *testing.T, vm *vmtest.VM, c vmtest.Config) {
	t.Helper()
	seen := map[string]string{}
	for _, svc := range c["services"].([]any) {
		m := svc.(map[string]any)
		name := m["name"].(string)
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", waitProc(t, vm, name)))
		var uid string
		for _, l := range strings.Split(string(st), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
				uid = f[1]
			}
		}
		if want := jsonNumber(m["uid"]); uid != want {
			t.Errorf("%s runs as uid %s, want %s", name, uid, want)
		}
		if other, ok := seen[uid]; ok {
			t.Errorf("%s and %s share uid %s", name, other, uid)
		}
		seen[uid] = name
	}
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
