package supervisor_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/cgroup"
	"vmsup/internal/vmtest"
)

// BenchmarkManyVMs starts VMs together, each with three services that
// report readiness on a notify_fd, as an s6-svscan would start them at
// boot. VMSUP_BENCH_VMS lists the sizes (default 10; `make bench-100`
// runs 100, `make bench-1000` runs "100,1000"): one sub-benchmark each.
//
// First it measures the CPU floor: one VM at a time, the CPU time (user
// and system, every process: the outer stage in a cgroup of the
// benchmark's own, PID 1 and the services in the VM's) from `vmsup run`
// until ready, and from SIGTERM until exit. floor-ms is that start cost
// times the VMs divided by the cores: the wall time the start would take
// with every core busy and nothing serialising VMs against each other.
//
// For each size it reports the time until every VM has sent its
// readiness newline (and its ratio to the floor); once they are idle,
// the supervisor processes' memory (outer vmsup and PID 1: PSS in total
// and per VM, RSS per VM) and wake-ups (context switches over 60 s,
// 10 s after the last VM is ready, as in BenchmarkIdle) per VM, and the services' own PSS per VM for
// comparison; then it stops every VM at once and reports the time until
// all have exited, and what was left behind (must be zero). No launcher
// (vmsup-exec) may remain: each execs its service. With several sizes it
// prints the growth of start and stop from the first to the last.
// For the start (until all are ready) and the stop it also reports where
// the machine's CPU time went (cpuSplit): the outer stages, the VMs'
// cgroups, kernel threads and the rest.
// With VMSUP_BENCH_PERF=DIR it records each stop with perf (perfEnv).
// It runs the VMs once whatever b.N is: run it with -benchtime 1x.
func BenchmarkManyVMs(b *testing.B) {
	sizes := []int{10}
	if v := os.Getenv("VMSUP_BENCH_VMS"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				b.Fatalf("VMSUP_BENCH_VMS=%q: want positive numbers separated by commas", v)
			}
			sizes = append(sizes, n)
		}
	}
	vmtest.Bin(b, "vmsup") // built before the clock starts
	startCPU, stopCPU := cpuFloor(b)
	cores := runtime.NumCPU()
	fmt.Printf("cpu floor: one VM's start %.1f ms CPU, its stop %.1f ms CPU (%d cores)\n",
		ms(startCPU), ms(stopCPU), cores)
	var first, last manyResult
	for i, n := range sizes {
		b.Run(fmt.Sprintf("vms=%d", n), func(b *testing.B) {
			r := manyVMs(b, n)
			floor := startCPU * time.Duration(n) / time.Duration(cores)
			b.ReportMetric(ms(floor), "floor-ms")
			b.ReportMetric(float64(r.ready)/float64(floor), "ready/floor")
			if i == 0 {
				first = r
			}
			last = r
		})
	}
	if len(sizes) > 1 && first.ready > 0 && last.ready > 0 {
		fmt.Printf("growth %d → %d VMs (%.0f×): start %.1f×, stop %.1f×\n",
			first.n, last.n, float64(last.n)/float64(first.n),
			float64(last.ready)/float64(first.ready), float64(last.stopped)/float64(first.stopped))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// manyService is the service every VM of the benchmark runs three of.
func manyService(name string) map[string]any {
	return map[string]any{"name": name, "argv": []string{"/bin/sh", "-c", "echo >&3; exec sleep 100000 3>&-"},
		"ready": map[string]any{"notify_fd": 3}}
}

// benchCgroups names a parent for the VMs' cgroups and makes a cgroup
// for their outer stages (vmtest.Options.Cgroup: od), both of the
// benchmark's own and removed at its end: their cpu.stat is what they
// used, the VMs' usage staying in the parent once their cgroups are gone.
func benchCgroups(b *testing.B, name string) (parent, outer string, od *os.File) {
	parent = filepath.Join(vmtest.CgroupParent(b), name)
	outer = filepath.Join(vmtest.CgroupParent(b), name+"-outer")
	if err := os.MkdirAll(outer, 0o755); err != nil {
		b.Fatal(err)
	}
	od, err := os.Open(outer)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { od.Close(); os.Remove(outer); os.Remove(parent) })
	return parent, outer, od
}

// cpuFloor starts floorVMs VMs one after another and returns the mean
// CPU time of one VM's start (until ready) and of its stop (SIGTERM
// until exit), after a first VM that warms the page cache.
func cpuFloor(b *testing.B) (start, stop time.Duration) {
	const floorVMs = 5
	parent, outer, od := benchCgroups(b, "floor")
	used := func() time.Duration { return usage(b, outer) + usage(b, parent) }
	for i := 0; i <= floorVMs; i++ {
		c := vmtest.NewConfig(b, fmt.Sprintf("floor-%d", i), manyService("a"), manyService("b"), manyService("c"))
		c["cgroup"] = filepath.Join(parent, fmt.Sprintf("floor-%d", i))
		t0 := used()
		vm := vmtest.Start(b, c, vmtest.Options{Notify: true, Cgroup: od})
		buf := make([]byte, 1)
		if k, _ := vm.Notify.Read(buf); k != 1 {
			b.Fatalf("%s: not ready:\n%s", vm.Name, vm.Stderr.String())
		}
		t1 := used()
		vm.Signal(syscall.SIGTERM)
		if st := vm.Wait(time.Minute); st != 0 {
			b.Fatalf("%s: status %d, want 0:\n%s", vm.Name, st, vm.Stderr.String())
		}
		t2 := used()
		if i > 0 {
			start += t1 - t0
			stop += t2 - t1
		}
	}
	return start / floorVMs, stop / floorVMs
}

// usage is dir's cpu.stat usage_usec (a core cgroup v2 file: no
// controller needed), or 0 while dir does not exist yet.
func usage(b *testing.B, dir string) time.Duration {
	data, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	} else if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
			us, _ := strconv.ParseInt(v, 10, 64)
			return time.Duration(us) * time.Microsecond
		}
	}
	b.Fatalf("%s/cpu.stat: no usage_usec", dir)
	return 0
}

type manyResult struct {
	n              int
	ready, stopped time.Duration
}

// manyVMs runs n VMs together and reports their figures.
func manyVMs(b *testing.B, n int) manyResult {
	parent, outer, od := benchCgroups(b, fmt.Sprintf("many%d", n))
	vms := make([]*vmtest.VM, n)
	readyAt := make(chan time.Time, n)
	t0, cpu0 := time.Now(), snapCPU(b, outer, parent)
	for i := range vms {
		c := vmtest.NewConfig(b, fmt.Sprintf("many-%d", i), manyService("a"), manyService("b"), manyService("c"))
		c["cgroup"] = filepath.Join(parent, fmt.Sprintf("many-%d", i))
		c["shutdown_timeout"] = "60s"
		vm := vmtest.Start(b, c, vmtest.Options{Notify: true, Cgroup: od})
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
		case <-time.After(10 * time.Minute):
			b.Fatal("not every VM was ready within 10 minutes")
		}
	}
	allReady := last.Sub(t0)
	startSplit := cpu0.since(b, outer, parent)

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
	// Idle means after the start's tail. What switches then is the Go
	// runtime's monitor of each process, once a minute (two switches:
	// perf sched_switch on 1,000 and 300 idle VMs), 0.067 a second a VM.
	// The window is that minute: a shorter one counts the wakes that
	// fall in it, which depends on when the processes started (with
	// 10 s, one vmsup build read 0.059 to 0.112 over six runs at 1,000 VMs).
	time.Sleep(10 * time.Second)
	before := switches(sup)
	const window = 60 * time.Second
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

	rec := startPerf(b, fmt.Sprintf("stop-%d", n))
	cpu1 := snapCPU(b, outer, parent) // before the clock: it reads every /proc/PID/stat
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
	stopSplit := cpu1.since(b, outer, parent)
	rec.stop(b)
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
	startSplit.report(b, "start", n)
	stopSplit.report(b, "stop", n)
	b.ReportMetric(0, "ns/op")
	return manyResult{n: n, ready: allReady, stopped: allExited}
}
