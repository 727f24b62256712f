package supervisor_test

import (
	"os"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"vmsup/internal/vmtest"
)

// What explain reports for a uid 0 service and PID 1 is real: without
// any capability, a uid 0 service may prlimit PID 1 (same uid and gid;
// Landlock does not cover prlimit). Here it lowers PID 1's core limit,
// which is harmless; a uid 65534 service, the control, is refused.
func TestUID0ServicePrlimitsPID1(t *testing.T) {
	c := vmtest.NewConfig(t, "prlimit-pid1",
		map[string]any{"name": "root", "argv": []string{"/bin/sh", "-c", "prlimit --pid 1 --core=0:0 && echo prlimit ok; exec sleep 100"}, "uid": 0, "gid": 0},
		map[string]any{"name": "nobody", "argv": []string{"/bin/sh", "-c", "prlimit --pid 1 --nofile=64:64 2>&1 || echo prlimit refused; exec sleep 100"}})
	vm := vmtest.Start(t, c, vmtest.Options{})
	pid1 := vm.PID1()
	vm.WaitFor("root: prlimit ok", 10*time.Second)
	vm.WaitFor("nobody: prlimit refused", 10*time.Second)
	limits, _ := os.ReadFile("/proc/" + strconv.Itoa(pid1) + "/limits")
	if !regexp.MustCompile(`Max core file size\s+0\s+0\s`).Match(limits) {
		t.Errorf("PID 1's core limit not lowered:\n%s", limits)
	}
	if regexp.MustCompile(`Max open files\s+64\s`).Match(limits) {
		t.Errorf("uid 65534 changed PID 1's nofile:\n%s", limits)
	}
	vm.Signal(syscall.SIGTERM)
	vm.Wait(10 * time.Second)
	vm.AssertClean(time.Second)
}
