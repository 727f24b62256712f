// Package cgroup manages the cgroup v2 directories of one VM: the VM's own
// directory, a leaf for the supervisor and one child per service.
//
// It is written against the cgroup v2 file interface directly rather than
// github.com/containerd/cgroups/v3: that library pulls in cilium/ebpf,
// protobuf, godbus and logrus, which made the binary 7.5 MB larger and,
// when vmsup still re-executed itself for every service launch, each
// launch 3.4 ms slower on the project's machine (10.1 ms against 6.7 ms),
// for a dozen file writes. vmsup now starts twice per VM (run, then its
// PID 1); services are launched by vmsup-exec.
//
// Rules kept here:
//   - vmsup removes only cgroups it created (the caller checks the VM
//     cgroup's mark, see package owned), never below a mount point; the
//     only writes to cgroups it did not create are the controllers the
//     limits need, in the ancestors' cgroup.subtree_control;
//   - "no internal processes": the VM directory holds no process, so the
//     supervisor sits in a leaf of its own;
//   - teardown is cgroup.kill, then waiting for "populated 0" in
//     cgroup.events by inotify, then rmdir, deepest first.
//
// It owns the cgroup v2 file interface: finding the mount, creating,
// limiting (the one table from limits to files, limits.go), killing and
// removing cgroups. It must not decide whose a cgroup is: callers pass the
// directories and check the mark (package owned) first.
package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/owned"
)

// DestroyTimeout is how long vmsup waits for a killed cgroup to empty
// and be removed (Destroy's timeout).
const DestroyTimeout = 5 * time.Second

// Controllers lists the controllers available to the cgroup at dir
// (its cgroup.controllers).
func Controllers(dir string) ([]string, error) {
	b, err := readFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// Enable turns controllers on for the children of dir.
func Enable(dir string, controllers []string) error {
	if len(controllers) == 0 {
		return nil
	}
	var parts []string
	for _, c := range controllers {
		parts = append(parts, "+"+c)
	}
	return Write(dir, "cgroup.subtree_control", strings.Join(parts, " "))
}

// Mkdir creates the cgroup dir. The kernel refuses with EAGAIN, which
// says nothing by itself, when an ancestor's cgroup.max.descendants or
// cgroup.max.depth is reached: the error names those.
func Mkdir(dir string) error {
	err := unix.Mkdir(dir, 0o755)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EAGAIN):
		return fmt.Errorf("create cgroup %s: %w: an ancestor's cgroup.max.descendants or cgroup.max.depth is reached", dir, err)
	}
	return fmt.Errorf("create cgroup %s: %w", dir, err)
}

// Write sets one interface file, naming it in the error.
func Write(dir, file, value string) error {
	p := filepath.Join(dir, file)
	if err := writeFile(p, value); err != nil {
		return fmt.Errorf("write %q to %s: %w", value, p, err)
	}
	return nil
}

// Read returns one interface file, trimmed.
func Read(dir, file string) (string, error) {
	b, err := readFile(filepath.Join(dir, file))
	return strings.TrimSpace(string(b)), err
}

// Populated reports whether any process lives in dir or below.
func Populated(dir string) (bool, error) {
	b, err := readFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false, err
	}
	return parsePopulated(dir, b)
}

func parsePopulated(dir string, b []byte) (bool, error) {
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "populated "); ok {
			return v != "0", nil
		}
	}
	return false, fmt.Errorf("%s/cgroup.events has no populated line", dir)
}

// Kill kills every process in dir and below (cgroup.kill, Linux 5.14).
func Kill(dir string) error {
	return Write(dir, "cgroup.kill", "1")
}

// ErrNotEmpty is WaitEmpty's error when processes are still in the
// cgroup at its timeout.
var ErrNotEmpty = errors.New("still has processes")

// WaitEmpty blocks until no process is left in dir or below, or timeout
// passes (ErrNotEmpty). It waits in poll(2) on cgroup.events itself,
// which the kernel marks POLLPRI at each change (kernfs file events),
// never by polling.
// Not inotify: its instances are limited per user (128 by default), and
// 1,000 VMs stopping at once would run out.
func WaitEmpty(dir string, timeout time.Duration) error {
	name := filepath.Join(dir, "cgroup.events")
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 256)
	for {
		// Each read re-arms the event: a change after it wakes the poll.
		n, err := unix.Pread(fd, buf, 0)
		if err != nil {
			return &os.PathError{Op: "read", Path: name, Err: err}
		}
		if pop, err := parsePopulated(dir, buf[:n]); err != nil || !pop {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%s %w after %v", dir, ErrNotEmpty, timeout)
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}}
		if _, err := unix.Poll(fds, int(left.Milliseconds())+1); err != nil && err != unix.EINTR {
			return fmt.Errorf("poll %s: %w", name, err)
		}
	}
}

// Destroy kills everything in dir and below, waits until it is empty and
// removes dir and its descendants, deepest first. A missing dir is fine.
//
// An empty cgroup (the usual end: every service already reaped) is not
// killed: a write to cgroup.kill takes the kernel's one cgroup mutex,
// for which 1,000 VMs stopping at once would queue.
func Destroy(dir string, timeout time.Duration) error {
	// A leaf that is empty goes with one rmdir: the kernel refuses
	// (EBUSY) one with processes or children, which the rest handles.
	if err := unix.Rmdir(dir); err == nil || err == unix.ENOENT {
		return nil
	}
	pop, err := Populated(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil || pop {
		if err := Kill(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := WaitEmpty(dir, timeout); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return removeTree(dir, timeout)
	}
	// Empty, yet the rmdir above was refused: it has children, or its
	// last tasks are still being released.
	return removeBelow(dir, timeout)
}

// removeTree rmdirs dir's child cgroups, then dir.
func removeTree(dir string, timeout time.Duration) error {
	// Most cgroups have no child: one rmdir, without listing the
	// directory's few dozen interface files first.
	if err := unix.Rmdir(dir); err == nil || err == unix.ENOENT {
		return nil
	}
	return removeBelow(dir, timeout)
}

// removeBelow removes dir's child cgroups (removeTree), then dir. It
// never descends into something mounted on a child (which only
// CAP_SYS_ADMIN can do): that child is left, and named in the error.
func removeBelow(dir string, timeout time.Duration) error {
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		sub, err := owned.OpenBeneath(fd, e.Name())
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("%s/%s: %w: left in place", dir, e.Name(), err)
		}
		unix.Close(sub)
		if err := removeTree(filepath.Join(dir, e.Name()), timeout); err != nil {
			return err
		}
	}
	return rmdir(dir, timeout)
}

// rmdir removes an empty cgroup. rmdir can fail with EBUSY for a moment
// after "populated 0" while exiting tasks are still being released; the
// retry waits for the next cgroup.events change (or busyWait) and
// busyPause each time, and gives up at timeout.
const (
	busyWait  = 10 * time.Millisecond
	busyPause = time.Millisecond
)

func rmdir(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Rmdir(dir)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.EBUSY || time.Now().After(deadline) {
			return fmt.Errorf("rmdir %s: %w", dir, err)
		}
		if err := WaitEmpty(dir, busyWait); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, ErrNotEmpty) {
			return err
		}
		time.Sleep(busyPause)
	}
}

// Procs lists the PIDs in dir itself (not below).
func Procs(dir string) ([]int, error) {
	b, err := readFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range bytes.Fields(b) {
		var pid int
		fmt.Sscan(string(f), &pid)
		pids = append(pids, pid)
	}
	return pids, nil
}
