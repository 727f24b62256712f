// Package pathrule adds one Landlock path rule to a ruleset. It is the
// part of package landlock that the service launcher needs too (for the
// rules on its private /tmp and /dev/shm), kept free of fmt, os and
// go-landlock's higher layer so that the launcher stays small.
//
// It owns adding one path rule. It must not import fmt, os or go-
// landlock's higher layer, which the launcher would then link.
package pathrule

import (
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Rule grants Access (a set of LANDLOCK_ACCESS_FS_* bits) beneath Path.
type Rule struct {
	Path   string
	Access uint64
}

// FileAccess are the rights a rule on a file (not a directory) may
// carry: the kernel rejects directory rights such as make_reg on one.
const FileAccess = uint64(llsys.AccessFSExecute | llsys.AccessFSWriteFile | llsys.AccessFSReadFile |
	llsys.AccessFSTruncate | llsys.AccessFSIoctlDev | llsys.AccessFSResolveUnix)

// Add adds r to the ruleset fd, limited to FileAccess when r.Path is not
// a directory. A path that does not exist is an error: the config
// promised it.
func Add(fd int, r Rule) error {
	pfd, err := unix.Open(r.Path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		r.Access &= FileAccess
	}
	if r.Access == 0 {
		return nil
	}
	return llsys.LandlockAddPathBeneathRule(fd, &llsys.PathBeneathAttr{AllowedAccess: r.Access, ParentFd: pfd}, 0)
}
