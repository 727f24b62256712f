// Package services starts the services of a VM the way the config says
// (through vmsup-exec, see package launcher) and tells when they are ready.
//
// It owns one service's launch: its spec, descriptors, sockets and
// readiness checks. It must not keep VM state or decide restarts and
// shutdowns: the supervisor's event loop owns those.
package services

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"vmsup/config"
	"vmsup/landlock"
	"vmsup/landlock/pathrule"
	"vmsup/seccomp"
	"vmsup/services/launcher"
)

// DefaultPath is the PATH of a service whose env does not set one.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Resolve finds argv[0] the way execvp would, in the service's PATH.
func Resolve(s *config.Service) (string, error) {
	name := s.Argv[0]
	if strings.Contains(name, "/") {
		return name, checkExecutable(name)
	}
	path := DefaultPath
	if p, ok := s.Env["PATH"]; ok {
		path = p
	}
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH %s", name, path)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: not an executable file", p)
	}
	return nil
}

// Spec is a service ready to launch: what its launcher does, and the
// Landlock rules the supervisor turns into a ruleset for each launch.
type Spec struct {
	launcher.Spec
	abi     int // 0: Landlock off
	paths   *landlock.Paths
	connect []string // nil: pathname connects are not restricted by Landlock
	// NetNamespace is the service's network namespace (NewNetNS), which each
	// launch joins; nil for the host's.
	NetNamespace *os.File
}

// NewSpec builds the launch spec of s. abi is the Landlock ABI to
// enforce with (0 = off). extraGroup, when not nil, is added to the
// supplementary groups (the VM's gid, which owns the runtime directory).
func NewSpec(s *config.Service, path string, abi int, extraGroup *uint32, umask int) (*Spec, error) {
	last, err := lastCap()
	if err != nil {
		return nil, err
	}
	sp := &Spec{Spec: launcher.Spec{
		Name: s.Name, Path: path, Argv: s.Argv, Cwd: s.Cwd,
		UID: s.UID, GID: s.GID, Groups: append([]uint32(nil), s.Groups...),
		LastCap: last, Tmp: s.PrivateTmp, Shm: s.PrivateShm, Umask: umask,
		UserNS: s.UserNamespaces,
	}, abi: abi}
	if extraGroup != nil && *extraGroup != s.GID && !slices.Contains(sp.Groups, *extraGroup) {
		sp.Groups = append(sp.Groups, *extraGroup)
	}
	for _, r := range s.Rlimits {
		sp.Rlimits = append(sp.Rlimits, launcher.Rlimit{Name: r.Name, Resource: r.Resource, Value: r.Value})
	}
	filter, err := seccomp.Program(s.Syscalls.Allow)
	if err != nil {
		return nil, err
	}
	for _, r := range filter {
		sp.Filter = append(sp.Filter, uint64(r))
	}
	for _, c := range s.Capabilities {
		sp.Caps = append(sp.Caps, c.Value)
	}
	if s.Landlock != nil {
		sp.paths = &landlock.Paths{Read: s.Landlock.Read, Write: s.Landlock.Write, Execute: s.Landlock.Execute}
		sp.HasPaths = abi > 0
	}
	sp.connect = s.Connect
	sp.TSync = abi >= landlock.TSyncABI
	if sp.Cwd == "" {
		sp.Cwd = "/"
	}
	env := map[string]string{"PATH": DefaultPath}
	for k, v := range s.Env {
		env[k] = v
	}
	// Sockets are announced in fd order, as sd_listen_fds(3) expects.
	socks := append([]config.Socket(nil), s.Sockets...)
	sort.Slice(socks, func(i, j int) bool { return socks[i].FD < socks[j].FD })
	var names []string
	for _, so := range socks {
		names = append(names, strings.TrimSuffix(filepath.Base(so.Path), ".sock"))
	}
	if len(socks) > 0 {
		sp.Listen = len(socks)
		env["LISTEN_FDS"] = strconv.Itoa(len(socks))
		env["LISTEN_FDNAMES"] = strings.Join(names, ":")
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sp.Env = append(sp.Env, k+"="+env[k])
	}
	return sp, nil
}

// ruleset builds the Landlock ruleset of one launch (-1: none) and the
// rules the launcher adds once it has mounted the private /tmp and
// /dev/shm.
func (sp *Spec) ruleset() (int, []pathrule.Rule, error) {
	var mounts []string
	if sp.Tmp > 0 {
		mounts = append(mounts, "/tmp")
	}
	if sp.Shm > 0 {
		mounts = append(mounts, "/dev/shm")
	}
	return landlock.Ruleset(sp.abi, sp.paths, sp.connect, mounts)
}

// lastCap is the highest capability number this kernel knows.
func lastCap() (uint, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read cap_last_cap: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("read cap_last_cap: %w", err)
	}
	return uint(n), nil
}
