// Package launcher is vmsup-exec, the program between fork and exec of
// every service. The supervisor forks it straight into the service's
// cgroup and a new mount namespace (clone3 with CLONE_INTO_CGROUP |
// CLONE_NEWNS), with the service's descriptors already at their final
// numbers; Exec then runs one linear sequence (private /tmp and /dev/shm,
// rlimits, Landlock, credentials and capabilities, descriptors, working
// directory) ending in execve of the service.
//
// It is a binary of its own, not a mode of vmsup, because it starts once
// per service launch: it links only this package, go-landlock and
// x/sys, and starts in 4.5 ms where all of vmsup took 6.6 ms on the
// project's machine. It also keeps the code that runs between fork and
// exec small enough to read in one sitting. Doing this in a short-lived
// child keeps the supervisor unrestricted and multithreaded; rlimits and
// LISTEN_PID are per-process and cannot be set from a forking thread.
package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"vmsup/landlock"
)

// SpecEnv carries the Spec from the supervisor to the launcher. The
// environment is readable only by the same user (root), unlike argv.
const SpecEnv = "_VMSUP_SERVICE"

// Spec is everything the launcher sets up between fork and exec, already
// resolved by the supervisor.
type Spec struct {
	Name     string
	Path     string // resolved argv[0]
	Argv     []string
	Env      []string
	Cwd      string
	UID, GID uint32
	Groups   []uint32
	Caps     []uint // kept as permitted, effective, inheritable, ambient and in the bounding set
	Tmp, Shm int64  // private tmpfs sizes in bytes, 0 = none
	Rlimits  []Rlimit
	// LandlockABI is the ABI to enforce with (0 = Landlock off).
	LandlockABI int
	Paths       *landlock.Paths
	Keep        []int // descriptors the service receives besides 0, 1, 2
	Listen      int   // number of sockets announced in LISTEN_FDS
	ErrFD       int   // where the launcher reports a failure; close-on-exec
	Umask       int
}

// Rlimit is one resource limit, set as both soft and hard limit.
type Rlimit struct {
	Name     string
	Resource int
	Value    uint64
}

// Encode returns the Spec as the value of SpecEnv.
func (sp *Spec) Encode() (string, error) {
	b, err := json.Marshal(sp)
	return string(b), err
}

func decodeSpec() (*Spec, error) {
	s := os.Getenv(SpecEnv)
	if s == "" {
		return nil, errors.New(SpecEnv + " is not set: vmsup-exec is started by vmsup only")
	}
	var sp Spec
	if err := json.Unmarshal([]byte(s), &sp); err != nil {
		return nil, fmt.Errorf("decode %s: %w", SpecEnv, err)
	}
	return &sp, nil
}
