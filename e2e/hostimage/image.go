// Package hostimage is the host-image test tier: it builds an image of a
// Spectrum-like host and boots it under qemu-system-x86_64 -accel tcg, so
// that what the development machine cannot show (cgroup v2 with the
// memory, pids and cpu controllers; Landlock ABI 6) is proven on a real
// kernel.
//
// The image is Debian trixie's cloud kernel (Linux 6.12, internal/guest)
// and an initramfs built here: busybox; an early init (InitScript) that
// mounts proc, sys, devtmpfs, cgroup2, securityfs and a tmpfs on /run,
// enables every controller for the root cgroup's children and execs
// s6-svscan as PID 1; Debian's s6 programs with their shared libraries;
// the static vmsup, vmsup-exec and testprog; and the test binaries of the
// packages in Steps (`go test -c`). One s6 service, "runner", runs the
// steps one after the other (RunnerScript), prints their `-test.v`
// output on the serial console and powers the guest off. The host-side
// TestHostImage reads that console: its verdict is the in-guest tests'.
//
// The guest-only tests of this package (build tag hostimage, so `go test
// ./...` on the host does not compile them) start vmsup the way a host
// image does: from a service directory written by `vmsup s6-servicedir`
// and linked into PID 1's scan directory.
package hostimage

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"vmsup/internal/guest"
)

// Paths inside the guest.
const (
	BinDir   = "/opt/vmsup/bin"    // vmsup, vmsup-exec, testprog, the *.test binaries
	Runner   = "/opt/vmsup/runner" // RunnerScript
	ScanDir  = "/run/service"      // s6-svscan's scan directory (PID 1)
	services = "/etc/hostimage/service"
	// ParentCgroup is the cgroup under which the guest-only tests put
	// their VMs: the host image creates it with the controllers VMs
	// need, as a Spectrum host does for its VMs.
	ParentCgroup = "/sys/fs/cgroup/hostimage"
)

// Console markers.
const (
	MarkerInit   = "HOSTIMAGE-INIT"   // early init is done; s6-svscan is next
	MarkerRunner = "HOSTIMAGE-RUNNER" // the runner service started
	MarkerStep   = "HOSTIMAGE-STEP"   // HOSTIMAGE-STEP <step> <guest uptime>
	MarkerExit   = "HOSTIMAGE-EXIT"   // HOSTIMAGE-EXIT <step> <status> <guest uptime>
	MarkerDone   = "HOSTIMAGE-DONE"   // every step ran; the guest powers off
)

// Binary is a program built for the guest.
type Binary struct {
	Name    string // file name in BinDir
	Package string // Go package, relative to the module root
	Test    bool   // `go test -c` rather than `go build`
	Tags    string // build tags
}

// Binaries are what the image carries in BinDir.
var Binaries = []Binary{
	{Name: "vmsup", Package: "./cmd/vmsup"},
	{Name: "vmsup-exec", Package: "./cmd/vmsup-exec"},
	{Name: "testprog", Package: "./internal/testprog"},
	{Name: "check.test", Package: "./check", Test: true},
	{Name: "hostimage.test", Package: "./e2e/hostimage", Test: true, Tags: "hostimage"},
	{Name: "services.test", Package: "./services", Test: true},
	{Name: "launcher.test", Package: "./services/launcher", Test: true},
	{Name: "supervisor.test", Package: "./supervisor", Test: true},
}

// Step is one run of a test binary in the guest.
type Step struct {
	Name    string
	Binary  string // a test Binary's Name
	Run     string // its -test.run pattern
	Timeout time.Duration
}

// Steps run in this order. check and services run whole, the same tests
// as on the development machine, now on Landlock ABI 6 and a pure cgroup
// v2 host; the guest-only tests of this package prove the limits; of
// supervisor's tests run those about limits and about what a VM leaves
// behind (the others time output lines against each other or need GNU
// date, and say nothing more on this host); the last step finds no
// cgroup left behind by any of them.
var Steps = []Step{
	{Name: "check", Binary: "check.test", Run: "^Test", Timeout: 2 * time.Minute},
	{Name: "hostimage", Binary: "hostimage.test", Timeout: 3 * time.Minute,
		Run: "^Test(BareHostLimits|CheckReport|ControllerEnabledInParent|ControllerWriteRefused|MemoryMaxChargesTmpfs|PidsMaxContainsForkStorm|LimitsReadBack)$"},
	{Name: "services", Binary: "services.test", Run: "^Test", Timeout: 3 * time.Minute},
	{Name: "launcher", Binary: "launcher.test", Run: "^TestLandlockThreads$", Timeout: time.Minute},
	{Name: "supervisor", Binary: "supervisor.test", Timeout: 3 * time.Minute,
		Run: "^Test(LimitController|Rlimits|PID1AndReaping|Stop|AbruptDeath|StaleStateCleaned|FailingServiceEndsVM)$"},
	{Name: "leftovers", Binary: "hostimage.test", Run: "^TestNoCgroupLeft$", Timeout: time.Minute},
}

// s6Programs are the s6 tools the image needs: s6-svscan (PID 1) and
// s6-supervise, what the tests use to drive services, and s6-ftrigrd,
// the helper s6-svwait and s6-svlisten1 spawn to receive events.
var s6Programs = []string{"s6-svscan", "s6-supervise", "s6-svscanctl", "s6-svc", "s6-svok",
	"s6-svstat", "s6-svwait", "s6-svlisten1", "s6-ftrigrd"}

// Image is a built host image.
type Image struct {
	Kernel string // vmlinuz
	Initrd string
	// Expected lists, per step, the top-level tests that must report
	// PASS: what the binary itself lists for the step's pattern.
	Expected map[string][]string
}

// Build compiles Binaries (static, CGO_ENABLED=0) into dir and writes the
// initramfs there. kernelDir is guest.Kernel's directory.
func Build(dir, kernelDir string) (*Image, error) {
	root, err := guest.ModuleRoot()
	if err != nil {
		return nil, err
	}
	files := map[string]guest.File{
		Runner:                   {Content: []byte(RunnerScript()), Mode: 0o755},
		services + "/runner/run": {Content: []byte(runnerRun), Mode: 0o755},
	}
	for _, b := range Binaries {
		out := filepath.Join(dir, b.Name)
		args := []string{"build"}
		if b.Test {
			args = []string{"test", "-c"}
		}
		if b.Tags != "" {
			args = append(args, "-tags", b.Tags)
		}
		args = append(args, "-trimpath", "-ldflags=-s -w", "-o", out, b.Package)
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, msg)
		}
		files[BinDir+"/"+b.Name] = guest.File{Source: out, Mode: 0o755}
	}
	img := &Image{Kernel: filepath.Join(kernelDir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"), Expected: map[string][]string{}}
	for _, s := range Steps {
		names, err := listTests(filepath.Join(dir, s.Binary), s.Run)
		if err != nil {
			return nil, err
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("step %s: %s lists no test for %q", s.Name, s.Binary, s.Run)
		}
		img.Expected[s.Name] = names
	}
	var programs []string
	for _, p := range s6Programs {
		path, err := exec.LookPath(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (install the s6 package)", p, err)
		}
		if path, err = filepath.Abs(path); err != nil {
			return nil, err
		}
		programs = append(programs, path)
	}
	err = guest.BuildInitramfs(img.Initrd, guest.InitramfsOptions{
		Init:     InitScript,
		Files:    files,
		Programs: programs,
	})
	if err != nil {
		return nil, err
	}
	return img, nil
}

// listTests returns the top-level tests of a test binary that match run.
func listTests(bin, run string) ([]string, error) {
	out, err := exec.Command(bin, "-test.list", run).Output()
	if err != nil {
		return nil, fmt.Errorf("%s -test.list %q: %w", bin, run, err)
	}
	var names []string
	for _, l := range strings.Fields(string(out)) {
		if strings.HasPrefix(l, "Test") {
			names = append(names, l)
		}
	}
	return names, nil
}
