// Command demo runs one real VM under s6 on this machine and says what
// happens at each step: `make demo`. The VM is examples/work.json as
// written: Debian trixie's Rust virtiofsd as uid 2001 with only
// CAP_DAC_READ_SEARCH, and a non-root QEMU (TCG) with Debian trixie's
// cloud kernel and a busybox guest that writes a file through virtiofs and
// powers off on the ACPI power button.
//
// It is a tool of the repository, not of the product: no product package
// may import it.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"vmsup/config"
	"vmsup/internal/guest"
	"vmsup/s6"
)

const (
	name    = "work"
	example = "examples/" + name + ".json"
	scan    = "/run/vmsup-demo/scan"
	runtime = "/run/vmsup/" + name
)

func main() {
	vmsup := flag.String("vmsup", "bin/vmsup", "the vmsup binary (vmsup-exec beside it)")
	flag.Parse()
	if err := run(*vmsup); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, a ...any) {
	fmt.Printf("\n==> "+format+"\n", a...)
}

func run(vmsup string) error {
	vmsup, err := filepath.Abs(vmsup)
	if err != nil {
		return err
	}
	step("checking the host (vmsup check)")
	check := exec.Command(vmsup, "check")
	check.Stdout, check.Stderr = os.Stdout, os.Stderr
	if err := check.Run(); err != nil {
		return fmt.Errorf("vmsup check: %w", err)
	}

	step("fetching Debian trixie's Rust virtiofsd and cloud kernel (cached in /var/cache/vmsup-test), building the guest's busybox initramfs in %s/guest", guest.ExampleRoot)
	if _, err := guest.SetupExamples(); err != nil {
		return err
	}
	share := guest.ExampleShares[name].Dir
	cfgPath, err := filepath.Abs(example)
	if err != nil {
		return err
	}
	vm, errs := config.Load(cfgPath)
	if len(errs) > 0 {
		return fmt.Errorf("%s: %v", example, errs[0])
	}
	b, _ := os.ReadFile(cfgPath)
	step("config %s, as written:\n%s", example, b)

	os.RemoveAll(filepath.Dir(scan))
	if err := os.MkdirAll(scan, 0o755); err != nil {
		return err
	}
	staging := filepath.Join(filepath.Dir(scan), "staging-"+name)
	if err := s6.WriteServiceDir(staging, cfgPath, vmsup, vm); err != nil {
		return err
	}
	step("s6 service directory (vmsup s6-servicedir): run script:")
	run, _ := os.ReadFile(filepath.Join(staging, "run"))
	fmt.Print(string(run))

	step("starting s6-svscan on %s; vmsup's log follows, prefixed with |", scan)
	svscan := exec.Command("s6-svscan", scan)
	logR, logW := io.Pipe()
	svscan.Stdout, svscan.Stderr = logW, logW
	go func() {
		s := bufio.NewScanner(logR)
		for s.Scan() {
			fmt.Println("| " + s.Text())
		}
	}()
	if err := svscan.Start(); err != nil {
		return err
	}
	defer func() {
		exec.Command("s6-svscanctl", "-t", scan).Run()
		svscan.Wait()
		logW.Close()
		os.RemoveAll(filepath.Dir(scan))
	}()
	svc := filepath.Join(scan, name)
	t0 := time.Now()
	if err := os.Rename(staging, svc); err != nil {
		return err
	}
	exec.Command("s6-svscanctl", "-a", scan).Run()
	if out, err := exec.Command("s6-svwait", "-U", "-t", "120000", svc).CombinedOutput(); err != nil {
		return fmt.Errorf("s6-svwait -U: %v %s", err, out)
	}
	step("s6 reports the VM ready after %v (every service ready: virtiofsd listening, QEMU's QMP socket up)", time.Since(t0).Round(time.Millisecond))

	hello := filepath.Join(share, guest.ExampleHello)
	for time.Since(t0) < 2*time.Minute {
		if b, err := os.ReadFile(hello); err == nil && len(b) > 0 {
			step("the guest wrote %s through virtiofs after %v: %q", hello, time.Since(t0).Round(time.Millisecond), b)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, _ := exec.Command("s6-svstat", svc).CombinedOutput()
	step("s6-svstat: %s", strings.TrimSpace(string(st)))

	step("s6-svc -d: vmsup asks the guest to power off through QMP")
	t1 := time.Now()
	exec.Command("s6-svc", "-d", svc).Run()
	if out, err := exec.Command("s6-svwait", "-D", "-t", "60000", svc).CombinedOutput(); err != nil {
		return fmt.Errorf("s6-svwait -D: %v %s", err, out)
	}
	time.Sleep(200 * time.Millisecond) // let finish's line reach the log
	step("down after %v", time.Since(t1).Round(time.Millisecond))

	step("what is left of the VM")
	left := 0
	for _, p := range []string{runtime, "/sys/fs/cgroup/vmsup/" + name, "/sys/fs/cgroup/unified/vmsup/" + name} {
		if _, err := os.Stat(p); err == nil {
			fmt.Println("   left:", p)
			left++
		}
	}
	if out, _ := exec.Command("pgrep", "-f", "qemu-system-x86_64.*"+guest.ExampleRoot).Output(); len(out) > 0 {
		fmt.Println("   left: QEMU processes", strings.Fields(string(out)))
		left++
	}
	if left > 0 {
		return fmt.Errorf("%d things left behind", left)
	}
	fmt.Println("   nothing: no process, cgroup, mount or runtime directory")
	return nil
}
