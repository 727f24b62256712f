package supervisor_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cpuSplit is where the machine's CPU time went over a window of
// BenchmarkManyVMs: the outer stages (a cgroup of the benchmark's own),
// the VMs' cgroups (PID 1 and the services, with the kernel's work done
// on their behalf: their exits, their mounts' and namespaces' teardown
// where it runs in their context), kernel threads (work the kernel defers
// to them, such as network namespace cleanup, and whatever else the
// machine runs there) and the rest (the benchmark itself, other
// processes, interrupts; and at a stop PID 1's last steps and exit, as
// PID 1 moves to the root cgroup to remove the VM's). Time the
// hypervisor stole is apart.
//
// It exists to tell a cost of vmsup's from one it cannot remove: at
// 1,000 VMs a sixth of a stop's CPU time was in kernel threads.
type cpuSplit struct {
	total, outer, vms, kthreads, steal time.Duration
	byThread                           map[string]time.Duration
}

// cpuSnap is a reading of the counters cpuSplit is the difference of.
type cpuSnap struct {
	total, outer, vms, steal time.Duration
	kthreads                 map[int]kthread
}

type kthread struct {
	name string
	cpu  time.Duration
}

func snapCPU(b *testing.B, outer, vms string) cpuSnap {
	busy, steal := machineBusy(b)
	return cpuSnap{total: busy, steal: steal, outer: usage(b, outer), vms: usage(b, vms), kthreads: kernelThreads()}
}

// since is the split of the CPU time from s to now.
func (s cpuSnap) since(b *testing.B, outer, vms string) cpuSplit {
	now := snapCPU(b, outer, vms)
	d := cpuSplit{total: now.total - s.total, outer: now.outer - s.outer, vms: now.vms - s.vms,
		steal: now.steal - s.steal, byThread: map[string]time.Duration{}}
	for pid, k := range now.kthreads {
		// A kernel thread that exited in the window takes its time
		// with it; one that started in it (its PID new, or reused by
		// another kind of thread) counts from zero.
		c := k.cpu
		if was, ok := s.kthreads[pid]; ok && was.name == k.name && was.cpu <= k.cpu {
			c -= was.cpu
		}
		d.kthreads += c
		d.byThread[k.name] += c
	}
	return d
}

// report adds the split as metrics named after phase, per VM, and
// prints the kernel threads that took the most.
func (d cpuSplit) report(b *testing.B, phase string, n int) {
	per := func(x time.Duration) float64 { return ms(x) / float64(n) }
	rest := d.total - d.outer - d.vms - d.kthreads
	b.ReportMetric(per(d.total), phase+"-cpu-ms/VM")
	b.ReportMetric(per(d.outer), phase+"-cpu-outer-ms/VM")
	b.ReportMetric(per(d.vms), phase+"-cpu-in-VMs-ms/VM")
	b.ReportMetric(per(d.kthreads), phase+"-cpu-kthreads-ms/VM")
	b.ReportMetric(per(rest), phase+"-cpu-rest-ms/VM")
	names := make([]string, 0, len(d.byThread))
	for k := range d.byThread {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return d.byThread[names[i]] > d.byThread[names[j]] })
	var top []string
	for _, k := range names[:min(4, len(names))] {
		top = append(top, fmt.Sprintf("%s %.2f s", k, d.byThread[k].Seconds()))
	}
	fmt.Printf("%d VMs, %s: CPU %.2f s: outer stages %.2f s, VMs' cgroups %.2f s, kernel threads %.2f s (%s), rest %.2f s; stolen by the hypervisor %.2f s\n",
		n, phase, d.total.Seconds(), d.outer.Seconds(), d.vms.Seconds(), d.kthreads.Seconds(),
		strings.Join(top, ", "), rest.Seconds(), d.steal.Seconds())
}

// ticks is the kernel's USER_HZ, the unit of /proc's CPU times: 100 on
// every Linux architecture this runs on.
const ticks = time.Second / 100

// machineBusy is the CPU time every core spent running something since
// boot (/proc/stat: user, nice, system, irq, softirq), and the time the
// hypervisor kept the cores from running what was runnable (steal),
// which is not this machine's work.
func machineBusy(b *testing.B) (busy, steal time.Duration) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		b.Fatalf("/proc/stat: unexpected first line %q", line)
	}
	tick := func(i int) time.Duration {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(v) * ticks
	}
	for _, i := range []int{1, 2, 3, 6, 7} {
		busy += tick(i)
	}
	return busy, tick(8)
}

// kernelThreads reads every kernel thread's CPU time (kthreadd and its
// children), by PID, named without the instance suffix (kworker/1:2-mm
// is "kworker", kdamond.0 "kdamond").
func kernelThreads() map[int]kthread {
	m := map[int]kthread{}
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range dirs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // exited
		}
		s := string(data)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:]) // state ppid ... utime(12) stime(13)
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		if len(f) < 14 || (f[1] != "2" && pid != 2) {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		name := s[open+1 : end]
		if i := strings.IndexAny(name, "/.:"); i > 0 {
			name = name[:i]
		}
		m[pid] = kthread{name: name, cpu: time.Duration(ut+st) * ticks}
	}
	return m
}
