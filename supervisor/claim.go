package supervisor

// The VM claim, both stages' sides of it: the VM's lock (claimVM), a
// look at what an earlier run left (inspect), the VM's cgroup and
// runtime dir, each announced to PID 1 before it is made (intend), the
// hand-over (handOver, handedOver), and every removal: what an outer
// stage that died before the hand-over created (removeAbandoned), and
// the VM at its end (removeVM, destroyVM).

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"vmsup/cgroup"
	"vmsup/config"
	"vmsup/owned"
	"vmsup/status"
)

// ClaimDir holds one lock file per VM. It belongs to root, mode 0700,
// and PID 1 hides it from every service's view (an empty tmpfs over it),
// so that no service, whatever its uid or capabilities short of
// CAP_SYS_ADMIN, can open a lock and so block a VM's start. Lock files
// are never removed (removing one would let two claims of the same VM
// lock different files); the directory is on /run, emptied at boot.
const ClaimDir = "/run/vmsup-lock"

// ClaimPath is the lock file of the VM name with cgroup dir: its name
// and a hash of the cgroup, which makes one VM run once (the same name
// with another cgroup is another VM as far as the lock goes; the marks
// refuse it if it names this VM's cgroup or runtime dir).
func ClaimPath(name, cgroupDir string) string {
	// FNV, not a cryptographic hash: the names are vmsup's own (nothing
	// to forge, and a collision only serialises two VMs), and crypto's
	// package init would cost every vmsup start milliseconds here.
	h := fnv.New64a()
	h.Write([]byte(cgroupDir))
	return filepath.Join(ClaimDir, fmt.Sprintf("%s-%016x", name, h.Sum64()))
}

// claimVM takes the VM's lock, exclusively, for as long as either stage
// lives: PID 1 inherits the same open file, so the lock is released
// only when both are gone.
func claimVM(name, cgroupDir string) (*os.File, error) {
	if err := os.Mkdir(ClaimDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("claim: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(ClaimDir, &st); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 || st.Mode&0o077 != 0 {
		return nil, fmt.Errorf("claim: %s must be a directory of root with mode 0700 (it is %#o, uid %d)", ClaimDir, st.Mode, st.Uid)
	}
	p := ClaimPath(name, cgroupDir)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	f := os.NewFile(uintptr(fd), p)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("VM %s (cgroup %s) is in use: this VM is already running", name, cgroupDir)
		}
		return nil, fmt.Errorf("claim: lock %s: %w", p, err)
	}
	return f, nil
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

// staleState says which of the VM's cgroup and runtime dir an earlier
// run of this VM left (they carry its mark).
type staleState struct{ cgroup, runtimeDir bool }

// inspect looks at the VM's cgroup and runtime dir before anything is
// created: either may be missing or left by a crash of this VM (marked
// for it); anything else is someone else's, refused and left as it is.
func inspect(vm *config.VM, cgroupDir string) (staleState, error) {
	var st staleState
	var err error
	var problems []string
	if st.cgroup, err = owned.Check(cgroupDir, vm.Name); err != nil {
		problems = append(problems, fmt.Sprintf("cgroup %s exists and was not made by vmsup for VM %s: it is left as it is; remove it or choose another cgroup", cgroupDir, vm.Name))
	}
	if st.runtimeDir, err = owned.Check(vm.RuntimeDir, vm.Name); err != nil {
		problems = append(problems, fmt.Sprintf("runtime dir %s exists and was not made by vmsup for VM %s: it is left as it is; remove it or choose another runtime_dir", vm.RuntimeDir, vm.Name))
	}
	if len(problems) > 0 {
		return st, errors.New(strings.Join(problems, "\n"))
	}
	return st, nil
}

// ctlCgroup and ctlRuntimeDir on the control pipe, before ctlGo, say
// that the VM's cgroup or runtime dir is about to be created.
const (
	ctlCgroup     = 'c'
	ctlRuntimeDir = 'r'
)

// intend tells PID 1 what is about to be created (ctlCgroup,
// ctlRuntimeDir): should this process die before it is marked, PID 1
// knows the directory is this run's and not someone else's.
func (in *inner) intend(what byte) error {
	if _, err := in.ctl.Write([]byte{what}); err != nil {
		return fmt.Errorf("PID 1: %w", err)
	}
	return nil
}

// vmCgroup is the VM's cgroup, created and marked.
type vmCgroup struct {
	dir  string // the VM's cgroup
	leaf string // the supervisor's leaf inside it
}

// makeCgroup removes the VM cgroup an earlier run left, enables the
// controllers the limits need from the cgroup2 root down, and creates
// and marks the VM's cgroup and the supervisor's leaf. On failure it
// removes what it created.
func makeCgroup(in *inner, name, dir string, stale staleState, controllers []string) (*vmCgroup, error) {
	if stale.cgroup {
		logger.Printf("removing %s left by an earlier run", dir)
		if err := cgroup.Destroy(dir, cgroup.DestroyTimeout); err != nil {
			return nil, fmt.Errorf("stale cgroup: %w", err)
		}
	}
	if err := enableAncestors(filepath.Dir(dir), controllers); err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	if err := in.intend(ctlCgroup); err != nil {
		return nil, err
	}
	if err := cgroup.Mkdir(dir); err != nil {
		return nil, err
	}
	if err := owned.Mark(dir, name); err != nil {
		unix.Rmdir(dir)
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	cg := &vmCgroup{dir: dir, leaf: filepath.Join(dir, supervisorLeaf)}
	fail := func(err error) (*vmCgroup, error) {
		cgroup.Destroy(dir, cgroup.DestroyTimeout)
		return nil, err
	}
	if err := cgroup.Mkdir(cg.leaf); err != nil {
		return fail(err)
	}
	if err := cgroup.Enable(dir, controllers); err != nil {
		return fail(fmt.Errorf("cgroup: %w", err))
	}
	return cg, nil
}

// parentMark marks a parent of VM cgroups that vmsup created (not a VM
// name: names cannot start with ':').
const parentMark = ":parent"

// enableAncestors creates the missing ancestors of a VM cgroup
// (typically <mount>/vmsup), marking them, and enables the controllers
// in every cgroup.subtree_control from the cgroup2 root down to dir, as
// runc, crun and systemd do: a bare host boots with the root's empty.
// Every start does it, so a controller one VM needs reaches its cgroup
// whoever created the parent.
func enableAncestors(dir string, controllers []string) error {
	mnt, err := cgroup.Mount()
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(mnt, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%s is not in the cgroup2 hierarchy at %s", dir, mnt)
	}
	parts := []string{}
	if rel != "." {
		parts = strings.Split(rel, "/")
	}
	cur := mnt
	for i := 0; ; i++ {
		if _, err := os.Stat(cur); errors.Is(err, os.ErrNotExist) {
			if err := cgroup.Mkdir(cur); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			} else if err == nil {
				owned.Mark(cur, parentMark)
			}
		}
		if err := enable(cur, controllers); err != nil {
			return err
		}
		if i == len(parts) {
			return nil
		}
		cur = filepath.Join(cur, parts[i])
	}
}

// enable writes +c into dir's cgroup.subtree_control for each
// controller not yet enabled there.
func enable(dir string, controllers []string) error {
	if len(controllers) == 0 {
		return nil
	}
	on, err := cgroup.Read(dir, "cgroup.subtree_control")
	if err != nil {
		return err
	}
	have, err := cgroup.Controllers(dir)
	if err != nil {
		return err
	}
	var missing []string
	for _, c := range controllers {
		if slices.Contains(strings.Fields(on), c) {
			continue
		}
		if !slices.Contains(have, c) {
			return fmt.Errorf("cgroup controller %s is needed by limits but not available in %s (its cgroup.controllers)", c, dir)
		}
		missing = append(missing, c)
	}
	return cgroup.Enable(dir, missing)
}

// makeRuntimeDir removes the runtime dir an earlier run of this VM left
// and creates it, marked. It belongs to root and the VM's gid, mode
// 0770, so services (which get the VM's gid as a supplementary group)
// can create their sockets in it and other users cannot enter; without
// a VM gid it is 0755.
func makeRuntimeDir(in *inner, vm *config.VM, stale staleState) error {
	dir := vm.RuntimeDir
	if stale.runtimeDir {
		logger.Printf("removing %s left by an earlier run", dir)
		if err := owned.RemoveDir(dir, vm.Name); err != nil {
			return fmt.Errorf("stale runtime dir: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("runtime dir: %w", err)
	}
	// Sticky: a service may remove or rename only what it created.
	mode, gid := os.FileMode(0o755), 0
	if vm.GID != nil {
		mode, gid = 0o770|os.ModeSticky, int(*vm.GID)
	}
	if err := in.intend(ctlRuntimeDir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("runtime dir: %w", err)
	}
	if err := owned.Mark(dir, vm.Name); err != nil {
		os.Remove(dir)
		return fmt.Errorf("runtime dir: %w", err)
	}
	if err := os.Chown(dir, 0, gid); err != nil {
		return fmt.Errorf("runtime dir: %w", err)
	}
	return os.Chmod(dir, mode) // mkdir applied the umask
}

// ctlGo on the control pipe, always its first byte, hands the VM over
// to PID 1: its cgroup and runtime directory exist and PID 1 is in the
// supervisor's leaf.
const ctlGo = 'G'

// handOver moves PID 1 into the supervisor's leaf of the claimed cgroup
// and tells it to run the VM. From then on PID 1 removes the VM when this
// process dies, as before it; only the kernel's reaping stands between.
func (in *inner) handOver(cg *vmCgroup) error {
	if err := cgroup.Write(cg.leaf, "cgroup.procs", strconv.Itoa(in.cmd.Process.Pid)); err != nil {
		return fmt.Errorf("move PID 1 into %s: %w", cg.leaf, err)
	}
	if _, err := in.ctl.Write([]byte{ctlGo}); err != nil {
		return fmt.Errorf("PID 1: %w", err)
	}
	return nil
}

// handedOver waits for the outer stage to hand the VM over: ctlGo, or
// end of file if it died first. It returns the intents (ctlCgroup,
// ctlRuntimeDir) read before.
func handedOver(ctl *os.File) (map[byte]bool, bool) {
	intents := map[byte]bool{}
	b := make([]byte, 1)
	for {
		if n, _ := ctl.Read(b); n != 1 {
			return intents, false
		}
		if b[0] == ctlGo {
			return intents, true
		}
		intents[b[0]] = true
	}
}

// removeAbandoned removes the VM's cgroup and runtime directory when the
// outer stage died before handing the VM over. This process holds the
// VM's lock, so what carries the VM's mark is what the dead outer stage
// created, or what an earlier crash left. An unmarked directory that the
// outer stage said it was about to create is its own, killed between
// mkdir and marking it: it is empty, and only rmdir'ed.
func removeAbandoned(vm *config.VM, dir string, intents map[byte]bool) {
	for _, d := range []struct {
		path   string
		intent byte
	}{{dir, ctlCgroup}, {vm.RuntimeDir, ctlRuntimeDir}} {
		if intents[d.intent] {
			if _, err := owned.Check(d.path, vm.Name); errors.Is(err, owned.ErrForeign) {
				unix.Rmdir(d.path)
			}
		}
	}
	leaveCgroup()
	if err := removeVM(vm, dir); err != nil {
		logger.Print(err)
	}
}

// leaveCgroup moves this process to the cgroup2 root, out of the VM's
// cgroup, so that it can be removed.
func leaveCgroup() {
	if mnt, err := cgroup.Mount(); err == nil {
		if err := cgroup.Write(mnt, "cgroup.procs", strconv.Itoa(os.Getpid())); err != nil {
			logger.Print(err)
		}
	}
}

// supervisorLeaf is the VM cgroup's child that holds PID 1 (a cgroup
// with children can hold no process itself).
const supervisorLeaf = "supervisor"

// removeVM removes the VM's runtime dir and cgroup (killing whatever is
// still in it), each only if it carries the VM's mark. The caller must
// not be in the cgroup.
func removeVM(vm *config.VM, cgroupDir string) error {
	var errs []error
	if err := owned.RemoveDir(vm.RuntimeDir, vm.Name); err != nil {
		errs = append(errs, fmt.Errorf("runtime dir: %w", err))
	}
	if exists, err := owned.Check(cgroupDir, vm.Name); err != nil {
		errs = append(errs, fmt.Errorf("cgroup: %w: left as it is", err))
	} else if exists {
		// The supervisor leaf first, which PID 1 has left: then the
		// VM's cgroup goes with one rmdir. Tried the other way round,
		// the kernel refuses that rmdir (under its one cgroup mutex,
		// which every VM stopping queues for) and Destroy reads
		// cgroup.events and lists the directory to find the leaf. A
		// refusal here (a process left, a mount on it) is Destroy's to
		// handle: rmdir follows no link and removes no mount point.
		unix.Rmdir(filepath.Join(cgroupDir, supervisorLeaf))
		if err := cgroup.Destroy(cgroupDir, cgroup.DestroyTimeout); err != nil {
			errs = append(errs, fmt.Errorf("cgroup: %w", err))
		}
	}
	return errors.Join(errs...)
}

// destroyVM is the outer stage's removal of the VM, its status record
// included (PID 1 removes that itself, unless it crashed).
func destroyVM(vm *config.VM, cg *vmCgroup) error {
	err := removeVM(vm, cg.dir)
	status.RemoveStale(vm.Name)
	return err
}
