// Package landlock gives each service its own Landlock domain: signal and
// abstract UNIX socket scoping always (ABI 6), plus filesystem rules when
// the service lists landlock_paths. It uses go-landlock's per-ABI presets
// and its syscall layer; what it adds is the probe that `vmsup check` and
// the `landlock` config mode share, the mapping from the config's
// read/write/execute lists, and building a service's ruleset in the
// supervisor, so that the launcher only enforces it on its one thread
// (go-landlock's Restrict enforces on every thread of the caller, which
// the launcher does not need and pays for at every launch).
//
// It owns the ABI probe, the config's mode and the building of rulesets.
// It must not restrict the supervisor itself: rulesets are enforced only
// in the launched child (package launcher).
package landlock

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	ll "github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"

	"vmsup/landlock/pathrule"
)

// ScopeABI is the first Landlock ABI that scopes signals and abstract
// UNIX sockets (Linux 6.12).
const ScopeABI = 6

// Later ABIs vmsup uses where the kernel has them.
const (
	// TSyncABI (Linux 7.0) enforces a domain on every thread of the
	// caller at once (LANDLOCK_RESTRICT_SELF_TSYNC), where older ABIs
	// act on the calling thread only.
	TSyncABI = 8
	// ResolveUnixABI (Linux 7.1) guards connects to pathname UNIX
	// sockets (LANDLOCK_ACCESS_FS_RESOLVE_UNIX): a service with
	// `connect` reaches those sockets and no other.
	ResolveUnixABI = 9
	// UDPABI (Linux 7.2) adds UDP bind and connect rights and quiet
	// rules. vmsup enforces none of them: a service's network is its own
	// namespace, which a port rule would not narrow further.
	UDPABI = 10
)

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
)

// versions are go-landlock's presets for each ABI: what a kernel of
// that ABI can handle. The index is the ABI.
var versions = []ll.Config{{}, ll.V1, ll.V2, ll.V3, ll.V4, ll.V5, ll.V6, ll.V7, ll.V8, ll.V9, ll.V10}

// Ruleset builds the Landlock ruleset of one service and returns its
// descriptor (close-on-exec), or -1 when abi leaves nothing to enforce.
// It is scoped for signals and abstract sockets when abi allows it,
// restricted to paths when paths is not nil, and, when connect is not
// nil and abi has RESOLVE_UNIX, allows connecting to the pathname sockets
// in connect and no others; rights this kernel lacks
// (e.g. truncate before ABI 3) are dropped, as go-landlock's BestEffort
// does. The supervisor builds it, so the service's launcher only has to
// enforce it with RestrictSelf.
//
// Rules on paths at or below one of mounts (the service's private /tmp
// and /dev/shm, mounted later by the launcher) are returned instead of
// added: Landlock ties a rule to an inode and ignores the directory a
// mount covers, so those rules must be added once the mount exists.
func Ruleset(abi int, paths *Paths, connect []string, mounts []string) (fd int, later []pathrule.Rule, err error) {
	if abi <= 0 {
		return -1, nil, nil
	}
	v := versions[min(abi, len(versions)-1)]
	var attr llsys.RulesetAttr
	if abi >= ScopeABI {
		attr.Scoped = uint64(v.Scoped) & (llsys.ScopeAbstractUnixSocket | llsys.ScopeSignal)
	}
	if paths != nil {
		attr.HandledAccessFS = uint64(v.HandledAccessFS) & (readRights | execRights | writeRights)
	}
	if connect != nil {
		attr.HandledAccessFS |= uint64(v.HandledAccessFS) & llsys.AccessFSResolveUnix
	}
	if attr.Scoped == 0 && attr.HandledAccessFS == 0 {
		return -1, nil, nil
	}
	fd, err = llsys.LandlockCreateRuleset(&attr, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("landlock: create ruleset: %w", err)
	}
	var rules []pathrule.Rule
	if paths != nil {
		rules = paths.rules(attr.HandledAccessFS)
	}
	if attr.HandledAccessFS&llsys.AccessFSResolveUnix != 0 {
		// A rule on each socket itself: the inode vmsup or the serving
		// service bound. A socket bound again later (its service
		// restarted) is a new inode this rule does not cover.
		for _, c := range connect {
			rules = append(rules, pathrule.Rule{Path: c, Access: llsys.AccessFSResolveUnix})
		}
	}
	for _, r := range rules {
		if below(r.Path, mounts) {
			later = append(later, r)
			continue
		}
		if err := pathrule.Add(fd, r); err != nil {
			unix.Close(fd)
			return -1, nil, fmt.Errorf("landlock: rule on %s: %w", r.Path, err)
		}
	}
	return fd, later, nil
}

// rules lists the grants of p, limited to the handled rights.
func (p *Paths) rules(handled uint64) []pathrule.Rule {
	var rules []pathrule.Rule
	for _, l := range []struct {
		access uint64
		paths  []string
	}{{readRights, p.Read}, {writeRights, p.Write}, {execRights, p.Execute}} {
		for _, path := range l.paths {
			rules = append(rules, pathrule.Rule{Path: path, Access: l.access & handled})
		}
	}
	return rules
}

func below(path string, mounts []string) bool {
	for _, m := range mounts {
		if path == m || strings.HasPrefix(path, m+"/") {
			return true
		}
	}
	return false
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

// CheckABIMaxEnv refuses a $VMSUP_LANDLOCK_ABI_MAX that is not a
// non-negative number, which ABI would otherwise ignore.
func CheckABIMaxEnv() error {
	s := os.Getenv(ABIMaxEnv)
	if s == "" {
		return nil
	}
	if n, err := strconv.Atoi(s); err != nil || n < 0 {
		return fmt.Errorf("%s=%s: want a Landlock ABI number (0 or more)", ABIMaxEnv, strconv.Quote(s))
	}
	return nil
}
