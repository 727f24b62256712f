package supervisor_test

import (
	"bufio"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/internal/vmtest"
	"vmsup/supervisor"
)

// A hostile service, as uid 0 without capabilities and as uid 0 with
// CAP_DAC_OVERRIDE (virtiofsd's set), tries to block another VM's start
// by flocking what the claim uses: the other VM's lock file, and (what
// the claim used to lock) the shared cgroup parent. The lock file is not in its view, the cgroups are no longer
// locked: the other VM starts. The control run makes the same flock of
// the lock file from the host's view (uid 0, no capabilities): the other
// VM's start is then refused, so the lock file is what the barrier hides.
func TestClaimLockUnreachable(t *testing.T) {
	victim := vmtest.NewConfig(t, "claim-victim", sh("a", "exec sleep 100"))
	lock := supervisor.ClaimPath("claim-victim", victim["cgroup"].(string))
	parent := vmtest.CgroupParent(t)
	for _, caps := range [][]string{nil, {"CAP_DAC_OVERRIDE"}} {
		t.Run("caps="+strings.Join(caps, ","), func(t *testing.T) {
			// Each lock it can take is held in the background.
			script := `for f in "$@"; do flock -x -n "$f" true; echo "flock $f: $?"; flock -x -n "$f" sleep 100 & done; echo holding; exec sleep 100`
			svc := map[string]any{"name": "h", "argv": []string{"/bin/sh", "-c", script, "sh", lock, parent},
				"uid": 0, "gid": 0}
			if caps != nil {
				svc["capabilities"] = caps
			}
			hostile := vmtest.NewConfig(t, "claim-hostile", svc)
			// Landlock off: the mount view is the only barrier tried.
			hostile["landlock"] = "off"
			h := vmtest.Start(t, hostile, vmtest.Options{})
			h.PID1()
			h.WaitFor("h: holding", 10*time.Second)
			out := h.Stderr.String()
			if strings.Contains(out, "h: flock "+lock+": 0") || !strings.Contains(out, "h: flock "+lock+": ") {
				t.Errorf("the hostile service could flock the lock file:\n%s", out)
			}
			v := vmtest.Start(t, victim, vmtest.Options{})
			v.PID1()
			v.WaitFor("all services are ready", 10*time.Second)
			for _, vm := range []*vmtest.VM{v, h} {
				vm.Signal(syscall.SIGTERM)
				if st := vm.Wait(10 * time.Second); st != 0 {
					t.Fatalf("%s: status %d", vm.Name, st)
				}
				vm.AssertClean(time.Second)
			}
		})
	}
	t.Run("control", func(t *testing.T) {
		// The lock file exists from the runs above.
		holder := exec.Command("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--",
			"flock", "-x", "-n", lock, "sh", "-c", "echo locked; exec sleep 100")
		holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		stdout, err := holder.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Kill(-holder.Process.Pid, syscall.SIGKILL); holder.Wait() })
		if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "locked\n" {
			t.Fatalf("the control's flock did not take the lock (%q)", line)
		}
		st, out := runOnce(t, 10*time.Second, "run", victim.Write(t))
		if st != 111 || !strings.Contains(out, "this VM is already running") {
			t.Fatalf("with the lock taken from the host's view: status %d, want 111:\n%s", st, out)
		}
	})
}
