// Package exit holds vmsup's exit statuses, the numbers of the user
// contract (docs/reference.md: the Commands table and "vmsup run exit
// status"), so that supervisor, check, s6 and cmd/vmsup return, and the
// s6 finish script tests, the same numbers. They follow skarnet's
// conventions, so that an s6 finish script can act on them.
//
// It owns these numbers only; it imports nothing, so every package can
// use it. What each command means by a status is in its documentation;
// the meanings here are those of `vmsup run`, the others in brackets.
package exit

const (
	// OK: a stop request was honoured within shutdown_timeout (every
	// other command: success).
	OK = 0
	// Failed: the VM failed (a service with on_exit "shutdown" died, a
	// launch failed, a service was not ready in time, the guest had to
	// be killed at the timeout). [status: no such VM runs]
	Failed = 1
	// PoweredOff: the VM ended by itself, cleanly (the guest powered
	// off); an s6 finish script keeps the service down.
	PoweredOff = 3
	// Usage: a usage or configuration error; nothing was started and
	// retrying cannot help, so an s6 finish script keeps it down.
	Usage = 100
	// Temp: a temporary system failure; nothing is left behind.
	// [check: a required feature is missing or run would refuse the
	// config]
	Temp = 111
	// NoRestart is not vmsup's: it is what an s6 finish script exits
	// with to tell s6-supervise not to restart the service (as s6-svc -O
	// would), which the finish vmsup writes does on PoweredOff and Usage.
	NoRestart = 125
	// Launch is vmsup-exec's status when it could not turn into the
	// service, like a shell's that cannot run a command. It is not one of
	// vmsup's: the supervisor reads the cause from the error pipe.
	Launch = 127
)
