package check

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Some probes are proven from a re-executed copy of the test binary that
// runs Main(true) in conditions this process must not be put in: under a
// seccomp filter, or inside a cgroup of its own.

const helperEnv = "VMSUP_CHECK_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "seccomp":
		if err := denyWithENOSYS(unix.SYS_CLONE3, unix.SYS_MOUNT_SETATTR, unix.SYS_PIDFD_OPEN); err != nil {
			os.Stderr.WriteString("seccomp: " + err.Error() + "\n")
			os.Exit(2)
		}
	}
	os.Exit(Main(true, os.Stdout))
}

type helperReport struct {
	OK       bool      `json:"ok"`
	Features []Feature `json:"features"`
}

// runHelper runs Main(true) in a copy of the test binary and returns its
// exit status and report.
func runHelper(t *testing.T, mode string, attr *syscall.SysProcAttr) (int, helperReport) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = attr
	out, err := cmd.Output()
	if cmd.ProcessState == nil {
		t.Fatalf("helper: %v", err)
	}
	var r helperReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("helper output: %v:\n%s", err, out)
	}
	return cmd.ProcessState.ExitCode(), r
}

// denyWithENOSYS makes the listed syscalls fail with ENOSYS in every
// thread of this process. The filter does not check the architecture: it
// only ever runs in this native test binary.
func denyWithENOSYS(nrs ...int) error {
	prog := []unix.SockFilter{{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}} // seccomp_data.nr
	for i, nr := range nrs {
		// On a match jump to the ENOSYS return, past the remaining tests
		// and the ALLOW return.
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K,
			Jt: uint8(len(nrs) - i), K: uint32(nr)})
	}
	prog = append(prog,
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)})
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return errno
	}
	return nil
}

func TestSyscallsBlockedBySeccomp(t *testing.T) {
	code, got := runHelper(t, "seccomp", nil)
	if code != 111 {
		t.Fatalf("helper exited %d, want 111: %+v", code, got)
	}
	blocked := map[string]bool{"pidfd": true, "clone3-into-cgroup": true, "mount_setattr": true}
	for _, f := range got.Features {
		switch {
		case blocked[f.Name]:
			if f.OK || !strings.Contains(f.Detail, "ENOSYS") || f.Disables != "vmsup run" {
				t.Errorf("%s under seccomp = %+v, want missing with ENOSYS", f.Name, f)
			}
			delete(blocked, f.Name)
		case f.Required && !f.OK:
			t.Errorf("%s missing although nothing blocks it: %+v", f.Name, f)
		}
	}
	if got.OK || len(blocked) > 0 {
		t.Errorf("ok %v; features not reported: %v", got.OK, blocked)
	}
}

// In a non-root cgroup the probe finds cgroup.kill itself: both from the
// process's own cgroup (the helper is started inside a fresh one) and,
// for this process in the root, from any child of the root. The cgroup is
// the test's own and holds no process once the helper has exited.
func TestCgroupKillFile(t *testing.T) {
	mount := mountinfoCgroup2(t)
	dir, err := os.MkdirTemp(mount, "vmsup-check-test-")
	if err != nil {
		t.Fatalf("create a test cgroup: %v", err)
	}
	t.Cleanup(func() {
		// rmdir can report EBUSY for a moment after the last task exits.
		for i := 0; ; i++ {
			err := unix.Rmdir(dir)
			if err == nil || err == unix.ENOENT {
				return
			}
			if err != unix.EBUSY || i == 100 {
				t.Errorf("rmdir %s: %v", dir, err)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	f := feature(t, Probe(), "cgroup.kill")
	if !f.OK || !strings.HasPrefix(f.Detail, "present in "+mount+"/") {
		t.Errorf("with %s existing: cgroup.kill = %+v", dir, f)
	}

	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	code, r := runHelper(t, "plain", &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd})
	if code != 0 {
		t.Errorf("helper in %s exited %d: %+v", dir, code, r)
	}
	f = feature(t, Report{r.Features}, "cgroup.kill")
	if !f.OK || f.Detail != "present in "+dir {
		t.Errorf("helper in %s: cgroup.kill = %+v", dir, f)
	}
}
