package supervisor

// The hand-off between the two stages (run.go's doc): the descriptors
// PID 1 receives and the bytes on its control pipe.

// ctlStop on the control pipe is a stop request (SIGTERM, SIGINT); the
// second one makes the stop forceful.
const ctlStop = 'T'

// ctlDone on the control pipe answers PID 1's status (see handBack): the
// outer stage has removed the VM's cgroup and runtime directory.
const ctlDone = 'D'

// Descriptors the inner stage receives.
const (
	fdConfig  = 3
	fdControl = 4
	fdOuter   = 5 // a pidfd of the outer stage
	fdStatus  = 6 // PID 1 writes the VM's status here (handBack)
	fdNotify  = 7
	fdClaim   = 8 // the VM's lock: see claimVM
)
