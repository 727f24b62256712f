package supervisor

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/config"
)

// Wait statuses as wait4 reports them.
func exitedWS(code int) unix.WaitStatus { return unix.WaitStatus(code << 8) }
func killedWS(sig unix.Signal) unix.WaitStatus {
	return unix.WaitStatus(sig)
}
func coreWS(sig unix.Signal) unix.WaitStatus { return unix.WaitStatus(sig) | 0x80 }

func sentBit(sig unix.Signal) uint64 { return 1 << uint(sig) }

// The state machine's table (vm.go), row by row; no root needed.
func TestTransitionTable(t *testing.T) {
	const (
		sd = config.OnExitShutdown
		rs = config.OnExitRestart
		ig = config.OnExitIgnore
	)
	cases := []struct {
		name string
		s    svcState
		e    svcEvent
		f    facts
		want step
	}{
		// Launch outcomes.
		{"fork fails", waiting, seExecFail, facts{phase: running, onExit: rs}, step{next: gone, do: fxFail | fxStop}},
		{"fork fails on restart", backoff, seExecFail, facts{phase: running, onExit: ig}, step{next: gone, do: fxFail | fxStop}},
		{"exit before outcome is kept", launching, seExit, facts{phase: running, ws: exitedWS(0)}, step{next: launching}},
		{"exec'd, default rule: ready at once", launching, seExec, facts{phase: running}, step{next: ready, do: fxReady}},
		{"exec'd, a rule: watched", launching, seExec, facts{phase: running, rule: true}, step{next: started, do: fxWatch}},
		// The chain of /bin/true: the exit was reaped before the
		// outcome; the service still becomes ready (its dependents
		// start), then the kept exit applies.
		{"exec'd and already ended, default rule", launching, seExec, facts{phase: running, onExit: ig, reaped: true}, step{next: ready, do: fxReady | fxExit}},
		{"exec'd and already ended, a rule", launching, seExec, facts{phase: running, rule: true, reaped: true}, step{next: started, do: fxWatch | fxExit}},
		// A launch failure fails the VM whatever on_exit says.
		{"exec fails, restart", launching, seExecFail, facts{phase: running, onExit: rs}, step{next: started, do: fxFail | fxStop}},
		{"exec fails, ignore", launching, seExecFail, facts{phase: running, onExit: ig}, step{next: started, do: fxFail | fxStop}},
		{"exec fails, shutdown, already reaped", launching, seExecFail, facts{phase: running, onExit: sd, reaped: true}, step{next: started, do: fxFail | fxStop | fxExit}},
		{"exit after a failed launch, restart: no restart", started, seExit, facts{phase: stopping, onExit: rs, launchErr: true, ws: exitedWS(1)}, step{next: gone}},
		{"exit after a failed launch, running", started, seExit, facts{phase: running, onExit: rs, launchErr: true, ws: exitedWS(1)}, step{next: gone}},
		// Readiness.
		{"rule met", started, seReady, facts{phase: running}, step{next: ready, do: fxReady}},
		{"rule met after the end", gone, seReady, facts{phase: running}, step{next: gone}},
		{"stale outcome", ready, seExec, facts{phase: running}, step{next: ready}},
		// Exits while running.
		{"shutdown, exit 0: VM ends by itself", ready, seExit, facts{phase: running, onExit: sd, ws: exitedWS(0)}, step{next: gone, do: fxStop}},
		{"shutdown, exit 2", ready, seExit, facts{phase: running, onExit: sd, ws: exitedWS(2)}, step{next: gone, do: fxFail | fxStop}},
		{"shutdown, killed", started, seExit, facts{phase: running, onExit: sd, ws: killedWS(unix.SIGKILL)}, step{next: gone, do: fxFail | fxStop}},
		{"restart, exit 3", ready, seExit, facts{phase: running, onExit: rs, ws: exitedWS(3)}, step{next: backoff, do: fxRestart}},
		{"restart, killed", ready, seExit, facts{phase: running, onExit: rs, ws: killedWS(unix.SIGKILL)}, step{next: backoff, do: fxRestart}},
		{"restart, core dump", ready, seExit, facts{phase: running, onExit: rs, ws: coreWS(unix.SIGSEGV)}, step{next: gone, do: fxFail | fxStop, why: "dumped core: not restarting"}},
		{"ignore, exit 7", ready, seExit, facts{phase: running, onExit: ig, ws: exitedWS(7)}, step{next: gone}},
		{"ignore, core dump", ready, seExit, facts{phase: running, onExit: ig, ws: coreWS(unix.SIGABRT)}, step{next: gone}},
		// Exits while stopping.
		{"stopping, exit 0", ready, seExit, facts{phase: stopping, onExit: sd, ws: exitedWS(0)}, step{next: gone}},
		{"stopping, exit 1 after our signal", ready, seExit, facts{phase: stopping, onExit: sd, ws: exitedWS(1), sent: sentBit(unix.SIGTERM)}, step{next: gone}},
		{"stopping, exit 1 unasked", ready, seExit, facts{phase: stopping, onExit: sd, ws: exitedWS(1)}, step{next: gone, do: fxFail, why: "did not stop as asked: the VM failed"}},
		{"stopping, our signal", ready, seExit, facts{phase: stopping, onExit: sd, ws: killedWS(unix.SIGTERM), sent: sentBit(unix.SIGTERM)}, step{next: gone}},
		{"stopping, another signal", ready, seExit, facts{phase: stopping, onExit: sd, ws: killedWS(unix.SIGKILL), sent: sentBit(unix.SIGTERM)}, step{next: gone, do: fxFail, why: "did not stop as asked: the VM failed"}},
		{"stopping, our signal, core dump", ready, seExit, facts{phase: stopping, onExit: sd, ws: coreWS(unix.SIGQUIT), sent: sentBit(unix.SIGQUIT)}, step{next: gone, do: fxFail, why: "did not stop as asked: the VM failed"}},
		{"stopping, restart service killed: not restarted", ready, seExit, facts{phase: stopping, onExit: rs, ws: killedWS(unix.SIGKILL)}, step{next: gone}},
		{"killing, anything", ready, seExit, facts{phase: killing, onExit: sd, ws: killedWS(unix.SIGKILL)}, step{next: gone}},
	}
	for _, c := range cases {
		if got := transition(c.s, c.e, c.f); got != c.want {
			t.Errorf("%s: transition(%v, %v, %+v) = %+v, want %+v", c.name, c.s, c.e, c.f, got, c.want)
		}
	}
}

// The chain of services that exit at once, driven through the table as
// vm.go drives it: every one becomes ready, whichever comes first of its
// exit and its launch outcome, and the next one starts.
func TestTransitionChain(t *testing.T) {
	for _, exitFirst := range []bool{false, true} {
		readies := 0
		for range 41 {
			f := facts{phase: running, onExit: config.OnExitIgnore, ws: exitedWS(0)}
			s := launching
			if exitFirst {
				st := transition(s, seExit, f)
				s = st.next
				f.reaped = true
			}
			st := transition(s, seExec, f)
			if st.do&fxReady != 0 {
				readies++
			}
			if exitFirst != (st.do&fxExit != 0) {
				t.Fatalf("exit first %v: kept exit applied %v", exitFirst, st.do&fxExit != 0)
			}
			// Then the exit: the kept one, or the one reaped now.
			if end := transition(st.next, seExit, f); end != (step{next: gone}) {
				t.Fatalf("exit first %v: the exit gives %+v", exitFirst, end)
			}
		}
		if readies != 41 {
			t.Errorf("exit first %v: %d of 41 ready", exitFirst, readies)
		}
	}
}

func TestRestartDelay(t *testing.T) {
	var got []time.Duration
	n := 0
	for range 12 {
		var d time.Duration
		d, n = restartDelay(n, time.Second)
		got = append(got, d)
	}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
	if d, n := restartDelay(9, backoffReset+time.Second); d != backoffFirst || n != 1 {
		t.Errorf("after a long run: %v, count %d; want %v, 1", d, n, backoffFirst)
	}
}

func TestVMStatus(t *testing.T) {
	for _, c := range []struct {
		failed, byItself bool
		want             int
	}{{false, false, 0}, {false, true, 3}, {true, false, 1}, {true, true, 1}} {
		if got := vmStatus(c.failed, c.byItself); got != c.want {
			t.Errorf("vmStatus(failed %v, by itself %v) = %d, want %d", c.failed, c.byItself, got, c.want)
		}
	}
}
