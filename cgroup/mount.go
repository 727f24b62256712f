package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// Mount returns where the cgroup v2 hierarchy is mounted: on
// hybrid hosts /sys/fs/cgroup/unified, on pure v2 hosts /sys/fs/cgroup.
// It reads mountinfo once a process (none in PID 1, which is told, see
// KnownMount): vmsup mounts no cgroup2 of its own, and the outer stage
// asks several times. A failure is not kept: the next call reads
// mountinfo again.
func Mount() (string, error) {
	if p := mountPoint.Load(); p != nil {
		return *p, nil
	}
	m, err := FindMount()
	if err != nil {
		return "", err
	}
	mountPoint.Store(&m.Point)
	return m.Point, nil
}

var mountPoint atomic.Pointer[string]

// KnownMount records where the cgroup2 hierarchy is mounted, as another
// process found it in the same mount table (the outer stage, for PID 1,
// whose mount namespace is a copy of it); "" is ignored.
func KnownMount(point string) {
	if point != "" {
		mountPoint.Store(&point)
	}
}

// MountEntry is the cgroup2 line of mountinfo.
type MountEntry struct {
	Root  string // the directory of the hierarchy that is mounted
	Point string // where it is mounted
}

// FindMount finds the cgroup2 mount in /proc/self/mountinfo.
func FindMount() (MountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return MountEntry{}, err
	}
	defer f.Close()
	return ParseMountinfo(f)
}

// ParseMountinfo finds the cgroup2 entry in mountinfo text. A mount of
// the hierarchy's root wins over a bind of a sub-directory, because only
// from the root do the paths of /proc/self/cgroup and cgroup.controllers
// mean what the probes expect.
func ParseMountinfo(r io.Reader) (MountEntry, error) {
	var found []MountEntry
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 4096), 1024*1024) // grown for a longer line
	for s.Scan() {
		// id parent maj:min root mountpoint options [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if !ok {
			continue
		}
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 1 || tail[0] != "cgroup2" {
			continue
		}
		m := MountEntry{Root: unescape(fields[3]), Point: unescape(fields[4])}
		if m.Root == "/" {
			return m, nil
		}
		found = append(found, m)
	}
	if err := s.Err(); err != nil {
		return MountEntry{}, fmt.Errorf("read mountinfo: %w", err)
	}
	if len(found) > 0 {
		return found[0], nil
	}
	return MountEntry{}, errors.New("no cgroup2 file system is mounted")
}

// unescape undoes mountinfo's octal escapes (\040 space, \011 tab,
// \012 newline, \134 backslash).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
