package launcher

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

const threadsChild = "VMSUP_TEST_LANDLOCK_THREADS_CHILD"

// The launcher enforces its Landlock domain with TSYNC where the kernel
// has it (ABI 8, Linux 7.0): another thread of the process is then in
// the domain too. The control is a kernel before ABI 8 (the host's ABI
// 7, the host image's 6.12), where the flag is not used and only the
// enforcing thread is restricted. Run in a child process, since the
// domain cannot be left.
func TestLandlockThreads(t *testing.T) {
	if os.Getenv(threadsChild) != "" {
		threadsChildMain()
		return
	}
	abi, err := llsys.LandlockGetABIVersion()
	if err != nil || abi < 1 {
		t.Fatalf("Landlock is unavailable (%v): this test needs it", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLandlockThreads$")
	cmd.Env = append(os.Environ(), threadsChild+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := string(out)
	t.Logf("ABI %d: %s", abi, strings.TrimSpace(got))
	switch {
	case abi >= 8 && !strings.Contains(got, "tsync true; other thread: permission denied"):
		t.Errorf("ABI %d: another thread of the launcher is outside the domain (TSYNC not used):\n%s", abi, got)
	case abi < 8 && !strings.Contains(got, "tsync false; other thread: <nil>"):
		t.Errorf("ABI %d (control, no TSYNC): want only the enforcing thread restricted:\n%s", abi, got)
	}
}

// threadsChildMain restricts reading files on this thread the way the
// launcher does (restrict, with TSync as services.NewSpec sets it) and
// reports whether a second, already running thread may still read one.
func threadsChildMain() {
	runtime.LockOSThread()
	abi, _ := llsys.LandlockGetABIVersion()
	fd, err := llsys.LandlockCreateRuleset(&llsys.RulesetAttr{HandledAccessFS: llsys.AccessFSReadFile}, 0)
	if err != nil {
		fmt.Println("create ruleset:", err)
		os.Exit(1)
	}
	start, result := make(chan struct{}), make(chan error)
	go func() {
		runtime.LockOSThread()
		<-start
		f, err := unix.Open("/proc/self/exe", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(f)
		}
		result <- err
	}()
	sp := &Spec{Ruleset: fd, TSync: abi >= 8}
	if err := restrict(sp); err != nil {
		fmt.Println("restrict:", err)
		os.Exit(1)
	}
	close(start)
	fmt.Printf("tsync %v; other thread: %v\n", sp.TSync, <-result)
	os.Exit(0)
}
