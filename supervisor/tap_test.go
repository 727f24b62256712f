package supervisor_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"vmsup/internal/vmtest"
)

// tapName is a TAP name of this test run's own (at most 15 bytes).
func tapName(t *testing.T, base string) string {
	n := base + strings.ReplaceAll(os.Getenv("VMSUP_TEST_TAG"), "-", "")
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}

// assertNoLink fails unless no interface called name exists in this
// test's network namespace.
func assertNoLink(t *testing.T, name string) {
	t.Helper()
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("interface %s after the VM ended: %v %v", name, l, err)
	}
}

// A TAP vmsup makes: created with netlink in vmsup's network namespace,
// owned by the service's uid and gid, IFF_TAP|IFF_NO_PI|IFF_VNET_HDR,
// not persistent, up, on the configured bridge, handed over as the
// configured fds (one per queue), and gone once the VM has ended,
// gracefully or not.
func TestTapHandedOver(t *testing.T) {
	for _, end := range []string{"graceful", "failed", "kill-outer", "kill-pid1"} {
		t.Run(end, func(t *testing.T) {
			vmtest.NetNS(t)
			tap, br := tapName(t, "t"+end[:2]), tapName(t, "b"+end[:2])
			vmtest.MustRun(t, "ip", "link", "add", br, "type", "bridge")
			defer exec.Command("ip", "link", "del", br).Run()
			onExit := "shutdown"
			script := "cat /proc/self/fdinfo/4 /proc/self/fdinfo/5; echo listed; exec sleep 600"
			if end == "failed" {
				script = "cat /proc/self/fdinfo/4 /proc/self/fdinfo/5; echo listed; sleep 0.5; exit 3"
			}
			c := vmtest.NewConfig(t, "tap-"+end, map[string]any{
				"name": "vmm", "argv": []string{"/bin/sh", "-c", script}, "uid": 1000, "gid": 1001,
				"on_exit": onExit,
				"taps":    []map[string]any{{"name": tap, "fd": 4, "bridge": br, "queues": 2}},
			})
			vm := vmtest.Start(t, c, vmtest.Options{})
			pid1 := vm.PID1()
			vm.WaitFor("vmm: listed", 10*time.Second)
			out := vm.Stderr.String()
			if n := strings.Count(out, "iff:\t"+tap); n != 2 {
				t.Errorf("fds 4 and 5 of the service: %d of them are queues of %s:\n%s", n, tap, out)
			}
			l, err := netlink.LinkByName(tap)
			if err != nil {
				t.Fatalf("the TAP while the VM runs: %v", err)
			}
			tt, ok := l.(*netlink.Tuntap)
			brl, berr := netlink.LinkByName(br)
			switch {
			case !ok:
				t.Errorf("%s is a %s, not a tuntap", tap, l.Type())
			case berr != nil:
				t.Error(berr)
			default:
				want := netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_MULTI_QUEUE
				if tt.Mode != netlink.TUNTAP_MODE_TAP || tt.Flags&want != want || !tt.NonPersist || tt.Owner != 1000 || tt.Group != 1001 || tt.Queues != 2 {
					t.Errorf("TAP: mode %v flags %#x non-persistent %v owner %d group %d queues %d", tt.Mode, tt.Flags, tt.NonPersist, tt.Owner, tt.Group, tt.Queues)
				}
				if tt.Attrs().MasterIndex != brl.Attrs().Index {
					t.Errorf("TAP master %d, want the bridge %d", tt.Attrs().MasterIndex, brl.Attrs().Index)
				}
				if tt.Attrs().RawFlags&syscall.IFF_UP == 0 {
					t.Errorf("TAP is not up")
				}
			}
			want := 0
			switch end {
			case "graceful":
				vm.Signal(syscall.SIGTERM)
			case "failed":
				want = 1
			case "kill-outer":
				vm.Signal(syscall.SIGKILL)
				want = 128 + int(syscall.SIGKILL)
			case "kill-pid1":
				syscall.Kill(pid1, syscall.SIGKILL)
				want = 111
			}
			if st := vm.Wait(15 * time.Second); st != want {
				t.Errorf("status %d, want %d", st, want)
			}
			vm.AssertClean(time.Second)
			// The TAP goes with the last descriptor: at once, or (the
			// outer stage killed) once PID 1 has cleaned up.
			deadline := time.Now().Add(time.Second)
			for time.Now().Before(deadline) {
				if _, err := netlink.LinkByName(tap); err != nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			assertNoLink(t, tap)
		})
	}
}

// A TAP name already in use is a temporary failure (111) naming it, and
// the interface that has it is left as it was; a bridge that does not
// exist is a config error (100), from validate too.
func TestTapRefused(t *testing.T) {
	vmtest.NetNS(t)
	tap := tapName(t, "tbusy")
	vmtest.MustRun(t, "ip", "link", "add", tap, "type", "bridge")
	defer exec.Command("ip", "link", "del", tap).Run()
	svc := map[string]any{"name": "vmm", "argv": []string{"/bin/true"}, "taps": []map[string]any{{"name": tap, "fd": 4}}}
	c := vmtest.NewConfig(t, "tap-busy", svc)
	vm, st := vmtest.Run(t, c, 10*time.Second)
	if want := "vmm: tap " + tap + ": the name is already in use by another network interface"; st != 111 || !strings.Contains(vm.Stderr.String(), want) {
		t.Errorf("status %d, want 111 and %q:\n%s", st, want, vm.Stderr.String())
	}
	vm.AssertClean(time.Second)
	if l, err := netlink.LinkByName(tap); err != nil || l.Type() != "bridge" {
		t.Errorf("the interface that had the name: %v %v", l, err)
	}

	svc["taps"] = []map[string]any{{"name": tapName(t, "tnobr"), "fd": 4, "bridge": tapName(t, "nobr")}}
	c = vmtest.NewConfig(t, "tap-nobridge", svc)
	want := "services[0].taps[0].bridge: bridge " + tapName(t, "nobr") + " does not exist"
	vm, st = vmtest.Run(t, c, 10*time.Second)
	if st != 100 || !strings.Contains(vm.Stderr.String(), want) {
		t.Errorf("run: status %d, want 100 and %q:\n%s", st, want, vm.Stderr.String())
	}
	out, err := exec.Command(vmtest.Bin(t, "vmsup"), "validate", c.Write(t)).CombinedOutput()
	if ee, _ := err.(*exec.ExitError); ee == nil || ee.ExitCode() != 100 || strings.TrimSpace(string(out)) != want {
		t.Errorf("validate: %v %q, want 100 and %q", err, out, want)
	}
	assertNoLink(t, tapName(t, "tnobr"))
}

// A restarted service gets the same TAP and the same network namespace:
// both are made once per service, at set-up, and held by PID 1.
func TestTapAndNetnsKeptAcrossRestart(t *testing.T) {
	vmtest.NetNS(t)
	tap := tapName(t, "trst")
	c := vmtest.NewConfig(t, "tap-restart", map[string]any{
		"name": "vmm", "uid": 1000, "gid": 1000, "on_exit": "restart",
		"argv": []string{"/bin/sh", "-c", "echo run $(readlink /proc/self/ns/net) $(grep iff /proc/self/fdinfo/4); sleep 0.2"},
		"taps": []map[string]any{{"name": tap, "fd": 4}},
	})
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	deadline := time.Now().Add(20 * time.Second)
	var runs []string
	for len(runs) < 2 && time.Now().Before(deadline) {
		runs = runs[:0]
		for _, l := range strings.Split(vm.Stderr.String(), "\n") {
			if r, ok := strings.CutPrefix(l, "vmm: run "); ok {
				runs = append(runs, r)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	mine, _ := os.Readlink("/proc/thread-self/ns/net")
	switch {
	case len(runs) < 2:
		t.Fatalf("the service did not run twice:\n%s", vm.Stderr.String())
	case runs[0] != runs[1]:
		t.Errorf("first run %q, second %q: not the same namespace and TAP", runs[0], runs[1])
	case !strings.Contains(runs[0], "iff: "+tap) && !strings.Contains(runs[0], "iff:\t"+tap):
		t.Errorf("no TAP %s on fd 4: %q", tap, runs[0])
	case strings.Contains(runs[0], mine):
		t.Errorf("the service runs in vmsup's network namespace: %q", runs[0])
	}
	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(15 * time.Second); st != 0 {
		t.Errorf("status %d, want 0", st)
	}
	vm.AssertClean(time.Second)
	assertNoLink(t, tap)
}
