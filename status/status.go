// Package status is the state record of running VMs: PID 1 of each VM
// writes it on every transition and `vmsup status` reads it.
//
// The record is a file, never a socket: <Dir>/<name>/status.json, written
// to a temporary name and renamed over the old one, so a reader sees one
// whole record or the previous one. Dir (default /run/vmsup-status) is
// root's, mode 0700, and PID 1 hides it from its services: it opens the
// directory, then mounts an empty read-only tmpfs over it in the VM's
// mount namespace (which every service's is copied from) and writes
// through its descriptors only. So no service sees the record, whatever
// its uid or capabilities (short of CAP_SYS_ADMIN, which can unmount the
// cover, or CAP_DAC_READ_SEARCH, which opens files by handle unless
// open_by_handle_at is filtered).
//
// Liveness: PID 1 holds a write lock (an open file description lock,
// fcntl F_OFD_SETLK) on <Dir>/<name>/lock for its whole life, so a record
// left by a crash (PID 1 killed before it could remove it) is told from a
// live one by the lock, not by its contents. Readers only ask about the
// lock (F_OFD_GETLK), so they can never make PID 1 wait or fail.
//
// It owns the record's format, place and lock. Only PID 1 of the VM
// writes it, and the outer stage removes what a dead PID 1 left
// (RemoveStale); readers must never take the lock or write.
package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// DirEnv overrides Dir, for tests and for hosts that keep runtime state
// elsewhere. It must name a root-owned directory of mode 0700 (or one
// that can be created as such).
const DirEnv = "VMSUP_STATUS_DIR"

// DefaultDir holds one directory per running VM.
const DefaultDir = "/run/vmsup-status"

const (
	recordName = "status.json"
	tmpName    = ".status.json.new"
	lockName   = "lock"
)

// Schema is the record's version; it grows only by new fields.
const Schema = 1

// VM is one VM's record (the JSON of `vmsup status --json NAME`).
type VM struct {
	Schema   int       `json:"schema"`
	Name     string    `json:"name"`
	Phase    string    `json:"phase"` // starting, running, stopping, killing
	Since    time.Time `json:"since"` // when the phase began
	Started  time.Time `json:"started"`
	PIDNS    string    `json:"pid_namespace"`      // "pid:[4026532177]", PID 1's
	HostPID  int       `json:"host_pid,omitempty"` // PID 1's, as the reader sees it
	Services []Service `json:"services"`
}

// Service states.
const (
	Waiting    = "waiting"    // for the services in `after` to be ready
	Starting   = "starting"   // launched, its ready rule not met yet
	Ready      = "ready"      // running, ready
	Restarting = "restarting" // exited; a restart is pending (back-off)
	Stopped    = "stopped"    // exited, not to be started again
)

// Service is one service's entry.
type Service struct {
	Name     string    `json:"name"`
	State    string    `json:"state"`
	Since    time.Time `json:"since"` // when it entered State
	PID      int       `json:"pid"`   // in the VM's PID namespace; 0 when not running
	HostPID  int       `json:"host_pid,omitempty"`
	Restarts int       `json:"restarts"` // launches after the first
	Ready    bool      `json:"ready"`    // this launch met its ready rule
	WaitsFor string    `json:"ready_rule"`
	LastExit string    `json:"last_exit,omitempty"`
}

// ErrNotRunning: no VM of that name runs (no record, or a crash's).
var ErrNotRunning = errors.New("no such VM runs")

// Dir is where the records live.
func Dir() (string, error) {
	d := os.Getenv(DirEnv)
	if d == "" {
		return DefaultDir, nil
	}
	if !filepath.IsAbs(d) || filepath.Clean(d) != d || d == "/" {
		return "", fmt.Errorf("%s=%s: not a clean absolute path other than /", DirEnv, d)
	}
	return d, nil
}

// Writer is PID 1's side: it owns one VM's record.
type Writer struct {
	root *os.File // Dir
	dir  *os.File // Dir/name
	lock *os.File // Dir/name/lock, write-locked
	name string
	last []byte
}

// Create makes (or takes over, after a crash) the VM's record directory
// and locks it. The caller must hide Dir from its services (see Hide).
func Create(name string) (*Writer, error) {
	d, err := Dir()
	if err != nil {
		return nil, err
	}
	root, err := openRoot(d)
	if err != nil {
		return nil, err
	}
	w := &Writer{root: root, name: name}
	if err := unix.Mkdirat(int(root.Fd()), name, 0o700); err != nil && err != unix.EEXIST {
		root.Close()
		return nil, fmt.Errorf("status: mkdir %s/%s: %w", d, name, err)
	}
	fd, err := unix.Openat(int(root.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("status: open %s/%s: %w", d, name, err)
	}
	w.dir = os.NewFile(uintptr(fd), filepath.Join(d, name))
	lfd, err := unix.Openat(fd, lockName, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("status: %s/%s: %w", w.dir.Name(), lockName, err)
	}
	w.lock = os.NewFile(uintptr(lfd), filepath.Join(w.dir.Name(), lockName))
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(lfd), unix.F_OFD_SETLK, &lk); err != nil {
		w.Close()
		if err == unix.EAGAIN || err == unix.EACCES {
			return nil, fmt.Errorf("status: %s is locked: a VM named %s already runs", w.lock.Name(), name)
		}
		return nil, fmt.Errorf("status: lock %s: %w", w.lock.Name(), err)
	}
	return w, nil
}

// locked reports whether a live PID 1 holds the lock file at lfd.
func locked(lfd int) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(lfd), unix.F_OFD_GETLK, &lk); err != nil {
		return false, err
	}
	return lk.Type != unix.F_UNLCK, nil
}

// openRoot opens Dir, creating it as root's with mode 0700, and refuses
// one that anybody else could enter or change.
func openRoot(d string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("status: %w", err)
	}
	fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("status: open %s: %w", d, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("status: %s: %w", d, err)
	}
	if st.Uid != 0 || st.Mode&0o777 != 0o700 {
		unix.Close(fd)
		return nil, fmt.Errorf("status: %s must belong to root with mode 0700 (it is uid %d, mode %04o)", d, st.Uid, st.Mode&0o7777)
	}
	return os.NewFile(uintptr(fd), d), nil
}

// Path is the directory that Hide must cover.
func (w *Writer) Path() string { return w.root.Name() }

// Write replaces the record with r, unless it is unchanged.
func (w *Writer) Write(r *VM) error {
	r.Schema = Schema
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if bytes.Equal(b, w.last) {
		return nil
	}
	if err := w.publish(b); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	w.last = b
	return nil
}

// publish makes b the record, which a reader sees whole or not at all.
// The new file swaps names with the record (RENAME_EXCHANGE), and the
// old one is then unlinked, rather than being renamed over it: ext4
// (auto_da_alloc) writes a file renamed over another to disk at once,
// which made every change of every VM's record a disk write, queued
// behind the other VMs' (150-210 µs a write here, against 20-30 µs),
// when the status directory is not on tmpfs. A plain rename is for the
// first record, and for file systems that cannot swap.
func (w *Writer) publish(b []byte) error {
	dfd := int(w.dir.Fd())
	// A new file, never a truncated one: ext4 also writes out at close a
	// file that was truncated and rewritten. EEXIST: a failed write's.
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dfd, tmpName, flags, 0o600)
	if err == unix.EEXIST {
		unix.Unlinkat(dfd, tmpName, 0)
		fd, err = unix.Openat(dfd, tmpName, flags, 0o600)
	}
	if err != nil {
		return err
	}
	_, err = unix.Write(fd, b)
	unix.Close(fd)
	if err != nil {
		return err
	}
	switch err := unix.Renameat2(dfd, tmpName, dfd, recordName, unix.RENAME_EXCHANGE); err {
	case nil:
		return unix.Unlinkat(dfd, tmpName, 0)
	case unix.ENOENT, unix.EINVAL, unix.ENOSYS, unix.EOPNOTSUPP:
		return unix.Renameat(dfd, tmpName, dfd, recordName)
	default:
		return err
	}
}

// Remove deletes the record and its directory (the VM ends), then
// releases the lock.
func (w *Writer) Remove() {
	dfd := int(w.dir.Fd())
	unix.Unlinkat(dfd, recordName, 0)
	unix.Unlinkat(dfd, tmpName, 0)
	unix.Unlinkat(dfd, lockName, 0)
	unix.Unlinkat(int(w.root.Fd()), w.name, unix.AT_REMOVEDIR)
	w.Close()
}

// Close releases the descriptors (and the lock) and leaves the record.
func (w *Writer) Close() {
	if w.lock != nil {
		w.lock.Close()
	}
	if w.dir != nil {
		w.dir.Close()
	}
	w.root.Close()
}

// RemoveStale removes the record of name if no PID 1 holds it: what a
// crash left. The outer stage calls it once PID 1 has exited.
func RemoveStale(name string) {
	d, err := Dir()
	if err != nil {
		return
	}
	dir := filepath.Join(d, name)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if lfd, err := unix.Openat(fd, lockName, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
		defer unix.Close(lfd)
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		if unix.FcntlFlock(uintptr(lfd), unix.F_OFD_SETLK, &lk) != nil {
			return // a live PID 1's
		}
	}
	unix.Unlinkat(fd, recordName, 0)
	unix.Unlinkat(fd, tmpName, 0)
	unix.Unlinkat(fd, lockName, 0)
	unix.Rmdir(dir)
}

// Read returns the record of a running VM, ErrNotRunning when there is
// none or it is a crash's.
func Read(name string) (*VM, error) {
	d, err := Dir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(d, name)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return nil, ErrNotRunning
	} else if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	defer unix.Close(fd)
	// Unless a PID 1 holds the lock, the VM is not running, whatever the
	// record says.
	lfd, err := unix.Openat(fd, lockName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil, ErrNotRunning
	} else if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", dir, lockName, err)
	}
	live, err := locked(lfd)
	unix.Close(lfd)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", dir, lockName, err)
	}
	if !live {
		return nil, ErrNotRunning
	}
	rfd, err := unix.Openat(fd, recordName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil, ErrNotRunning // locked, nothing written yet: still setting up
	} else if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", dir, recordName, err)
	}
	f := os.NewFile(uintptr(rfd), filepath.Join(dir, recordName))
	defer f.Close()
	var r VM
	if err := json.NewDecoder(f).Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	hostPIDs(&r)
	return &r, nil
}

// List returns the records of every running VM, by name.
func List() ([]*VM, error) {
	d, err := Dir()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(d)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var out []*VM
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		r, err := Read(e.Name())
		if errors.Is(err, ErrNotRunning) {
			continue
		} else if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
