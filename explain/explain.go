// Package explain is `vmsup explain`: what each service of a config could
// reach on this host, what the kernel enforces for it and what it lacks,
// and what services that share a uid can do to each other, in the spirit
// of `systemd-analyze security` but about cross-service and host
// exposure.
//
// Every section of a service's report is one function (credentials,
// filesystem, sockets, devices, network, syscalls, barriers), so a new
// config field fills in its own section. The facts come from the
// packages that enforce them: the filter's groups from seccomp, the
// runtime dir's view from services, /dev from launcher, /proc from
// supervisor, ABI numbers from landlock. Analyse only reads: the config,
// the Landlock ABI and the kernel release.
//
// It owns the report and its verdicts. It must not enforce, create or
// change anything, nor keep its own copy of a fact an enforcing package
// holds.
package explain

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"vmsup/config"
	"vmsup/landlock"
)

// Report is the whole analysis (the JSON of `vmsup explain --json`).
type Report struct {
	VM       string    `json:"vm"`
	Kernel   Kernel    `json:"kernel"`
	Services []Service `json:"services"`
	// SyscallFilter is the default filter of every service, by group.
	SyscallFilter []FilterGroup `json:"syscall_filter"`
	// Pairs are the services (and PID 1) that share a uid: what each may
	// do to the other that no barrier of vmsup stops.
	Pairs []Pair `json:"same_uid_pairs"`
}

// Kernel is what the analysis assumed of this host.
type Kernel struct {
	Release     string `json:"release"`
	LandlockABI int    `json:"landlock_abi"` // as vmsup would use it (capped by VMSUP_LANDLOCK_ABI_MAX)
	Landlock    string `json:"landlock"`     // the config's mode
}

// Service is one service's exposure.
type Service struct {
	Name         string       `json:"name"`
	UID          uint32       `json:"uid"`
	GID          uint32       `json:"gid"`
	Groups       []uint32     `json:"groups"`
	Capabilities []Capability `json:"capabilities"`
	FileSystem   []string     `json:"file_system"`
	Sockets      []string     `json:"sockets"`
	Devices      []string     `json:"devices"`
	Network      []string     `json:"network"`
	Syscalls     []string     `json:"syscalls"`
	Enforced     []Barrier    `json:"enforced"`
	Lacks        []Barrier    `json:"lacks"`
	Verdict      string       `json:"verdict"`
}

// Capability is one kept capability and what it grants.
type Capability struct {
	Name   string `json:"name"`
	Grants string `json:"grants"`
}

// Barrier is one protection, present or missing.
type Barrier struct {
	Name   string `json:"name"`
	Detail string `json:"detail"`
	// Refuses: `vmsup run` would refuse this config on this host.
	Refuses bool `json:"refuses,omitempty"`
}

// Pair is two processes with the same uid.
type Pair struct {
	A, B       string      `json:"-"`
	Members    [2]string   `json:"members"`
	UID        uint32      `json:"uid"`
	Operations []Operation `json:"operations"`
}

// Operation is one kernel operation one side may use on the other.
type Operation struct {
	Call   string `json:"call"`
	Effect string `json:"effect"`
	Unless string `json:"unless,omitempty"` // a condition that stops it
}

// pid1 is how PID 1 appears among the pairs.
const pid1 = "vmsup (PID 1)"

// Host is what the analysis needs of the kernel.
type Host struct {
	Release     string
	LandlockABI int
}

// ThisHost probes the running kernel.
func ThisHost() Host {
	var u unix.Utsname
	unix.Uname(&u)
	return Host{Release: unix.ByteSliceToString(u.Release[:]), LandlockABI: landlock.ABI()}
}

// Analyse explains vm on this host.
func Analyse(vm *config.VM) *Report { return AnalyseOn(vm, ThisHost()) }

// AnalyseOn explains vm on a host like h.
func AnalyseOn(vm *config.VM, h Host) *Report {
	abi := 0
	if vm.Landlock != config.LandlockOff {
		abi = h.LandlockABI
	}
	r := &Report{VM: vm.Name, Kernel: Kernel{Release: h.Release, LandlockABI: abi, Landlock: string(vm.Landlock)}, SyscallFilter: filterGroups()}
	for i := range vm.Services {
		s := &vm.Services[i]
		e := Service{Name: s.Name, UID: s.UID, GID: s.GID, Groups: groups(vm, s)}
		e.Capabilities = credentials(s, abi)
		e.FileSystem = filesystem(vm, s)
		e.Sockets = sockets(vm, s, abi)
		e.Devices = devices(s)
		e.Network = network(s, abi)
		e.Syscalls = syscalls(s)
		e.Enforced, e.Lacks = barriers(vm, s, abi)
		r.Services = append(r.Services, e)
	}
	r.Pairs = pairs(vm, abi)
	for i := range r.Services {
		r.Services[i].Verdict = verdict(&r.Services[i], &vm.Services[i], r.Pairs, abi)
	}
	return r
}

// Refusals are what `vmsup run` would refuse of the config on this host.
func Refusals(r *Report) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range r.Services {
		for _, b := range s.Lacks {
			if b.Refuses && !seen[b.Detail] {
				seen[b.Detail] = true
				out = append(out, b.Detail)
			}
		}
	}
	return out
}

func has(s *config.Service, name string) bool {
	return slices.ContainsFunc(s.Capabilities, func(c config.Capability) bool { return c.Name == name })
}

// groups are its supplementary groups: its own, and the VM's gid,
// which owns the runtime dir (as package services adds it).
func groups(vm *config.VM, s *config.Service) []uint32 {
	g := append([]uint32{}, s.Groups...)
	if vm.GID != nil && *vm.GID != s.GID && !slices.Contains(g, *vm.GID) {
		g = append(g, *vm.GID)
	}
	return g
}

// credentials lists the kept capabilities with what each grants.
func credentials(s *config.Service, abi int) []Capability {
	out := []Capability{}
	for _, c := range s.Capabilities {
		g := grants[c.Name]
		if g == "" {
			g = "(not described)"
		}
		g += filterNote(s, c.Name)
		if c.Name == "CAP_DAC_READ_SEARCH" && readLimited(s, abi) {
			g += "; Landlock limits both to its read paths"
		}
		out = append(out, Capability{c.Name, g})
	}
	return out
}

// filesystem is the service's file system view and what it may write.
func filesystem(vm *config.VM, s *config.Service) []string {
	var out []string
	view := "the host's root file system"
	if len(vm.Mount.ReadonlyPaths) > 0 {
		view += ", read-only: " + strings.Join(vm.Mount.ReadonlyPaths, " ")
	}
	if len(vm.Mount.MaskedPaths) > 0 {
		view += ", masked: " + strings.Join(vm.Mount.MaskedPaths, " ")
	}
	out = append(out, "view: "+view)
	for _, b := range vm.Mount.Binds {
		mode := "read-write"
		if b.Readonly {
			mode = "read-only"
		}
		out = append(out, fmt.Sprintf("bind: %s on %s, %s", b.Source, b.Target, mode))
	}
	if l := s.Landlock; l != nil {
		out = append(out, "Landlock read: "+list(l.Read), "Landlock write: "+list(l.Write), "Landlock execute: "+list(l.Execute))
	} else {
		who := fmt.Sprintf("uid %d", s.UID)
		g := groups(vm, s)
		if len(g) > 0 || s.GID != 0 {
			who += fmt.Sprintf(", gid %d", s.GID)
		}
		if len(g) > 0 {
			who += groupsText(g)
		}
		if has(s, "CAP_DAC_OVERRIDE") {
			out = append(out, "writes: every file of its view not read-only or masked (CAP_DAC_OVERRIDE, no landlock_paths)")
		} else {
			out = append(out, "writes: whatever the modes of its view let "+who+" write (no landlock_paths)")
		}
	}
	if s.PrivateTmp > 0 {
		out = append(out, fmt.Sprintf("/tmp: its own tmpfs, %d bytes", s.PrivateTmp))
	} else {
		out = append(out, "/tmp: the host's, shared with every process that uses it")
	}
	if s.PrivateShm > 0 {
		out = append(out, fmt.Sprintf("/dev/shm: its own tmpfs, %d bytes", s.PrivateShm))
	} else {
		out = append(out, "/dev/shm: the host's, shared")
	}
	out = append(out, kernelFiles()...)
	out = append(out, "runtime dir "+vm.RuntimeDir+": "+runtimeDir(vm, s))
	return out
}

func list(l []string) string {
	if len(l) == 0 {
		return "nothing"
	}
	return strings.Join(l, " ")
}

// barriers lists what this kernel enforces for the service, and what it
// lacks.
func barriers(vm *config.VM, s *config.Service, abi int) (enforced, lacks []Barrier) {
	on := func(name, detail string) { enforced = append(enforced, Barrier{Name: name, Detail: detail}) }
	off := func(name, detail string, refuses bool) {
		lacks = append(lacks, Barrier{Name: name, Detail: detail, Refuses: refuses})
	}
	either := func(name, detail string, enforced bool) {
		if enforced {
			on(name, detail)
		} else {
			off(name, detail, false)
		}
	}
	switch {
	case vm.Landlock == config.LandlockOff:
		off("landlock", `"landlock": "off": no signal or abstract socket scope, no ptrace confinement, no file rules`, false)
	case abi >= landlock.ScopeABI:
		on("landlock scopes", fmt.Sprintf("Landlock ABI %d: signals and abstract UNIX sockets confined to its own domain; ptrace only into nested domains", abi))
	case abi >= 1:
		off("landlock scopes", fmt.Sprintf("Landlock ABI %d cannot scope signals or abstract UNIX sockets (needs ABI %d, Linux 6.12)", abi, landlock.ScopeABI), vm.Landlock == config.LandlockRequired)
	default:
		off("landlock", "Landlock is unavailable on this kernel", vm.Landlock == config.LandlockRequired)
	}
	if s.Landlock != nil && abi >= 1 {
		on("landlock paths", fmt.Sprintf("file access limited to landlock_paths, with the rights of ABI %d: %s", abi, strings.Join(fsRights(abi), ", ")))
	} else if s.Landlock != nil {
		off("landlock paths", "landlock_paths given, but this kernel cannot enforce them", false)
	} else {
		off("landlock paths", "no landlock_paths: file access is decided by modes and capabilities alone", false)
	}
	d, ok := socketBarrier(vm, s, abi)
	either("pathname socket rule", d, ok)
	on("no_new_privs", "set: setuid binaries and file capabilities give nothing")
	if len(s.Capabilities) == 0 {
		on("capabilities", "none, bounding set included")
	} else {
		on("capabilities", fmt.Sprintf("every other dropped, bounding set included (%d kept)", len(s.Capabilities)))
	}
	on("cgroup", "a cgroup of its own, whose files belong to root")
	if l := s.Limits; l.MemoryMax == 0 && l.PidsMax == 0 {
		off("limits", "no memory_max or pids_max: it can exhaust the host's memory or PIDs", false)
	} else {
		on("limits", limitText(l))
	}
	if !s.UserNamespaces {
		on("no user namespaces", "the cover over / refuses them")
	} else {
		off("no user namespaces", `"user_namespaces": true: it may create user namespaces`, false)
	}
	on("own session keyring", "a fresh, empty session keyring")
	if n := len(refused(s)); n > 0 {
		on("syscall filter", fmt.Sprintf("seccomp: %d calls refused (EPERM)", n))
	} else {
		off("syscall filter", "syscalls.allow lifts every group: no filter is loaded", false)
	}
	// What gets past masks: CAP_SYS_ADMIN unmounting them, or file
	// handles read with CAP_DAC_READ_SEARCH (within its Landlock read
	// paths, when it has them).
	var past []string
	if unmounts(s) {
		past = append(past, "CAP_SYS_ADMIN with mount calls allowed unmounts masks and read-only binds")
	}
	if handles(s) {
		where := ""
		if readLimited(s, abi) {
			where = " below its Landlock read paths (" + strings.Join(s.Landlock.Read, " ") + ")"
		}
		if where == "" {
			where = " and read-only binds"
		}
		past = append(past, "CAP_DAC_READ_SEARCH with open_by_handle_at allowed opens files by handle past masks"+where)
	}
	for _, p := range past {
		off("masks", p, false)
	}
	if unmounts(s) || (handles(s) && !readLimited(s, abi)) {
		off("status record hidden", "PID 1's record is under a mask, which it gets past (masks)", false)
	} else {
		on("status record hidden", "PID 1's record is under a mask in its mount namespace")
	}
	d, ok = netBarrier(s)
	either("network namespace", d, ok)
	return enforced, lacks
}

// handles: it reads files by handle (CAP_DAC_READ_SEARCH, and its
// filter lets open_by_handle_at through).
func handles(s *config.Service) bool {
	return has(s, "CAP_DAC_READ_SEARCH") && allowed(s, "open_by_handle_at")
}

// unmounts: CAP_SYS_ADMIN, and its filter lets some mount call through.
func unmounts(s *config.Service) bool {
	return has(s, "CAP_SYS_ADMIN") && anyAllowed(s, "@mount")
}

// readLimited: Landlock limits what it reads, by path or by handle.
func readLimited(s *config.Service, abi int) bool { return s.Landlock != nil && abi >= 1 }

// fsRights names the file rights each ABI adds.
func fsRights(abi int) []string {
	rights := []string{"read, write, execute, make and remove files"}
	for _, r := range []struct {
		abi  int
		name string
	}{{2, "refer (links and renames across directories)"}, {3, "truncate"}, {5, "device ioctl"}} {
		if abi >= r.abi {
			rights = append(rights, r.name)
		}
	}
	return rights
}

func limitText(l config.Limits) string {
	var p []string
	if l.MemoryMax != 0 {
		p = append(p, fmt.Sprintf("memory_max %d", l.MemoryMax))
	}
	if l.PidsMax != 0 {
		p = append(p, fmt.Sprintf("pids_max %d", l.PidsMax))
	}
	return strings.Join(p, ", ")
}

type member struct {
	name     string
	uid, gid uint32
	caps     map[string]bool
	all      bool // holds every capability (PID 1)
	sockets  []config.Socket
	svc      *config.Service // nil for PID 1
}

func (m member) lacksCapOf(o member) bool {
	if m.all {
		return false
	}
	if o.all {
		return true
	}
	for c := range o.caps {
		if !m.caps[c] {
			return true
		}
	}
	return false
}

// pairs lists every two processes of the VM with the same uid, PID 1
// (root, every capability) included, and the kernel operations that uid
// alone allows between them: the hostile suite's known gaps. Signals,
// ptrace and abstract sockets appear too when Landlock cannot scope.
func pairs(vm *config.VM, abi int) []Pair {
	ms := []member{{name: pid1, all: true}}
	for i, s := range vm.Services {
		m := member{name: s.Name, uid: s.UID, gid: s.GID, caps: map[string]bool{}, sockets: s.Sockets, svc: &vm.Services[i]}
		for _, c := range s.Capabilities {
			m.caps[c.Name] = true
		}
		ms = append(ms, m)
	}
	out := []Pair{} // [] in JSON, never null
	for i := 0; i < len(ms); i++ {
		for j := i + 1; j < len(ms); j++ {
			a, b := ms[i], ms[j]
			if a.uid != b.uid {
				continue
			}
			p := Pair{A: a.name, B: b.name, Members: [2]string{a.name, b.name}, UID: a.uid}
			p.Operations = operations(vm, a, b, abi)
			if len(p.Operations) > 0 {
				out = append(out, p)
			}
		}
	}
	return out
}

// operations are what a may do to b or b to a.
func operations(vm *config.VM, a, b member, abi int) []Operation {
	landlockOn := vm.Landlock != config.LandlockOff
	var ops []Operation
	dir := func(x, y member, call, effect, unless string) {
		ops = append(ops, Operation{Call: fmt.Sprintf("%s: %s on %s", call, x.name, y.name), Effect: effect, Unless: unless})
	}
	for _, d := range [][2]member{{a, b}, {b, a}} {
		x, y := d[0], d[1]
		if x.all {
			continue // PID 1 is vmsup itself
		}
		if x.gid == y.gid {
			dir(x, y, "prlimit(2)", "changes its resource limits: RLIMIT_CPU makes the kernel kill it, RLIMIT_NOFILE or RLIMIT_NPROC starve it", "")
		}
		if !x.lacksCapOf(y) {
			dir(x, y, "setpriority(2)", "renices it down to nice 19", "")
			dir(x, y, "sched_setaffinity(2)", "pins it to one CPU", "")
			dir(x, y, "ioprio_set(2)", "lowers its I/O priority to idle", "")
		}
		dir(x, y, "write /proc/PID/oom_score_adj", "raises its oom_score_adj: the OOM killer's first victim", "it is not dumpable")
		for _, so := range y.sockets {
			if so.UID == x.uid && so.Mode&0o200 != 0 && reaches(vm, x.svc, so.Path, abi) {
				dir(x, y, "connect(2) "+so.Path, "talks to its socket as if it were its client", "")
			}
		}
		if !landlockOn || abi < landlock.ScopeABI {
			if !x.lacksCapOf(y) {
				dir(x, y, "kill(2), ptrace(2), process_vm_readv(2)", "signals it, reads and writes its memory", "")
			} else {
				dir(x, y, "kill(2)", "signals it, SIGKILL included", "")
			}
			if hostNet(x) && hostNet(y) {
				dir(x, y, "connect(2) abstract sockets", "reaches its abstract UNIX sockets", "")
			}
		}
	}
	return ops
}

// readSearch is what CAP_DAC_READ_SEARCH lets s read.
func readSearch(s *config.Service, abi int) string {
	switch {
	case readLimited(s, abi) && handles(s):
		return "CAP_DAC_READ_SEARCH reads any file below its Landlock read paths, by handle too (past masks there)"
	case readLimited(s, abi):
		return "CAP_DAC_READ_SEARCH reads any file below its Landlock read paths, past file modes"
	case handles(s):
		return "CAP_DAC_READ_SEARCH with open_by_handle_at allowed reads any file on the host, by handle past every mask (the status record's included)"
	}
	return "CAP_DAC_READ_SEARCH reads any file of its view past file modes (not by handle: open_by_handle_at is refused)"
}

// hostNet: m is in the host's network namespace (PID 1 always is).
func hostNet(m member) bool { return m.svc == nil || m.svc.Network == config.NetworkHost }

// verdict is one line per service: how much it exposes (high: it is
// root in all but name; medium: it can reach others' files or processes;
// low: only what it is handed), why, and the barriers it lacks.
func verdict(e *Service, s *config.Service, pairs []Pair, abi int) string {
	level := "low"
	raise := func(l string) {
		if l == "high" || level == "low" {
			level = l
		}
	}
	var why []string
	for _, c := range s.Capabilities {
		if void(s, c.Name) {
			continue // its filter refuses all the capability grants
		}
		switch c.Name {
		case "CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE", "CAP_BPF", "CAP_SYS_BOOT", "CAP_SETUID", "CAP_MKNOD":
			raise("high")
			why = append(why, c.Name+" is root in all but name")
		case "CAP_DAC_OVERRIDE":
			raise("high")
			why = append(why, "CAP_DAC_OVERRIDE writes other services' and VMs' files")
		case "CAP_DAC_READ_SEARCH":
			raise("medium")
			why = append(why, readSearch(s, abi))
		}
	}
	if s.UID == 0 {
		raise("medium")
		why = append(why, "uid 0 owns most of the host's files")
	}
	var peers []string
	for _, p := range pairs {
		if p.A == s.Name {
			peers = append(peers, p.B)
		} else if p.B == s.Name {
			peers = append(peers, p.A)
		}
	}
	if len(peers) > 0 {
		raise("medium")
		why = append(why, "shares its uid with "+strings.Join(peers, ", "))
	}
	var lacks []string
	for _, b := range e.Lacks {
		if b.Refuses {
			why = append(why, "run refuses: "+b.Detail)
		}
		if !slices.Contains(lacks, b.Name) {
			lacks = append(lacks, b.Name)
		}
	}
	if len(why) == 0 {
		why = append(why, "reaches other services only through what they hand it")
	}
	out := level + ": " + strings.Join(why, "; ")
	if len(lacks) > 0 {
		out += "; lacks " + strings.Join(lacks, ", ")
	}
	return out
}
