// Package launcher is vmsup-exec, the program between fork and exec of
// every service. The supervisor forks it straight into the service's
// cgroup and a new mount namespace (clone3 with CLONE_INTO_CGROUP |
// CLONE_NEWNS), with the service's descriptors, including its Landlock
// ruleset, already at their final numbers; Exec then runs one linear
// sequence (descriptors, the service's view: a minimal /dev, /sys
// read-only and its VM's runtime dir alone, private /tmp and /dev/shm,
// the cover that
// refuses user namespaces, rlimits, umask, Landlock, credentials and
// capabilities, a session keyring, working directory, the seccomp
// filter) ending in execve of the service.
//
// It is a binary of its own, not a mode of vmsup, because it starts once
// per service launch and its start-up is most of a launch's cost: it
// links only this package, x/sys, go-landlock's syscall layer and the
// constants of package exit (no fmt, os or encoding/json, and nothing
// reflects at run time), so the Go runtime touches few pages. The supervisor does everything that can
// be done before the fork: it resolves the binary, opens the descriptors
// and builds the Landlock ruleset and the seccomp program. Doing the
// rest in a short-lived child keeps the supervisor unrestricted and
// multithreaded; rlimits and LISTEN_PID are per-process and cannot be
// set from a forking thread.
//
// It owns the steps between fork and exec. It must not import fmt, os,
// encoding/json or anything that reflects, and it must not touch anything
// outside the child it runs in but what the spec names.
package launcher

import (
	"errors"
	"strconv"
	"syscall"

	"vmsup/landlock/pathrule"
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
	LastCap  uint   // the highest capability this kernel knows
	Tmp, Shm int64  // private tmpfs sizes in bytes, 0 = none
	UserNS   bool   // the service may create user namespaces
	Rlimits  []Rlimit
	// Ruleset is the descriptor of the service's Landlock ruleset, -1 for
	// none; Rules are added to it once /tmp and /dev/shm are mounted.
	Ruleset  int
	Rules    []pathrule.Rule
	HasPaths bool  // landlock_paths restricts the file system
	TSync    bool  // Landlock ABI 8: enforce on every thread (LANDLOCK_RESTRICT_SELF_TSYNC)
	NetNS    int   // descriptor of the network namespace to join, -1 for the host's
	Keep     []int // descriptors the service receives besides 0, 1, 2
	Listen   int   // number of sockets announced in LISTEN_FDS
	ErrFD    int   // where the launcher reports a failure; close-on-exec
	Umask    int
	// Filter is the seccomp program, one sock_filter per number (code,
	// jt, jf, k from the high bits down); empty for none.
	Filter []uint64
	View   View
}

// Rlimit is one resource limit, set as both soft and hard limit.
type Rlimit struct {
	Name     string
	Resource int
	Value    uint64
}

// fields lists every field of the Spec once, in wire order, for both
// Encode and decodeSpec: a codec either appends each field or reads it.
func (sp *Spec) fields(c *codec) {
	c.str(&sp.Name)
	c.str(&sp.Path)
	c.strs(&sp.Argv)
	c.strs(&sp.Env)
	c.str(&sp.Cwd)
	num(c, &sp.UID)
	num(c, &sp.GID)
	nums(c, &sp.Groups)
	nums(c, &sp.Caps)
	num(c, &sp.LastCap)
	num(c, &sp.Tmp)
	num(c, &sp.Shm)
	c.flag(&sp.UserNS)
	c.count(len(sp.Rlimits), func(n int) { sp.Rlimits = make([]Rlimit, n) })
	for i := range sp.Rlimits {
		r := &sp.Rlimits[i]
		c.str(&r.Name)
		num(c, &r.Resource)
		num(c, &r.Value)
	}
	num(c, &sp.Ruleset)
	c.count(len(sp.Rules), func(n int) { sp.Rules = make([]pathrule.Rule, n) })
	for i := range sp.Rules {
		c.str(&sp.Rules[i].Path)
		num(c, &sp.Rules[i].Access)
	}
	c.flag(&sp.HasPaths)
	c.flag(&sp.TSync)
	num(c, &sp.NetNS)
	nums(c, &sp.Keep)
	num(c, &sp.Listen)
	num(c, &sp.ErrFD)
	num(c, &sp.Umask)
	nums(c, &sp.Filter)
	v := &sp.View
	c.count(len(v.Devices), func(n int) { v.Devices = make([]Node, n) })
	for i := range v.Devices {
		d := &v.Devices[i]
		c.str(&d.Path)
		num(c, &d.Mode)
		num(c, &d.Rdev)
		num(c, &d.UID)
		num(c, &d.GID)
	}
	c.str(&v.RunDir)
	c.flag(&v.HideParent)
	c.flag(&v.Writable)
	c.strs(&v.Protect)
	only := v.Only != nil
	c.flag(&only)
	c.strs(&v.Only)
	if !only {
		v.Only = nil
	} else if v.Only == nil {
		v.Only = []string{}
	}
}

// Encode returns the Spec as the value of SpecEnv.
func (sp *Spec) Encode() string {
	c := &codec{}
	sp.fields(c)
	return string(c.out)
}

func decodeSpec() (*Spec, error) {
	s, ok := syscall.Getenv(SpecEnv)
	if !ok {
		return nil, errors.New(SpecEnv + " is not set: vmsup-exec is started by vmsup only")
	}
	sp := &Spec{}
	c := &codec{in: s, decoding: true}
	sp.fields(c)
	if c.err == nil && c.in != "" {
		c.err = errors.New("trailing data")
	}
	if c.err != nil {
		return nil, errors.New("decode " + SpecEnv + ": " + c.err.Error())
	}
	return sp, nil
}

// codec is the Spec's wire format: every value is a netstring-like
// "<length>:<bytes>", so any byte but NUL (which an environment cannot
// hold) may appear in a value, and lists are a count followed by their
// items. It is this small so that the launcher needs neither reflection
// nor encoding/json, which cost it milliseconds of start-up.
type codec struct {
	decoding bool
	out      []byte // encoding
	in       string // decoding: what is left
	err      error
}

func (c *codec) str(p *string) {
	if !c.decoding {
		c.out = strconv.AppendInt(c.out, int64(len(*p)), 10)
		c.out = append(c.out, ':')
		c.out = append(c.out, *p...)
		return
	}
	if c.err != nil {
		return
	}
	i := 0
	for i < len(c.in) && c.in[i] != ':' {
		i++
	}
	n, err := strconv.Atoi(c.in[:i])
	if err != nil || i == len(c.in) || n < 0 || n > len(c.in)-i-1 {
		c.err = errors.New("malformed value at " + strconv.Quote(c.in[:min(len(c.in), 16)]))
		return
	}
	*p = c.in[i+1 : i+1+n]
	c.in = c.in[i+1+n:]
}

func (c *codec) strs(p *[]string) {
	c.count(len(*p), func(n int) { *p = make([]string, n) })
	for i := range *p {
		c.str(&(*p)[i])
	}
}

// count writes n, or reads a count and calls alloc with it.
func (c *codec) count(n int, alloc func(int)) {
	num(c, &n)
	if c.decoding && c.err == nil {
		if n < 0 || n > len(c.in) { // every item takes at least 2 bytes
			c.err = errors.New("bad count " + strconv.Itoa(n))
			return
		}
		alloc(n)
	}
}

func (c *codec) flag(p *bool) {
	n := 0
	if *p {
		n = 1
	}
	num(c, &n)
	*p = n != 0
}

type integer interface {
	~int | ~int64 | ~uint | ~uint32 | ~uint64
}

func num[T integer](c *codec, p *T) {
	if !c.decoding {
		s := strconv.FormatInt(int64(*p), 10)
		if *p > 0 {
			s = strconv.FormatUint(uint64(*p), 10)
		}
		c.str(&s)
		return
	}
	var s string
	c.str(&s)
	if c.err != nil {
		return
	}
	if len(s) > 0 && s[0] == '-' {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || T(v) > 0 || int64(T(v)) != v {
			c.err = errors.New("bad number " + strconv.Quote(s))
		}
		*p = T(v)
		return
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || uint64(T(v)) != v || T(v) < 0 {
		c.err = errors.New("bad number " + strconv.Quote(s))
	}
	*p = T(v)
}

func nums[T integer](c *codec, p *[]T) {
	c.count(len(*p), func(n int) { *p = make([]T, n) })
	for i := range *p {
		num(c, &(*p)[i])
	}
}
