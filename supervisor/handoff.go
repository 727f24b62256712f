package supervisor

// The hand-off between the two stages (run.go's doc): the descriptors
// PID 1 receives, what the outer stage found that PID 1 uses as it is,
// and the bytes on its control pipe.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
)

// handoff is what the outer stage found while checking the host
// (preflight) that PID 1 needs: PID 1 uses it as it is rather than
// looking again.
type handoff struct {
	Cgroup   string   `json:"cgroup"`   // the VM's cgroup (vmCgroupDir)
	Mount    string   `json:"mount"`    // the cgroup2 mount (cgroup.Mount), whose root PID 1 moves to at its end
	ABI      int      `json:"abi"`      // the Landlock ABI to enforce with; 0 = off
	Launcher string   `json:"launcher"` // vmsup-exec (services.LauncherPath)
	Paths    []string `json:"paths"`    // each service's argv[0] as found in its PATH, in config order
}

// handoffFile is PID 1's fdConfig: a sealed memfd holding the hand-off
// as one line of JSON (which escapes every newline in a string), then
// the config as the outer stage read it.
func handoffFile(h *handoff, raw []byte) (*os.File, error) {
	line, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	return memfile("vmsup-config", append(append(line, '\n'), raw...))
}

// readHandoff reads what handoffFile wrote.
func readHandoff(f *os.File) (*handoff, []byte, error) {
	// From offset 0: the open file is the outer stage's, whose writes
	// left its offset at the end.
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
	if err != nil {
		return nil, nil, err
	}
	line, raw, ok := bytes.Cut(b, []byte{'\n'})
	if !ok {
		return nil, nil, errors.New("no hand-off from the outer vmsup")
	}
	h := &handoff{}
	if err := json.Unmarshal(line, h); err != nil {
		return nil, nil, err
	}
	return h, raw, nil
}

// ctlStop on the control pipe is a stop request (SIGTERM, SIGINT); the
// second one makes the stop forceful.
const ctlStop = 'T'

// Descriptors the inner stage receives: exec.Cmd.ExtraFiles[i] becomes
// fd fdExtra+i (inner.go builds it by these numbers).
const (
	fdExtra   = 3
	fdConfig  = 3 // the hand-off and the config (handoffFile)
	fdControl = 4
	fdOuter   = 5 // a pidfd of the outer stage
	fdNotify  = 6
	fdClaim   = 7 // the VM's lock: see claimVM; the highest
)
