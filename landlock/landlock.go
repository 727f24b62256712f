// Package landlock gives each service its own Landlock domain: signal and
// abstract UNIX socket scoping always (ABI 6), plus filesystem rules when
// the service lists landlock_paths. It is a thin layer over go-landlock;
// what it adds is the probe that `vmsup check` and the `landlock` config
// mode share, and the mapping from the config's read/write/execute lists.
package landlock

import (
	"fmt"
	"os"
	"strconv"

	ll "github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// ScopeABI is the first Landlock ABI that scopes signals and abstract
// UNIX sockets (Linux 6.12).
const ScopeABI = 6

// ABIMaxEnv caps the ABI that ABI reports. It lets a user (or a test) see
// how vmsup behaves on an older kernel; it can only make vmsup enforce
// less or refuse more, never enforce more than the kernel can.
const ABIMaxEnv = "VMSUP_LANDLOCK_ABI_MAX"

// ABI returns the kernel's Landlock ABI version, 0 if Landlock is
// unavailable, capped by $VMSUP_LANDLOCK_ABI_MAX when that is set.
func ABI() int {
	v, err := llsys.LandlockGetABIVersion()
	if err != nil || v < 0 {
		v = 0
	}
	if s := os.Getenv(ABIMaxEnv); s != "" {
		if max, err := strconv.Atoi(s); err == nil && max >= 0 && max < v {
			v = max
		}
	}
	return v
}

// Paths are the filesystem rules of one service.
type Paths struct {
	Read, Write, Execute []string
}

// Rights granted by each list. Write does not imply read: a path that
// must be both read and written is listed in both.
const (
	readRights  = llsys.AccessFSReadFile | llsys.AccessFSReadDir
	execRights  = llsys.AccessFSExecute
	writeRights = llsys.AccessFSWriteFile | llsys.AccessFSRemoveDir | llsys.AccessFSRemoveFile |
		llsys.AccessFSMakeChar | llsys.AccessFSMakeDir | llsys.AccessFSMakeReg | llsys.AccessFSMakeSock |
		llsys.AccessFSMakeFifo | llsys.AccessFSMakeBlock | llsys.AccessFSMakeSym | llsys.AccessFSRefer |
		llsys.AccessFSTruncate | llsys.AccessFSIoctlDev
	fileRights = llsys.AccessFSExecute | llsys.AccessFSWriteFile | llsys.AccessFSReadFile |
		llsys.AccessFSTruncate | llsys.AccessFSIoctlDev
)

// Restrict puts the calling process (all its threads) into a new Landlock
// domain: scoped for signals and abstract sockets when abi allows it, and
// restricted to paths when paths is not nil. abi is the value of ABI(),
// passed in so the caller decides once (and logs once) what is enforced.
// It sets no_new_privs. A kernel below ScopeABI gets what it supports; the
// caller refuses to start earlier when the config requires scoping.
func Restrict(abi int, paths *Paths) error {
	if abi <= 0 {
		return nil
	}
	var args []any
	if abi >= ScopeABI {
		args = append(args, ll.ScopedSet(llsys.ScopeAbstractUnixSocket|llsys.ScopeSignal))
	}
	var rules []ll.Rule
	if paths != nil {
		args = append(args, ll.AccessFSSet(readRights|execRights|writeRights))
		// A rule on a file may only carry file rights (the kernel rejects
		// directory rights such as make_reg on it).
		add := func(rights ll.AccessFSSet, list []string) {
			for _, p := range list {
				r := rights
				if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
					r &= fileRights
				}
				rules = append(rules, ll.PathAccess(r, p))
			}
		}
		add(readRights, paths.Read)
		add(writeRights, paths.Write)
		add(execRights, paths.Execute)
	}
	if len(args) == 0 {
		return nil
	}
	cfg, err := ll.NewConfig(args...)
	if err != nil {
		return fmt.Errorf("landlock: %w", err)
	}
	// BestEffort drops only what this kernel lacks (e.g. truncate before
	// ABI 3); scoping itself was decided by abi above.
	if err := cfg.BestEffort().Restrict(rules...); err != nil {
		return fmt.Errorf("landlock: %w", err)
	}
	return nil
}

// Missing describes what a kernel with this ABI cannot enforce, for the
// best-effort log line; "" when nothing is missing.
func Missing(abi int) string {
	switch {
	case abi <= 0:
		return "Landlock is unavailable: no scoping and no filesystem rules"
	case abi < ScopeABI:
		return fmt.Sprintf("Landlock ABI %d cannot scope signals or abstract UNIX sockets (needs %d)", abi, ScopeABI)
	}
	return ""
}
