// Package supervisor runs one VM: `vmsup run`.
//
// Process model:
//
//	s6-supervise
//	 └─ vmsup run          the outer stage: s6's child, outside every namespace
//	     └─ vmsup (PID 1)  the inner stage: PID 1 of a new PID + mount namespace
//	         ├─ service    one per config entry, each in its own cgroup,
//	         └─ ...        mount namespace and Landlock domain
//
// The outer stage validates and checks the host, starts the inner stage,
// claims the VM's cgroup and runtime directory, moves the inner stage
// into the VM's cgroup, hands the VM over to it and waits. The inner
// stage is started before anything is created so that a SIGKILL of the
// outer stage at any moment leaves it there to remove what was created
// (until the hand-over it waits and does nothing else). It forwards stop
// requests as bytes on a pipe (the control pipe), not as signals: bytes
// wait in the pipe until the inner stage reads them, whereas a signal sent
// before PID 1 installs its handlers would be dropped by the kernel.
//
// The same pipe is the inner stage's lifeline: when the outer stage dies
// in any way (SIGKILL by s6-svc -k, the death signal of its parent), the
// kernel closes the write end and the inner stage reads end of file. It
// then kills every service, removes the VM's cgroups and runtime directory
// and exits, which makes the kernel remove every process and mount left.
// Conversely, when the inner stage ends (or is killed), the outer stage
// removes whatever it left. Each stage cleans up after the other; a later
// start cleans up after both.
package supervisor

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/cgroup"
	"vmsup/config"
	"vmsup/landlock"
	"vmsup/s6"
	"vmsup/services"
)

// Exit statuses of `vmsup run` (docs/reference.md).
const (
	ExitGraceful = 0
	ExitFailed   = 1
	ExitConfig   = 100
	ExitTemp     = 111
)

// Options are the flags of `vmsup run`.
type Options struct {
	Config    string // path, or "-" for standard input
	ParentPID int    // 0: the process that started vmsup
	NotifyFD  int    // -1: none
}

// ctlStop on the control pipe is a stop request (SIGTERM, SIGINT); the
// second one makes the stop forceful.
const ctlStop = 'T'

// ctlGo on the control pipe, always its first byte, hands the VM over
// to PID 1: its cgroup and runtime directory exist and PID 1 is in the
// supervisor's leaf.
const ctlGo = 'G'

// Descriptors the inner stage receives.
const (
	fdConfig  = 3
	fdControl = 4
	fdOuter   = 5 // a pidfd of the outer stage
	fdNotify  = 6
)

// cleanupTimeout bounds waiting for a killed cgroup to empty.
const cleanupTimeout = 5 * time.Second

var logger = log.New(os.Stderr, "vmsup: ", 0)

// Run is `vmsup run`: it returns the exit status.
func Run(o Options) int {
	signal.Ignore(syscall.SIGHUP)
	survivePipes()
	stops := make(chan os.Signal, 4)
	// Caught from the start, so a SIGTERM during setup is not lost.
	signal.Notify(stops, syscall.SIGTERM, syscall.SIGINT)

	raw, vm, status := load(o.Config)
	if vm == nil {
		return status
	}
	if err := s6.DieWithParent(o.ParentPID); err != nil {
		logger.Print(err)
		return ExitTemp
	}
	pf, status, err := preflight(vm)
	if err != nil {
		logger.Print(err)
		return status
	}
	// PID 1 comes first, before anything is created: from the first
	// thing created on, a SIGKILL of this process leaves PID 1 to remove
	// it (see handOver).
	in, err := startInner(o, raw)
	if err != nil {
		logger.Print(err)
		return ExitTemp
	}
	defer in.close()
	cg, err := claimCgroup(pf.cgroup, neededControllers(vm))
	if err != nil {
		logger.Print(err)
		in.abort()
		return ExitTemp
	}
	defer cg.lock.Close()
	err = makeRuntimeDir(vm)
	if err == nil {
		err = in.handOver(cg)
	}
	if err != nil {
		logger.Print(err)
		in.abort()
		destroyVM(vm, cg)
		return ExitTemp
	}
	status = in.wait(stops)
	if err := destroyVM(vm, cg); err != nil {
		logger.Print(err)
		if status == ExitGraceful {
			status = ExitTemp
		}
	}
	return status
}

// survivePipes keeps vmsup alive when its log reader (s6-log, a
// terminal) is gone: Go exits on SIGPIPE from a write to fd 1 or 2
// unless the signal is handled, and dying there would skip the cleanup.
// Handled rather than ignored, because an ignored signal would stay
// ignored in the services.
func survivePipes() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}

// load reads and validates the config; every problem is printed.
func load(path string) ([]byte, *config.VM, int) {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = io.ReadAll(os.Stdin)
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		logger.Printf("read config: %v", err)
		return nil, nil, ExitConfig
	}
	vm, errs := config.Parse(raw)
	for _, e := range errs {
		logger.Printf("config: %v", e)
	}
	if len(errs) > 0 {
		return nil, nil, ExitConfig
	}
	return raw, vm, 0
}

// preflighted holds what preflight derived from the host.
type preflighted struct {
	cgroup string
	paths  []string // resolved argv[0] per service
	abi    int      // Landlock ABI to enforce with; 0 = off
}

// preflight checks everything that can be checked without changing the
// host, so that a config or host problem leaves nothing behind.
func preflight(vm *config.VM) (*preflighted, int, error) {
	pf := &preflighted{}
	var problems []string
	for i := range vm.Services {
		p, err := services.Resolve(&vm.Services[i])
		if err != nil {
			problems = append(problems, fmt.Sprintf("config: services[%d].argv[0]: %v", i, err))
		}
		pf.paths = append(pf.paths, p)
	}
	for i, b := range vm.Mount.Binds {
		for _, p := range []struct{ field, path string }{{"source", b.Source}, {"target", b.Target}} {
			if _, err := os.Stat(p.path); err != nil {
				problems = append(problems, fmt.Sprintf("config: mount.binds[%d].%s: %v", i, p.field, err))
			}
		}
	}
	for i, p := range vm.Mount.ReadonlyPaths {
		if _, err := os.Stat(p); err != nil {
			problems = append(problems, fmt.Sprintf("config: mount.readonly_paths[%d]: %v", i, err))
		}
	}
	// Like a missing binary: the config names what is not there.
	for i, s := range vm.Services {
		for j, d := range s.Devices {
			if _, err := os.Stat(d.Path); err != nil {
				problems = append(problems, fmt.Sprintf("config: services[%d].devices[%d].path: %v", i, j, err))
			}
		}
	}
	if len(problems) > 0 {
		return nil, ExitConfig, errors.New(strings.Join(problems, "\n"))
	}

	if _, err := services.LauncherPath(); err != nil {
		return nil, ExitTemp, err
	}

	switch vm.Landlock {
	case config.LandlockRequired, config.LandlockBestEffort:
		pf.abi = landlock.ABI()
		if miss := landlock.Missing(pf.abi); miss != "" {
			if vm.Landlock == config.LandlockRequired {
				return nil, ExitTemp, fmt.Errorf(`landlock is required but %s; set "landlock": "best-effort" to run without it`, miss)
			}
			logger.Printf("landlock best-effort: %s", miss)
		}
	}

	dir, err := vmCgroupDir(vm)
	if err != nil {
		return nil, ExitTemp, err
	}
	pf.cgroup = dir
	return pf, 0, nil
}

// vmCgroupDir is the VM's cgroup: as configured, or
// <cgroup2 mount>/vmsup/<name>.
func vmCgroupDir(vm *config.VM) (string, error) {
	if vm.Cgroup != "" {
		return vm.Cgroup, nil
	}
	mnt, err := cgroup.Mount()
	if err != nil {
		return "", fmt.Errorf("cgroup: %w", err)
	}
	return filepath.Join(mnt, "vmsup", vm.Name), nil
}

// neededControllers lists the cgroup controllers the limits use.
func neededControllers(vm *config.VM) []string {
	need := map[string]bool{}
	for _, s := range vm.Services {
		l := s.Limits
		if l.MemoryMax != 0 || l.MemoryHigh != 0 {
			need["memory"] = true
		}
		if l.PidsMax != 0 {
			need["pids"] = true
		}
		if l.CPUWeight != 0 || l.CPUMax != "" {
			need["cpu"] = true
		}
	}
	var out []string
	for _, c := range []string{"cpu", "memory", "pids"} {
		if need[c] {
			out = append(out, c)
		}
	}
	return out
}

// vmCgroup is the VM's claimed cgroup.
type vmCgroup struct {
	dir  string   // the VM's cgroup
	leaf string   // the supervisor's leaf inside it
	lock *os.File // the VM's cgroup directory, flock'ed: see claimCgroup
}

// claimCgroup creates the VM's cgroup and locks it (a shared flock on
// the directory) for as long as either stage lives: each stage holds a
// shared lock of its own (PID 1 takes its own once the VM is handed
// over), so the directory is locked until both are gone. That lock is
// what makes one VM name run once; a cgroup that exists but is not
// locked is what a crash of both stages left, and is removed first.
// Claims serialise on a lock of the parent directory, so no other vmsup
// can remove or recreate the directory between the check and the lock.
func claimCgroup(dir string, controllers []string) (*vmCgroup, error) {
	parent := filepath.Dir(dir)
	if err := mkdirAncestors(parent, controllers); err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	pl, err := lockDir(parent, unix.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("cgroup: lock %s: %w", parent, err)
	}
	defer pl.Close()

	if old, err := lockDir(dir, unix.LOCK_EX|unix.LOCK_NB); err == nil {
		logger.Printf("removing %s left by an earlier run", dir)
		err := cgroup.Destroy(dir, cleanupTimeout)
		old.Close()
		if err != nil {
			return nil, fmt.Errorf("stale cgroup: %w", err)
		}
	} else if errors.Is(err, unix.EWOULDBLOCK) {
		return nil, fmt.Errorf("cgroup %s is in use: this VM is already running", dir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	if err := cgroup.Mkdir(dir); err != nil {
		return nil, err
	}
	lock, err := lockDir(dir, unix.LOCK_SH|unix.LOCK_NB)
	if err != nil {
		unix.Rmdir(dir)
		return nil, fmt.Errorf("cgroup: lock %s: %w", dir, err)
	}
	cg := &vmCgroup{dir: dir, leaf: filepath.Join(dir, "supervisor"), lock: lock}
	fail := func(err error) (*vmCgroup, error) {
		cgroup.Destroy(dir, cleanupTimeout)
		lock.Close()
		return nil, err
	}
	have, err := cgroup.Controllers(dir)
	if err != nil {
		return fail(fmt.Errorf("cgroup: %w", err))
	}
	for _, c := range controllers {
		if !containsString(have, c) {
			return fail(fmt.Errorf("cgroup controller %s is needed by limits but not available in %s: enable it in %s/cgroup.subtree_control", c, dir, parent))
		}
	}
	if err := cgroup.Mkdir(cg.leaf); err != nil {
		return fail(err)
	}
	if err := cgroup.Enable(dir, controllers); err != nil {
		return fail(fmt.Errorf("cgroup: %w", err))
	}
	return cg, nil
}

// lockDir opens a directory and flocks it with how.
func lockDir(dir string, how int) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// mkdirAncestors creates the missing ancestors of a VM cgroup (typically
// <mount>/vmsup) and enables in each one it created the controllers its
// parent offers and the VM needs. Ancestors it finds are left alone.
func mkdirAncestors(dir string, controllers []string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := mkdirAncestors(filepath.Dir(dir), controllers); err != nil {
		return err
	}
	if err := cgroup.Mkdir(dir); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	have, err := cgroup.Controllers(dir)
	if err != nil {
		return err
	}
	var enable []string
	for _, c := range controllers {
		if containsString(have, c) {
			enable = append(enable, c)
		}
	}
	return cgroup.Enable(dir, enable)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// makeRuntimeDir creates the runtime directory, removing one an earlier
// crash left (the claimed cgroup proves no vmsup of this name runs). It
// belongs to root and the VM's gid, mode 0770, so services (which get the
// VM's gid as a supplementary group) can create their sockets in it and
// other users cannot enter; without a VM gid it is 0755.
func makeRuntimeDir(vm *config.VM) error {
	dir := vm.RuntimeDir
	if _, err := os.Lstat(dir); err == nil {
		logger.Printf("removing %s left by an earlier run", dir)
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("stale runtime dir: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("runtime dir: %w", err)
	}
	mode, gid := os.FileMode(0o755), 0
	if vm.GID != nil {
		mode, gid = 0o770, int(*vm.GID)
	}
	if err := os.Mkdir(dir, mode); err != nil {
		return fmt.Errorf("runtime dir: %w", err)
	}
	if err := os.Chown(dir, 0, gid); err != nil {
		return fmt.Errorf("runtime dir: %w", err)
	}
	return os.Chmod(dir, mode) // mkdir applied the umask
}

// destroyVM removes the VM's cgroup (killing anything still in it) and
// its runtime directory.
func destroyVM(vm *config.VM, cg *vmCgroup) error {
	var errs []error
	if err := cgroup.Destroy(cg.dir, cleanupTimeout); err != nil {
		errs = append(errs, fmt.Errorf("cgroup: %w", err))
	}
	if err := os.RemoveAll(vm.RuntimeDir); err != nil {
		errs = append(errs, fmt.Errorf("runtime dir: %w", err))
	}
	return errors.Join(errs...)
}

func innerStatus(ps *os.ProcessState, err error) int {
	if ps == nil {
		logger.Printf("PID 1: %v", err)
		return ExitTemp
	}
	ws := ps.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		logger.Printf("PID 1 was killed by %s", unix.SignalName(ws.Signal()))
		return ExitTemp
	}
	return ws.ExitStatus()
}

// memfile returns a sealed in-memory file holding b.
func memfile(name string, b []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL)
	return f, nil
}
