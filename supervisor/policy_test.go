package supervisor_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/cgroup"
	"vmsup/internal/vmtest"
	"vmsup/owned"
)

// on_exit "restart" restarts with a growing back-off; "ignore" lets the
// VM run on; the VM still stops with 0.
func TestRestartAndIgnore(t *testing.T) {
	c := vmtest.NewConfig(t, "restart",
		map[string]any{"name": "flaky", "argv": []string{"/bin/sh", "-c", "echo try; exit 3"}, "on_exit": "restart"},
		map[string]any{"name": "oneshot", "argv": []string{"/bin/sh", "-c", "echo once; exit 7"}, "on_exit": "ignore"},
		sh("steady", "exec sleep 100"))
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	// Back-off 100, 200, 400 ms: the fourth try comes about 0.7 s in.
	vm.WaitFor("flaky: restarting in 400ms", 10*time.Second)
	vm.WaitFor("oneshot: exited with status 7", 5*time.Second)
	out := vm.Stderr.String()
	if n := strings.Count(out, "flaky: try"); n < 3 {
		t.Fatalf("flaky ran %d times, want at least 3:\n%s", n, out)
	}
	for _, want := range []string{"restarting in 100ms", "restarting in 200ms"} {
		if !strings.Contains(out, "flaky: "+want) {
			t.Errorf("no %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "oneshot: once") != 1 {
		t.Errorf("an ignored service was restarted:\n%s", out)
	}
	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(10 * time.Second); st != 0 {
		t.Fatalf("status %d, want 0", st)
	}
	vm.AssertClean(time.Second)
}

// A service with on_exit "shutdown" (the default) that fails ends the VM
// with status 1; the others are stopped and nothing is left.
func TestFailingServiceEndsVM(t *testing.T) {
	c := vmtest.NewConfig(t, "fails",
		sh("crash", "sleep 0.3; exit 2"),
		sh("other", "exec sleep 100"))
	vm, st := vmtest.Run(t, c, 10*time.Second)
	if st != 1 {
		t.Fatalf("status %d, want 1:\n%s", st, vm.Stderr.String())
	}
	if !strings.Contains(vm.Stderr.String(), "crash: exited with status 2") {
		t.Fatalf("no reason given:\n%s", vm.Stderr.String())
	}
	vm.AssertClean(time.Second)
}

// A restart service that dumps core is not restarted; the VM fails.
func TestNoRestartAfterCoreDump(t *testing.T) {
	cwd := vmtest.SharedDir(t) // where the kernel may write the core
	c := vmtest.NewConfig(t, "coredump",
		map[string]any{"name": "dumper", "argv": []string{"/bin/sh", "-c", "kill -SEGV $$"}, "on_exit": "restart",
			"cwd": cwd, "rlimits": map[string]any{"core": "unlimited"}},
		sh("other", "exec sleep 100"))
	vm, st := vmtest.Run(t, c, 10*time.Second)
	out := vm.Stderr.String()
	if !strings.Contains(out, "dumper: killed by SIGSEGV (core dumped)") {
		t.Fatalf("the kernel did not dump core (core_pattern %q?):\n%s", readFile("/proc/sys/kernel/core_pattern"), out)
	}
	if st != 1 || !strings.Contains(out, "dumper: dumped core: not restarting") || strings.Contains(out, "dumper: restarting") {
		t.Fatalf("status %d, want 1 and no restart:\n%s", st, out)
	}
	vm.AssertClean(time.Second)
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// A start after a crash of both stages removes what they left: the VM's
// cgroup (empty) and its runtime directory.
func TestStaleStateCleaned(t *testing.T) {
	c := vmtest.NewConfig(t, "stale", sh("a", "exec sleep 100"))
	cg, rd := c["cgroup"].(string), c["runtime_dir"].(string)
	os.MkdirAll(filepath.Join(cg, "svc.a"), 0o755)
	os.MkdirAll(filepath.Join(rd, "junk"), 0o755)
	// What a crash leaves carries the VM's mark.
	for _, d := range []string{cg, rd} {
		if err := owned.Mark(d, "stale"); err != nil {
			t.Fatal(err)
		}
	}
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	vm.WaitFor("all services are ready", 10*time.Second)
	out := vm.Stderr.String()
	for _, want := range []string{"removing " + cg + " left by an earlier run", "removing " + rd + " left by an earlier run"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(rd, "junk")); err == nil {
		t.Error("stale runtime dir content survived")
	}
	// A second vmsup of the same VM is refused while the first runs.
	st, out2 := runOnce(t, 10*time.Second, "run", c.Write(t))
	if st != 111 || !strings.Contains(out2, "this VM is already running") {
		t.Fatalf("second instance: status %d, want 111:\n%s", st, out2)
	}
	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(10 * time.Second); st != 0 {
		t.Fatalf("status %d", st)
	}
	vm.AssertClean(time.Second)
}

// A VMM crash is a failure (1) even when the VM was already stopping
// because a helper ended cleanly first: virtiofsd exits 0 as soon as its
// VMM's connection closes, and vmsup may see that before the VMM's own
// end (PID 1 reaps whichever wait4 returns first). Here the VMM closes
// the connection, the helper's exit 0 stops the VM, then the VMM dies of
// a SIGKILL vmsup did not send.
func TestVMMCrashAfterHelperEnd(t *testing.T) {
	prog := vmtest.Bin(t, "testprog")
	sock := filepath.Join(vmtest.RunDir(), "crash-order", "fs.sock")
	c := vmtest.NewConfig(t, "crash-order",
		map[string]any{"name": "fsd", "argv": []string{prog, "serve", "3"},
			"sockets": []map[string]any{{"path": sock, "fd": 3, "mode": "0666"}}},
		map[string]any{"name": "vmm", "argv": []string{prog, "dial", sock},
			"after": []string{"fsd"}, "vmm": map[string]any{"signal": "SIGTERM"}})
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	vm.WaitFor("vmm: connected", 10*time.Second)
	vmm := procsOf(t, vm, "vmm")
	syscall.Kill(vmm, syscall.SIGUSR1)
	vm.WaitFor("fsd: exited with status 0", 10*time.Second)
	vm.WaitFor("vmm: powering off", 10*time.Second)
	syscall.Kill(vmm, syscall.SIGKILL)
	if st := vm.Wait(10 * time.Second); st != 1 {
		t.Fatalf("status %d, want 1:\n%s", st, vm.Stderr.String())
	}
	if !strings.Contains(vm.Stderr.String(), "vmm: killed by SIGKILL") {
		t.Fatalf("the crash is not reported:\n%s", vm.Stderr.String())
	}
	vm.AssertClean(time.Second)
}

// procsOf returns the one process of a service.
func procsOf(t *testing.T, vm *vmtest.VM, svc string) int {
	t.Helper()
	pids, err := cgroup.Procs(filepath.Join(vm.CgroupDir, "svc."+svc))
	if err != nil || len(pids) != 1 {
		t.Fatalf("%s: processes %v %v", svc, pids, err)
	}
	return pids[0]
}

// A chain of /bin/true services (on_exit ignore, each after the one
// before) never hangs: each exits at once, often before vmsup has seen
// its launch outcome, and the default ready rule ("ready once started")
// must still make it ready so the next one starts. VMSUP_CHAIN_RUNS runs
// (default 200), VMSUP_CHAIN_PARALLEL VMs at a time (default 8); the VM
// ends by itself (3) once the last has run.
func TestChainNeverHangs(t *testing.T) {
	runs, par := envCount(t, "VMSUP_CHAIN_RUNS", 200), envCount(t, "VMSUP_CHAIN_PARALLEL", 8)
	const length = 41
	chain := make([]map[string]any, length)
	for i := range chain {
		chain[i] = map[string]any{"name": fmt.Sprintf("t%d", i), "argv": []string{"/bin/true"}, "on_exit": "ignore"}
		if i > 0 {
			chain[i]["after"] = []string{fmt.Sprintf("t%d", i-1)}
		}
	}
	var hangs []string
	t0 := time.Now()
	for done := 0; done < runs; {
		var batch []*vmtest.VM
		for len(batch) < par && done+len(batch) < runs {
			c := vmtest.NewConfig(t, fmt.Sprintf("chain-%d", done+len(batch)), chain...)
			batch = append(batch, vmtest.Start(t, c, vmtest.Options{}))
		}
		for _, vm := range batch {
			select {
			case <-vm.Done():
			case <-time.After(30 * time.Second):
				out := vm.Stderr.String()
				last := out[strings.LastIndex(strings.TrimSuffix(out, "\n"), "\n")+1:]
				hangs = append(hangs, fmt.Sprintf("%s: hung, last line %q", vm.Name, strings.TrimSpace(last)))
				vm.Cmd.Process.Kill()
				<-vm.Done()
				continue
			}
			out := vm.Stderr.String()
			if st := vm.Wait(time.Second); st != 3 || !strings.Contains(out, "all services are ready") {
				t.Errorf("%s: status %d, want 3 after all were ready:\n%s", vm.Name, st, out)
			}
			vm.AssertClean(time.Second)
		}
		done += len(batch)
	}
	t.Logf("%d runs of a %d-service chain, %d at a time, in %v: %d hung", runs, length, par, time.Since(t0).Round(time.Millisecond), len(hangs))
	if len(hangs) > 0 {
		t.Fatalf("%d of %d runs hung:\n%s", len(hangs), runs, strings.Join(hangs, "\n"))
	}
}

func envCount(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// A restart service that can never be exec'd (Landlock's execute list
// does not cover its binary) fails the VM at its first attempt: status
// 1, no restart, and its dependent never starts.
// As the VMM, it is not asked to power a guest off either.
func TestUnlaunchableRestartFailsVM(t *testing.T) {
	for _, isVMM := range []bool{false, true} {
		a := map[string]any{"name": "a", "argv": []string{"/usr/bin/sleep", "100"}, "on_exit": "restart",
			"landlock_paths": map[string]any{"execute": []string{"/usr/sbin"}}}
		if isVMM {
			a["vmm"] = map[string]any{"signal": "SIGTERM"}
		}
		c := vmtest.NewConfig(t, "noexec", a,
			map[string]any{"name": "b", "argv": []string{"/usr/bin/sleep", "100"}, "after": []string{"a"}},
			sh("other", "exec sleep 100"))
		vm, st := vmtest.Run(t, c, 10*time.Second)
		out := vm.Stderr.String()
		if st != 1 || !strings.Contains(out, "a: cannot start: exec /usr/bin/sleep: permission denied") {
			t.Fatalf("VMM %v: status %d, want 1 and the reason:\n%s", isVMM, st, out)
		}
		if n := strings.Count(out, "a: cannot start"); n != 1 || strings.Contains(out, "a: restarting") ||
			strings.Contains(out, "b: ") || strings.Contains(out, "power off") {
			t.Fatalf("VMM %v: %d attempts, want 1, no restart, b never started, no power-off:\n%s", isVMM, n, out)
		}
		vm.AssertClean(time.Second)
	}
}

// A VM whose VMM exits 0 by itself (the guest powered off) ends with 3,
// and so does one whose every service ended with on_exit ignore; a stop
// request first makes it 0 even if the VMM then exits 0.
func TestVMEndsByItself(t *testing.T) {
	vmm := map[string]any{"name": "vmm", "argv": []string{"/bin/sh", "-c", "sleep 0.3; exit 0"}, "vmm": map[string]any{"signal": "SIGTERM"}}
	vm, st := vmtest.Run(t, vmtest.NewConfig(t, "by-itself", vmm, sh("other", "exec sleep 100")), 10*time.Second)
	if st != 3 || !strings.Contains(vm.Stderr.String(), "vmm: exited with status 0") {
		t.Fatalf("status %d, want 3:\n%s", st, vm.Stderr.String())
	}
	vm.AssertClean(time.Second)

	ignored := map[string]any{"name": "once", "argv": []string{"/bin/true"}, "on_exit": "ignore"}
	if vm, st := vmtest.Run(t, vmtest.NewConfig(t, "by-itself-ignore", ignored), 10*time.Second); st != 3 {
		t.Fatalf("status %d, want 3:\n%s", st, vm.Stderr.String())
	}

	// The VMM exits 0 on its power-off signal: a stop honoured.
	vmm["argv"] = []string{vmtest.Bin(t, "testprog"), "linger", "0s"}
	vm = vmtest.Start(t, vmtest.NewConfig(t, "by-request", vmm), vmtest.Options{})
	vm.WaitFor("vmm: up", 10*time.Second)
	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(10 * time.Second); st != 0 || !strings.Contains(vm.Stderr.String(), "vmm: exited with status 0") {
		t.Fatalf("status %d, want 0:\n%s", st, vm.Stderr.String())
	}
	vm.AssertClean(time.Second)
}

// One Ctrl-C in a terminal is SIGINT to vmsup's whole process group:
// PID 1 and the services are in sessions of their own, so vmsup sees
// one stop request, stops gracefully and exits 0.
func TestSIGINTToProcessGroup(t *testing.T) {
	c := vmtest.NewConfig(t, "sigint-group", sh("a", "exec sleep 100"), sh("b", "exec sleep 100"))
	// setsid execs vmsup in a new session and process group of its own.
	vm := vmtest.Start(t, c, vmtest.Options{Wrap: []string{"setsid"}})
	vm.PID1()
	vm.WaitFor("all services are ready", 10*time.Second)
	if err := syscall.Kill(-vm.Cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	st := vm.Wait(10 * time.Second)
	out := vm.Stderr.String()
	if st != 0 || strings.Contains(out, "second stop request") || strings.Count(out, "stop requested") != 1 {
		t.Fatalf("status %d, want 0 after one stop request:\n%s", st, out)
	}
	vm.AssertClean(time.Second)
}
