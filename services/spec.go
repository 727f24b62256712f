// Package services starts one service the way the config says and tells
// when it is ready.
//
// A service starts in two steps. The supervisor (PID 1 of the VM) forks
// a copy of vmsup straight into the service's cgroup and into a new
// mount namespace (clone3 with CLONE_INTO_CGROUP | CLONE_NEWNS), with the
// service's file descriptors already at their final numbers. That copy,
// the launcher, runs Exec: one linear sequence (private /tmp and /dev/shm,
// rlimits, Landlock, credentials and capabilities, descriptors, working
// directory) ending in execve of the service. Doing this in a short-lived
// child keeps the supervisor unrestricted and multithreaded; rlimits and
// LISTEN_PID are per-process and cannot be set from a forking thread.
package services

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"vmsup/config"
	"vmsup/landlock"
)

// SpecEnv carries the Spec from the supervisor to the launcher. The
// environment is readable only by the same user (root), unlike argv.
const SpecEnv = "_VMSUP_SERVICE"

// DefaultPath is the PATH of a service whose env does not set one.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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
	Rlimits  []config.Rlimit
	// LandlockABI is the ABI to enforce with (0 = Landlock off).
	LandlockABI int
	Paths       *landlock.Paths
	Keep        []int  // descriptors the service receives besides 0, 1, 2
	Listen      int    // number of sockets announced in LISTEN_FDS
	ListenNames string // LISTEN_FDNAMES
	ErrFD       int    // where the launcher reports a failure; close-on-exec
	Umask       int
}

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

// NewSpec builds the launcher spec of s. extraGroup, when not nil, is
// added to the supplementary groups (the VM's gid, which owns the
// runtime directory).
func NewSpec(s *config.Service, path string, abi int, extraGroup *uint32, umask int) *Spec {
	sp := &Spec{
		Name: s.Name, Path: path, Argv: s.Argv, Cwd: s.Cwd,
		UID: s.UID, GID: s.GID, Groups: append([]uint32(nil), s.Groups...),
		Tmp: s.PrivateTmp, Shm: s.PrivateShm, Rlimits: s.Rlimits,
		LandlockABI: abi, Umask: umask,
	}
	if extraGroup != nil && *extraGroup != s.GID && !contains(sp.Groups, *extraGroup) {
		sp.Groups = append(sp.Groups, *extraGroup)
	}
	for _, c := range s.Capabilities {
		sp.Caps = append(sp.Caps, c.Value)
	}
	if s.Landlock != nil {
		sp.Paths = &landlock.Paths{Read: s.Landlock.Read, Write: s.Landlock.Write, Execute: s.Landlock.Execute}
	}
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
		names = append(names, strings.TrimSuffix(baseName(so.Path), ".sock"))
	}
	if len(socks) > 0 {
		sp.Listen = len(socks)
		sp.ListenNames = strings.Join(names, ":")
		env["LISTEN_FDS"] = strconv.Itoa(len(socks))
		env["LISTEN_FDNAMES"] = sp.ListenNames
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sp.Env = append(sp.Env, k+"="+env[k])
	}
	return sp
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

func contains(list []uint32, v uint32) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func (sp *Spec) encode() (string, error) {
	b, err := json.Marshal(sp)
	return string(b), err
}

func decodeSpec() (*Spec, error) {
	s := os.Getenv(SpecEnv)
	if s == "" {
		return nil, errors.New(SpecEnv + " is not set: this mode is only for vmsup itself")
	}
	var sp Spec
	if err := json.Unmarshal([]byte(s), &sp); err != nil {
		return nil, fmt.Errorf("decode %s: %w", SpecEnv, err)
	}
	return &sp, nil
}
