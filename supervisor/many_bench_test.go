package supervisor_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"vmsup/cgroup"
	"vmsup/internal/vmtest"
)

// BenchmarkManyVMs starts VMSUP_BENCH_VMS VMs (default 10; `make
// bench-100` runs 100) together, each with three services that report
// readiness on a notify_fd, as an s6-svscan would start them at boot.
// It reports the time until every VM has sent its readiness newline;
// once they are idle, the supervisor processes' memory (outer vmsup and
// PID 1: PSS in total and per VM, RSS per VM) and wake-ups (context
// switches over 5 s, as in BenchmarkIdle) per VM, and the services' own
// PSS per VM for comparison; then it stops every VM at once and reports
// the time until all have exited, and what was left behind (must be
// zero). No launcher (vmsup-exec) may remain: each execs its service.
// It runs the VMs once whatever b.N is: run it with -benchtime 1x.
func BenchmarkManyVMs(b *testing.B) {
	n := 10
	if v := os.Getenv("VMSUP_BENCH_VMS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("VMSUP_BENCH_VMS=%q: want a positive number", v)
		}
	}
	svc := func(name string) map[string]any {
		return map[string]any{"name": name, "argv": []string{"/bin/sh", "-c", "echo >&3; exec sleep 100000 3>&-"},
			"ready": map[string]any{"notify_fd": 3}}
	}
	vmtest.Bin(b, "vmsup") // built before the clock starts
	vms := make([]*vmtest.VM, n)
	readyAt := make(chan time.Time, n)
	t0 := time.Now()
	for i := range vms {
		c := vmtest.NewConfig(b, fmt.Sprintf("many-%d", i), svc("a"), svc("b"), svc("c"))
		c["shutdown_timeout"] = "60s"
		vm := vmtest.Start(b, c, vmtest.Options{Notify: true})
		vms[i] = vm
		go func() {
			buf := make([]byte, 1)
			if k, _ := vm.Notify.Read(buf); k != 1 || buf[0] != '\n' {
				readyAt <- time.Time{}
				return
			}
			readyAt <- time.Now()
		}()
	}
	var last time.Time
	for range vms {
		select {
		case at := <-readyAt:
			if at.IsZero() {
				b.Fatal("a VM closed its notification fd without a newline")
			}
			if at.After(last) {
				last = at
			}
		case <-time.After(5 * time.Minute):
			b.Fatal("not every VM was ready within 5 minutes")
		}
	}
	allReady := last.Sub(t0)

	var sup, svcs []int
	launchers := 0
	for _, vm := range vms {
		sup = append(sup, vm.Cmd.Process.Pid, vm.PID1())
		for _, s := range []string{"a", "b", "c"} {
			pids, _ := cgroup.Procs(filepath.Join(vm.CgroupDir, "svc."+s))
			for _, p := range pids {
				if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); filepath.Base(exe) == "vmsup-exec" {
					launchers++
				}
			}
			svcs = append(svcs, pids...)
		}
	}
	if launchers > 0 {
		b.Fatalf("%d launchers (vmsup-exec) left running", launchers)
	}
	time.Sleep(2 * time.Second) // let start-up work settle
	before := switches(sup)
	const window = 5 * time.Second
	time.Sleep(window)
	after := switches(sup)
	var pss, rss, svcPSS int
	for _, p := range sup {
		pss += rollup(p, "Pss:")
		rss += rollup(p, "Rss:")
	}
	for _, p := range svcs {
		svcPSS += rollup(p, "Pss:")
	}

	t1 := time.Now()
	for _, vm := range vms {
		vm.Signal(syscall.SIGTERM)
	}
	for _, vm := range vms {
		if st := vm.Wait(5 * time.Minute); st != 0 {
			b.Fatalf("%s: status %d, want 0:\n%s", vm.Name, st, vm.Stderr.String())
		}
	}
	allExited := time.Since(t1)
	var left []string
	for _, vm := range vms {
		left = append(left, vm.Leftovers()...)
	}
	if len(left) > 0 {
		b.Fatalf("left behind: %v", left)
	}

	per := float64(n)
	b.ReportMetric(per, "VMs")
	b.ReportMetric(float64(allReady.Milliseconds()), "ms-all-ready")
	b.ReportMetric(float64(pss)/1024, "pss-MiB-total")
	b.ReportMetric(float64(pss)/per, "pss-KiB/VM")
	b.ReportMetric(float64(rss)/per, "rss-KiB/VM")
	b.ReportMetric(float64(svcPSS)/per, "svc-pss-KiB/VM")
	b.ReportMetric(float64(after-before)/window.Seconds()/per, "wakeups/s/VM")
	b.ReportMetric(float64(allExited.Milliseconds()), "ms-all-stopped")
	b.ReportMetric(float64(len(left)), "leftovers")
	b.ReportMetric(0, "ns/op")
}
