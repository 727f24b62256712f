package supervisor

import (
	"time"

	"golang.org/x/sys/unix"

	"vmsup/config"
)

// The exit and restart policy as pure functions of what the state
// machine knows (vm.go applies them; policy_table_test.go tests them
// without root). The table of states and events is vm.go's doc comment.

// Back-off of on_exit "restart": the first restart waits backoffFirst,
// each further one twice as long, up to backoffMax; a launch that ran
// for backoffReset starts the count again.
const (
	backoffFirst = 100 * time.Millisecond
	backoffMax   = 30 * time.Second
	backoffReset = time.Minute
)

// restartDelay is the delay before the next restart of a service
// restarted `restarts` times in a row, having run for `ran` this time;
// it returns the delay and the new count.
func restartDelay(restarts int, ran time.Duration) (time.Duration, int) {
	if ran > backoffReset {
		restarts = 0
	}
	d := backoffFirst << min(restarts, 16)
	return min(d, backoffMax), restarts + 1
}

// svcEvent is what happened to one service.
type svcEvent int

const (
	seExec     svcEvent = iota // launch outcome: the service was exec'd
	seExecFail                 // launch outcome: it could not be (setup or exec failed)
	seExit                     // its process was reaped
	seReady                    // its ready rule was met
)

// facts are what the policy looks at besides the state and the event.
type facts struct {
	phase     phase
	onExit    config.OnExit   // its on_exit
	rule      bool            // it has a ready rule (socket, exists, notify_fd)
	reaped    bool            // seExec, seExecFail: its exit was reaped before the outcome
	ws        unix.WaitStatus // seExit
	sent      uint64          // signals vmsup sent this launch: bit n for signal n
	launchErr bool            // seExit: this launch's outcome was seExecFail
}

// effect is what the state machine does besides entering the next state.
type effect uint

const (
	fxWatch   effect = 1 << iota // watch the ready rule
	fxReady                      // the service is ready: dependents may start
	fxExit                       // apply the exit reaped before the outcome now (as seExit)
	fxRestart                    // restart after a back-off
	fxFail                       // the VM failed (status 1)
	fxStop                       // the VM stops (nothing new starts; the others are stopped)
)

// step is a transition: the next state, what to do, and why (a log line
// beyond the event itself, or "").
type step struct {
	next svcState
	do   effect
	why  string
}

// transition is the service state machine. Events that do not apply to
// the state (a stale outcome, readiness of a service that already
// ended) leave it as it is.
func transition(s svcState, e svcEvent, f facts) step {
	switch {
	case s == launching && e == seExit:
		// The outcome decides how to report it: it always follows (the
		// outcome pipe closes at exec or at the launcher's death).
		return step{next: launching}
	case s == launching && e == seExec:
		st := step{next: ready, do: fxReady}
		if f.rule {
			st = step{next: started, do: fxWatch}
		}
		if f.reaped {
			// "Ready once started" holds even for a service that
			// has already ended: it started.
			st.do |= fxExit
		}
		return st
	case (s == waiting || s == backoff) && e == seExecFail:
		// The launcher could not even be forked.
		return step{next: gone, do: fxFail | fxStop}
	case s == launching && e == seExecFail:
		// Whatever its on_exit: retrying what could not even be
		// exec'd cannot help, and its dependents would wait forever.
		st := step{next: started, do: fxFail | fxStop}
		if f.reaped {
			st.do |= fxExit
		}
		return st
	case s == started && e == seReady:
		return step{next: ready, do: fxReady}
	case (s == started || s == ready) && e == seExit:
		return exitStep(f)
	}
	return step{next: s}
}

// exitStep applies a service's end to the VM: see vm.go, "Exit status".
func exitStep(f facts) step {
	end := step{next: gone}
	switch {
	case f.launchErr:
		return end // the VM failed at the outcome already
	case f.phase == killing:
		return end // the kill decided the status
	case f.phase == stopping:
		if f.onExit == config.OnExitShutdown && !stoppedCleanly(f.ws, f.sent) {
			return step{next: gone, do: fxFail, why: "did not stop as asked: the VM failed"}
		}
		return end
	}
	switch f.onExit {
	case config.OnExitRestart:
		if f.ws.CoreDump() {
			return step{next: gone, do: fxFail | fxStop, why: "dumped core: not restarting"}
		}
		return step{next: backoff, do: fxRestart}
	case config.OnExitIgnore:
		return end
	}
	// Exit 0 is a clean end, for the VMM (the guest powered off) and for
	// a helper alike: virtiofsd, for one, exits 0 when the VMM closes its
	// vhost-user connection, which can be seen before the VMM's own exit.
	if f.ws.Exited() && f.ws.ExitStatus() == 0 {
		return step{next: gone, do: fxStop}
	}
	return step{next: gone, do: fxFail | fxStop}
}

// stoppedCleanly: while stopping, a service ends cleanly by exiting 0,
// or, once vmsup sent it a signal, by exiting with any status or dying
// of a signal vmsup sent (without a core dump).
func stoppedCleanly(ws unix.WaitStatus, sent uint64) bool {
	switch {
	case ws.Exited():
		return ws.ExitStatus() == 0 || sent != 0
	case ws.Signaled() && !ws.CoreDump():
		return sent&(1<<uint(ws.Signal())) != 0
	}
	return false
}

// vmStatus is `vmsup run`'s status once every service is gone: 1 if the
// VM failed; 0 if it stopped on request; 3 if it ended by itself (the
// VMM or another shutdown service exited 0, or every service ended
// with on_exit ignore) before any stop request.
func vmStatus(failed, byItself bool) int {
	switch {
	case failed:
		return ExitFailed
	case byItself:
		return ExitPoweredOff
	}
	return ExitGraceful
}
