// Package config holds the typed form of a vmsup configuration (see
// docs/reference.md). Parse turns JSON into these values once and reports every
// problem with its JSON path; nothing else in vmsup reads a config.
//
// It owns the rules of what a config may say and the defaults it fills
// in. It must not touch system state: it reads the config (read.go) and
// nothing else of the host, and writes, probes and creates nothing, so
// that `vmsup validate` is safe anywhere. What the host offers (Landlock
// ABI, cgroup controllers) is the supervisor's to check, at start.
//
// The parser builds a tree of the document (json.go) and walks it: the
// VM and the checks across its services (vm.go), each service (service.go,
// limits.go, network.go, syscalls.go), the dependency graph (graph.go),
// and the values they share (values.go, names.go).
package config

import (
	"syscall"
	"time"
)

// LandlockMode is the VM's "landlock": whether a service may run
// without Landlock on a kernel that lacks it.
type LandlockMode string

const (
	LandlockRequired   LandlockMode = "required"
	LandlockBestEffort LandlockMode = "best-effort"
	LandlockOff        LandlockMode = "off"
)

// OnExit is a service's "on_exit": what its exit does to the VM.
type OnExit string

const (
	OnExitShutdown OnExit = "shutdown"
	OnExitRestart  OnExit = "restart"
	OnExitIgnore   OnExit = "ignore"
)

// Propagation is the VM's "mount.propagation": how mounts made on the
// host after the start reach the VM's mount namespace.
type Propagation string

const (
	PropagationSlave   Propagation = "slave"
	PropagationPrivate Propagation = "private"
)

// VM is one validated configuration. Every default from the contract is
// already filled in: RuntimeDir, ShutdownTimeout, Landlock, Propagation.
// Cgroup is empty when the config did not name one; the supervisor
// derives "<cgroup2 mount>/vmsup/<name>" because that needs the host.
type VM struct {
	Name            string
	RuntimeDir      string
	Cgroup          string
	UID, GID        *uint32 // VM-level defaults for services; nil if unset
	Landlock        LandlockMode
	ShutdownTimeout time.Duration
	Mount           Mount
	Services        []Service
}

type Mount struct {
	Propagation   Propagation
	ReadonlyPaths []string
	MaskedPaths   []string
	Binds         []Bind
}

type Bind struct {
	Source, Target string
	Readonly       bool
}

// Service is one supervised process. UID/GID are resolved: the service's
// own value, else the VM default; Parse rejects a service that would end
// up with neither unless it says "uid": 0.
type Service struct {
	Name         string
	Argv         []string
	Env          map[string]string // nil when the config has no env
	Cwd          string
	UID, GID     uint32
	Groups       []uint32
	Capabilities []Capability
	PrivateTmp   int64 // bytes; 0 = no private /tmp
	PrivateShm   int64 // bytes; 0 = no private /dev/shm
	// UserNamespaces lets the service create user namespaces; without it
	// the kernel refuses them (see package launcher).
	UserNamespaces bool
	Sockets        []Socket
	Devices        []Device
	// Connect lists the pathname sockets the service may connect to; nil
	// when not given (any its file modes allow), empty when given empty.
	Connect    []string
	Network    string // NetworkNone (default) or NetworkHost
	Taps       []Tap
	Landlock   *LandlockPaths // nil when landlock_paths is absent
	Limits     Limits
	Rlimits    []Rlimit
	After      []string
	Ready      Ready
	OnExit     OnExit
	StopSignal syscall.Signal
	VMM        *VMM // nil unless this service runs the VM

	// Syscalls is what the service's seccomp filter lets through
	// besides the default.
	Syscalls Syscalls
}

// Capability is a Linux capability number with its CAP_ name.
type Capability struct {
	Name  string
	Value uint
}

type Socket struct {
	Path string
	FD   int
	Mode uint32 // permission bits; default 0600
	UID  uint32 // owner; default the service's uid
	GID  uint32 // group; default the service's gid
}

// Device is a device node that appears in the service's /dev; FD 0
// means it is not also opened and handed over.
type Device struct {
	Path string
	FD   int
}

type LandlockPaths struct {
	Read, Write, Execute []string
}

// Limits are cgroup v2 values. Zero/nil means "not set".
type Limits struct {
	MemoryMax  int64 // bytes; -1 = "max"
	MemoryHigh int64 // bytes; -1 = "max"
	PidsMax    int64 // -1 = "max"
	CPUWeight  uint64
	CPUMax     string // written verbatim to cpu.max, e.g. "50000 100000" or "max 100000"
}

// Unlimited is the value of an rlimit or limit given as "unlimited"/"max".
const Unlimited = -1

type Rlimit struct {
	Name     string // lower-case, without RLIMIT_
	Resource int    // unix.RLIMIT_*
	Value    uint64 // unix.RLIM_INFINITY for "unlimited"
}

// Ready says when a service counts as ready. Exactly one of Socket,
// Exists and NotifyFD is set; all empty means ready once started.
type Ready struct {
	Socket   string
	Exists   string
	NotifyFD int // 0 = unused
	// Timeout bounds the wait for the rule (DefaultReadyTimeout unless
	// "timeout" says otherwise; 0 = wait for ever): a service not ready
	// by then fails the VM.
	Timeout time.Duration
}

// DefaultReadyTimeout is ready.timeout's default. A QEMU under TCG on a
// loaded 2-core host opens its QMP socket within 3 s, and 100 VMs
// started at once are all ready within 8 s: a minute is far beyond any
// healthy start, yet short enough that a start that hangs (a VMM stuck
// before it listens) fails, and s6 restarts it, within a minute instead
// of never.
const DefaultReadyTimeout = 60 * time.Second

// VMM says how to ask the guest to power off. Exactly one field is set.
type VMM struct {
	QMP             string
	CloudHypervisor string
	Signal          syscall.Signal
}

// Error is one problem found in a config, with the JSON path it concerns.
type Error struct {
	Path string // e.g. "services[1].limits.memory_max"; "" for the document
	Msg  string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}
