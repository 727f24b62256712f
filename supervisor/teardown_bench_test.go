package supervisor_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/cgroup"
	"vmsup/internal/vmtest"
)

// BenchmarkVMMExitToExit measures the teardown once the VMM has exited
// (the guest powered off): from the VMM's exit to the outer vmsup's, each
// seen by the kernel on a pidfd, so neither vmsup's log nor the test's
// own reaping is in the figure. Each iteration is one VM: the VMM (a
// process that exits 0 on SIGTERM, sent here by the test as the guest's
// power-off) and two helpers, which vmsup then stops. Reported: median
// and 90th percentile in ms (ns/op is the median). Target: 50 ms.
func BenchmarkVMMExitToExit(b *testing.B) {
	prog := vmtest.Bin(b, "testprog")
	var took []time.Duration
	for b.Loop() {
		c := vmtest.NewConfig(b, fmt.Sprintf("exit-%d", len(took)),
			map[string]any{"name": "vmm", "argv": []string{prog, "linger", "0s"}, "vmm": map[string]any{"signal": "SIGTERM"}},
			map[string]any{"name": "fsd", "argv": []string{"/bin/sleep", "1000"}},
			map[string]any{"name": "gpu", "argv": []string{"/bin/sleep", "1000"}})
		vm := vmtest.Start(b, c, vmtest.Options{})
		vm.PID1()
		vm.WaitFor("all services are ready", 10*time.Second)
		vm.WaitFor("vmm: up", 10*time.Second)
		pids, err := cgroup.Procs(filepath.Join(vm.CgroupDir, "svc.vmm"))
		if err != nil || len(pids) != 1 {
			b.Fatalf("VMM: %v %v", pids, err)
		}
		vmm, outer := pidfdOf(b, pids[0]), pidfdOf(b, vm.Cmd.Process.Pid)
		unix.Kill(pids[0], syscall.SIGTERM)
		gone := waitPidfd(b, vmm)
		exited := waitPidfd(b, outer)
		took = append(took, exited.Sub(gone))
		unix.Close(vmm)
		unix.Close(outer)
		if st := vm.Wait(10 * time.Second); st != 3 { // it ended by itself
			b.Fatalf("status %d, want 3:\n%s", st, vm.Stderr.String())
		}
		vm.AssertClean(time.Second)
	}
	slices.Sort(took)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(took[len(took)/2]), "ms-median")
	b.ReportMetric(ms(took[len(took)*9/10]), "ms-p90")
	b.ReportMetric(ms(took[len(took)-1]), "ms-max")
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "ns/op")
}

func pidfdOf(b *testing.B, pid int) int {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		b.Fatalf("pidfd_open %d: %v", pid, err)
	}
	return fd
}

// waitPidfd returns when the process has exited.
func waitPidfd(b *testing.B, fd int) time.Time {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 10_000)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			b.Fatalf("pidfd: no exit within 10 s (%v)", err)
		}
		return time.Now()
	}
}
