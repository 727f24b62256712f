// Package owned marks what vmsup creates and removes only what carries
// its mark, without crossing a mount point or following a link.
//
// The mark is the extended attribute trusted.vmsup on a directory (a
// runtime dir, a VM cgroup), whose value names the VM. trusted.* is
// supported by tmpfs, the usual disk file systems and cgroupfs (tried on
// Linux 6.18), and only a process with CAP_SYS_ADMIN can set or read it:
// a service cannot forge the mark to make vmsup remove something, and a
// directory that someone else created never has it.
//
// It owns the mark and the removal of marked trees. It must not remove
// anything unmarked, cross a mount point or follow a link.
package owned

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Attr is the mark's extended attribute.
const Attr = "trusted.vmsup"

// ErrForeign says a directory exists without the mark of the VM asked
// for: it is someone else's.
var ErrForeign = errors.New("not made by vmsup for this VM")

// Mark marks the directory at path as made for owner.
func Mark(path, owner string) error {
	fd, err := openDir(path)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fsetxattr(fd, Attr, []byte(owner), 0); err != nil {
		return fmt.Errorf("mark %s (%s): %w", path, Attr, err)
	}
	return nil
}

// Check says whether path exists (false, nil when it does not), and
// returns ErrForeign unless it is a directory (not a link) marked for
// owner.
func Check(path, owner string) (bool, error) {
	fd, err := openDir(path)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	} else if err != nil {
		return true, fmt.Errorf("%s: %w", path, ErrForeign)
	}
	defer unix.Close(fd)
	return true, checkFD(fd, path, owner)
}

func checkFD(fd int, path, owner string) error {
	buf := make([]byte, 256)
	n, err := unix.Fgetxattr(fd, Attr, buf)
	if err != nil || string(buf[:n]) != owner {
		return fmt.Errorf("%s: %w", path, ErrForeign)
	}
	return nil
}

// openDir opens the directory path itself, never through a final link.
func openDir(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	return fd, nil
}

// OpenBeneath opens the directory name in dirfd, refusing a link
// (ELOOP), a mount point (EXDEV) and anything outside dirfd.
func OpenBeneath(dirfd int, name string) (int, error) {
	return unix.Openat2(dirfd, name, &unix.OpenHow{
		Flags:   unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH,
	})
}

// RemoveDir removes the directory path and everything in it, if it is
// marked for owner (a missing path is fine; an unmarked one is left and
// is ErrForeign). Links are removed, never followed; a mount point (a
// directory or file mounted over) and what is under it is left, and
// named in the error, as is anything that cannot be removed.
func RemoveDir(path, owner string) error {
	fd, err := openDir(path)
	if errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return fmt.Errorf("%s: %w", path, ErrForeign)
	}
	defer unix.Close(fd)
	if err := checkFD(fd, path, owner); err != nil {
		return err
	}
	var left []string
	removeContents(fd, path, &left)
	if len(left) == 0 {
		left = removeEntry(path, fd)
	}
	if len(left) > 0 {
		return fmt.Errorf("left in place: %s", strings.Join(left, "; "))
	}
	return nil
}

// removeEntry removes the now empty directory path, if the name still
// refers to the directory open as fd.
func removeEntry(path string, fd int) []string {
	pfd, err := openDir(filepath.Dir(path))
	if err != nil {
		return []string{err.Error()}
	}
	defer unix.Close(pfd)
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Fstatat(pfd, filepath.Base(path), &b, unix.AT_SYMLINK_NOFOLLOW) != nil || a.Ino != b.Ino || a.Dev != b.Dev {
		return []string{path + ": replaced while being removed"}
	}
	if err := unix.Unlinkat(pfd, filepath.Base(path), unix.AT_REMOVEDIR); err != nil {
		return []string{fmt.Sprintf("%s: %v", path, err)}
	}
	return nil
}

// removeContents empties the directory open as fd (named path),
// appending what it could not remove to left.
func removeContents(fd int, path string, left *[]string) {
	names, err := readNames(fd)
	if err != nil {
		*left = append(*left, fmt.Sprintf("%s: %v", path, err))
		return
	}
	for _, name := range names {
		p := filepath.Join(path, name)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				*left = append(*left, fmt.Sprintf("%s: %v", p, err))
			}
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// A link is removed itself; a file mounted over is EBUSY.
			if err := unix.Unlinkat(fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				*left = append(*left, fmt.Sprintf("%s: %v", p, err))
			}
			continue
		}
		sub, err := OpenBeneath(fd, name)
		if errors.Is(err, unix.EXDEV) {
			*left = append(*left, p+": a mount point")
			continue
		} else if err != nil {
			*left = append(*left, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		n := len(*left)
		removeContents(sub, p, left)
		unix.Close(sub)
		if len(*left) > n {
			continue
		}
		if err := unix.Unlinkat(fd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
			*left = append(*left, fmt.Sprintf("%s: %v", p, err))
		}
	}
}

// readNames lists the entries of the directory open as fd.
func readNames(fd int) ([]string, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names) // what is left is reported in a stable order
	return names, err
}
