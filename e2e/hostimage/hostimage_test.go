//go:build !hostimage

package hostimage

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/internal/guest"
	"vmsup/internal/vmtest"
)

// Guest resources: enough memory for the tmpfs and memory-limit tests,
// and one vCPU. With two, QEMU 7.2's multi-threaded TCG let the guest
// kernel die of an Oops (int3 in set_next_task_fair) when cpu.max first
// switched on CFS bandwidth control: the kernel patches its own code
// (a static key, through int3) while the other vCPU runs it, which TCG
// does not handle reliably. One vCPU has no cross-CPU code patching.
const (
	guestMemoryMiB = 1536
	guestCPUs      = 1
)

// TestHostImage builds the host image, boots it under TCG with Debian
// trixie's Linux 6.12 and passes only if every in-guest test the steps
// list passed. The whole serial console is kept in ConsoleLog for
// reading afterwards.
func TestHostImage(t *testing.T) { hostImage(t, "trixie") }

// TestHostImageLinux72 is the same tier on Debian sid's Linux 7.2:
// Landlock ABI 10, where TSYNC and RESOLVE_UNIX (`connect`) are enforced.
func TestHostImageLinux72(t *testing.T) { hostImage(t, "sid") }

func hostImage(t *testing.T, suite string) {
	vmtest.RequireRoot(t)
	start := time.Now()
	if err := guest.RequireHostTools(); err != nil {
		t.Fatal(err)
	}
	kdir, err := guest.KernelOf(suite)
	if err != nil {
		t.Fatalf("guest kernel (scripts/fetch-guest-kernel, suite %s): %v", suite, err)
	}
	img, err := Build(t.TempDir(), kdir)
	if err != nil {
		t.Fatal(err)
	}
	built := time.Since(start)

	logPath := consoleLog(suite)
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(guest.QEMUBinary, guest.QEMUArgs(guest.QEMUOptions{
		Kernel: img.Kernel, Initrd: img.Initrd, MemoryMiB: guestMemoryMiB, CPUs: guestCPUs,
	})...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	booted := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	con := guest.NewConsole(stdout, logf)
	exited := make(chan error, 1)
	go func() { con.Wait(); exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\nconsole (whole in %s), last lines:\n%s", fmt.Sprintf(format, args...), logPath, tail(con.String(), 60))
	}

	if _, err := con.WaitFor(MarkerRunner, 2*time.Minute); err != nil {
		fail("boot: %v", err)
	}
	boot := time.Since(booted)
	var limit time.Duration
	for _, s := range Steps {
		limit += s.Timeout
	}
	if _, err := con.WaitFor(MarkerDone, limit+time.Minute); err != nil {
		fail("in-guest tests: %v", err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("qemu: %v", err)
		}
	case <-time.After(time.Minute):
		fail("the guest did not power off after %s", MarkerDone)
	}
	ran := time.Since(booted)

	rep := Parse(strings.Split(con.String(), "\n"))
	for _, r := range rep.Results {
		if !strings.Contains(r.Test, "/") {
			t.Logf("guest %-10s %s %s (%.2fs)", r.Step, r.Verdict, r.Test, r.Seconds)
		}
	}
	tests, subtests := rep.Passed()
	t.Logf("in-guest tests passed: %d (and %d subtests) in %d steps; kernel %s", tests, subtests, len(Steps), kernelLine(con.String()))
	t.Logf("times: build %.1fs, boot to runner %.1fs (guest uptime %.1fs), boot+tests+power-off %.1fs, tier %.1fs",
		built.Seconds(), boot.Seconds(), rep.Uptime[MarkerRunner], ran.Seconds(), time.Since(start).Seconds())
	t.Logf("console: %s", logPath)
	if problems := rep.Check(img.Expected); len(problems) > 0 {
		fail("%d problems:\n%s", len(problems), strings.Join(problems, "\n"))
	}
}

// consoleLog is where the guest's serial console is kept: one file per
// kernel and VMSUP_TEST_TAG, overwritten by each run.
func consoleLog(suite string) string {
	name := "/var/tmp/vmsup-hostimage"
	if suite != "trixie" {
		name += "-" + suite
	}
	if tag := os.Getenv("VMSUP_TEST_TAG"); tag != "" {
		name += "-" + tag
	}
	return name + ".console"
}

func kernelLine(console string) string {
	for _, l := range strings.Split(console, "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == MarkerInit {
			return f[2]
		}
	}
	return "?"
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// The verdict is strict: a failed, skipped or missing test, a step that
// did not end or ended non-zero, or a runner that did not finish each
// make the tier fail.
func TestReportCheck(t *testing.T) {
	expected := map[string][]string{}
	var good []string
	for _, s := range Steps {
		expected[s.Name] = []string{"TestA", "TestB"}
		good = append(good, MarkerStep+" "+s.Name+" 1.00", "=== RUN   TestA", "--- PASS: TestA (0.10s)",
			"    --- PASS: TestA/sub (0.01s)", "--- PASS: TestB (0.20s)", MarkerExit+" "+s.Name+" 0 1.50")
	}
	good = append(good, MarkerDone)
	if p := Parse(good).Check(expected); len(p) != 0 {
		t.Fatalf("a clean console has problems: %v", p)
	}
	if tests, subs := Parse(good).Passed(); tests != 2*len(Steps) || subs != len(Steps) {
		t.Fatalf("Passed() = %d, %d", tests, subs)
	}
	last := Steps[len(Steps)-1].Name
	for name, edit := range map[string]func([]string) []string{
		"failed":    func(l []string) []string { return replace(l, "--- PASS: TestB", "--- FAIL: TestB") },
		"skipped":   func(l []string) []string { return replace(l, "--- PASS: TestB", "--- SKIP: TestB") },
		"missing":   func(l []string) []string { return replace(l, "--- PASS: TestB", "--- PASS: TestC") },
		"exit 1":    func(l []string) []string { return replace(l, MarkerExit+" "+last+" 0", MarkerExit+" "+last+" 1") },
		"no exit":   func(l []string) []string { return replace(l, MarkerExit+" "+last, "garbage") },
		"no done":   func(l []string) []string { return l[:len(l)-1] },
		"cut short": func(l []string) []string { return l[:len(l)/2] },
	} {
		lines := edit(append([]string(nil), good...))
		if p := Parse(lines).Check(expected); len(p) == 0 {
			t.Errorf("%s: no problem found", name)
		}
	}
}

// replace changes the first line that starts with old.
func replace(lines []string, old, new string) []string {
	for i, l := range lines {
		if strings.HasPrefix(l, old) {
			lines[i] = new + strings.TrimPrefix(l, old)
			return lines
		}
	}
	panic("no line " + old)
}
