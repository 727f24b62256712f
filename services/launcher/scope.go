package launcher

import (
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"

	"vmsup/landlock/pathrule"
)

// restrict enforces the service's Landlock ruleset on this thread (and
// so on the service it execs). The supervisor built the ruleset; what is
// left is the rules on the private /tmp and /dev/shm, which exist only
// now. no_new_privs comes first: the service must never gain privileges
// through execve, and Landlock wants it from a thread that may lose
// CAP_SYS_ADMIN.
func restrict(sp *Spec) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return wrap("prctl(PR_SET_NO_NEW_PRIVS)", err)
	}
	if sp.Ruleset < 0 {
		return nil
	}
	for _, r := range sp.Rules {
		if err := pathrule.Add(sp.Ruleset, r); err != nil {
			return wrap("landlock: rule on "+r.Path, err)
		}
	}
	// With TSYNC (ABI 8) the Go runtime's other threads of the launcher
	// enter the domain too, so no thread of this process is ever outside
	// it; before ABI 8 only this one does, which is the thread that
	// execs, and execve ends the others.
	var flags uint32
	if sp.TSync {
		flags = llsys.FlagRestrictSelfTSync
	}
	if err := llsys.LandlockRestrictSelf(sp.Ruleset, flags); err != nil {
		return wrap("landlock_restrict_self", err)
	}
	return nil
}
