package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"vmsup/internal/guest"
	"vmsup/internal/vmtest"
)

// Debian's nix-bin, single-user as root, offline: no nixbld group (build
// users off), the builds sandboxed.
var nixOptions = []string{"--option", "build-users-group", "", "--option", "sandbox", "true", "--option", "substituters", ""}

func nix(t *testing.T, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s: %v (scripts/install-deps installs nix-bin)", name, err)
	}
	cmd := exec.Command(name, append(append([]string{}, nixOptions...), args...)...)
	cmd.Dir = vmtest.Root()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// nixJSON evaluates a Nix expression strictly and decodes its JSON.
// (--read-write-mode: paths are copied into the store, not only hashed.)
func nixJSON(t *testing.T, expr string, v any) {
	t.Helper()
	out := nix(t, "nix-instantiate", "--eval", "--strict", "--json", "--read-write-mode", "-E", expr)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s: %v\n%s", expr, err, out)
	}
}

// nix/lib.nix turns a Nix attribute set into the VM's JSON without
// nixpkgs: nix/example.nix's is examples/work.json exactly, and passes
// vmsup validate.
func TestNixVMJSON(t *testing.T) {
	var text string
	nixJSON(t, `(import ./nix/lib.nix).vmJSON (import ./nix/example.nix {})`, &text)
	p := filepath.Join(t.TempDir(), "vm.json")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(vmtest.Bin(t, "vmsup"), "validate", p).CombinedOutput(); err != nil {
		t.Fatalf("vmsup validate of the Nix-made JSON: %v\n%s\n%s", err, out, text)
	}
	var got, want any
	json.Unmarshal([]byte(text), &got)
	b, err := os.ReadFile(filepath.Join(vmtest.Root(), "examples", "work.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("nix/example.nix is not examples/work.json:\n%s", text)
	}
}

// nix/package.nix evaluates against a stand-in buildGoModule that records
// its arguments: both binaries, static, and a vendorHash that is the NAR
// hash of `go mod vendor` for the committed go.mod and go.sum.
func TestNixPackage(t *testing.T) {
	var args struct {
		Pname       string            `json:"pname"`
		SubPackages []string          `json:"subPackages"`
		VendorHash  string            `json:"vendorHash"`
		Env         map[string]string `json:"env"`
		Src         string            `json:"src"`
	}
	nixJSON(t, `import ./nix/stand-in.nix`, &args)
	if args.Pname != "vmsup" || !reflect.DeepEqual(args.SubPackages, []string{"cmd/vmsup", "cmd/vmsup-exec"}) || args.Env["CGO_ENABLED"] != "0" {
		t.Errorf("buildGoModule's arguments: %+v", args)
	}
	for _, f := range []string{"go.mod", "go.sum", "cmd/vmsup/main.go", "cmd/vmsup-exec/main.go"} {
		if _, err := os.Stat(filepath.Join(args.Src, f)); err != nil {
			t.Errorf("src %s lacks %s", args.Src, f)
		}
	}
	if _, err := os.Stat(filepath.Join(args.Src, "bin")); err == nil {
		t.Errorf("src %s holds bin/", args.Src)
	}
	vendor := filepath.Join(t.TempDir(), "vendor")
	gomod := exec.Command("go", "mod", "vendor", "-o", vendor)
	gomod.Dir = vmtest.Root()
	if out, err := gomod.CombinedOutput(); err != nil {
		t.Fatalf("go mod vendor: %v\n%s", err, out)
	}
	hash := nix(t, "nix", "--extra-experimental-features", "nix-command", "hash", "path", vendor)
	if args.VendorHash != hash {
		t.Errorf("nix/package.nix: vendorHash = %q; go mod vendor's NAR hash is %q", args.VendorHash, hash)
	}
}

// nix/lib.nix's serviceDir, built by nix-build in the sandbox with the
// static vmsup as the builder (no shell), is an s6 service directory
// (with its log/) that runs the VM under s6-svscan: ready, the guest
// writes through virtiofs, s6-svc -d ends it with 0, nothing is left.
func TestNixServiceDirRunsVM(t *testing.T) {
	f := newFixture(t)
	if _, err := guest.SetupExamples(); err != nil {
		t.Fatal(err)
	}
	// A store path holding both binaries, as the package would.
	pkg := filepath.Join(t.TempDir(), "vmsup")
	os.MkdirAll(filepath.Join(pkg, "bin"), 0o755)
	for _, b := range []string{"vmsup", "vmsup-exec"} {
		if err := copyFile(vmtest.Bin(t, b), filepath.Join(pkg, "bin", b)); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(pkg, "bin", b), 0o755)
	}
	c := vmtest.NewConfig(t, "nix-work")
	logDir := filepath.Join(vmtest.SharedDir(t), "log")
	expr := `{ pkg, name, runtimeDir, cgroup, share, logDir }:
		(import ./nix/lib.nix).serviceDir {
			vmsup = builtins.path { path = /. + pkg; name = "vmsup"; };
			vm = import ./nix/example.nix { inherit name runtimeDir cgroup share; };
			inherit logDir;
		}`
	exprFile := filepath.Join(t.TempDir(), "servicedir.nix")
	os.WriteFile(exprFile, []byte(strings.ReplaceAll(expr, "./nix/", vmtest.Root()+"/nix/")), 0o644)
	t0 := time.Now()
	out := nix(t, "nix-build", "--no-out-link", exprFile,
		"--argstr", "pkg", pkg, "--argstr", "name", c["name"].(string),
		"--argstr", "runtimeDir", c["runtime_dir"].(string), "--argstr", "cgroup", c["cgroup"].(string),
		"--argstr", "share", f.share, "--argstr", "logDir", logDir)
	built := out[strings.LastIndexByte(out, '\n')+1:]
	t.Logf("nix-build (sandboxed) made %s in %v", built, time.Since(t0).Round(time.Millisecond))
	for _, name := range []string{"run", "finish", "notification-fd", "timeout-kill", "config.json", "log/run"} {
		if _, err := os.Stat(filepath.Join(built, name)); err != nil {
			t.Fatalf("the built service directory lacks %s", name)
		}
	}
	run, _ := os.ReadFile(filepath.Join(built, "run"))
	if !strings.Contains(string(run), built+"/config.json") || !strings.Contains(string(run), "/nix/store/") {
		t.Fatalf("run does not name the store's vmsup and config:\n%s", run)
	}
	if out, err := exec.Command(filepath.Join(pkg, "bin", "vmsup"), "validate", filepath.Join(built, "config.json")).CombinedOutput(); err != nil {
		t.Fatalf("validate the built config.json: %v\n%s", err, out)
	}

	// s6-supervise writes into its service directory: the store's copy
	// is read-only, so the scan directory gets a copy, as s6-rc makes.
	base, err := os.MkdirTemp("/run", "vmsup-e2e-nix-")
	if err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(base, "svc")
	if out, err := exec.Command("cp", "-R", built, staging).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	exec.Command("chmod", "-R", "u+w", staging).Run()
	vm := vmtest.Attach(t, vmtest.Config(c))
	s := startScan(t, base, c["name"].(string), staging)
	s.run("s6-svwait", "-U", "-t", "120000", s.svc)
	vm.PID1()
	current := filepath.Join(logDir, "current")
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(current)
		if strings.Contains(string(b), "vmm: "+guest.MarkerReady) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no GUEST-READY in %s:\n%s", current, b)
		}
	}
	if b, err := os.ReadFile(filepath.Join(f.share, guest.ExampleHello)); err != nil || string(b) != "written by the guest\n" {
		t.Fatalf("the guest's file: %q %v", b, err)
	}
	s.run("s6-svc", "-d", s.svc)
	s.run("s6-svwait", "-D", "-t", "60000", s.svc)
	vm.AssertClean(time.Second)
	// finish writes to s6-supervise's stderr (s6-svscan's), not the log.
	if !s.log.WaitFor("vmsup-finish: run exited 0\n", 5*time.Second) {
		t.Fatalf("finish did not see exit 0:\n%s", s.log.String())
	}
}
