package launcher

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// privateTmpfs mounts the service's own /tmp and /dev/shm. The launcher
// is alone in a mount namespace cloned from the VM's, whose mounts are
// slaves or private, so these mounts are seen by this service only and
// vanish with its last process.
func privateTmpfs(sp *Spec) error {
	for _, m := range []struct {
		dir  string
		size int64
	}{{"/tmp", sp.Tmp}, {"/dev/shm", sp.Shm}} {
		if m.size <= 0 {
			continue
		}
		opts := "size=" + strconv.FormatInt(m.size, 10) + ",mode=0700,uid=" + strconv.FormatUint(uint64(sp.UID), 10) +
			",gid=" + strconv.FormatUint(uint64(sp.GID), 10)
		if err := unix.Mount("tmpfs", m.dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
			return wrap("private tmpfs on "+m.dir, err)
		}
	}
	return nil
}

// coverRoot refuses the service user namespaces. The kernel will not
// create one for a process whose root is not the top of its mount
// namespace (create_user_ns: current_chrooted), because a user namespace
// would let it escape a chroot; a recursive bind of / onto itself puts
// such a cover above the launcher's root, which stays where it was, so
// the service sees the same files. This is what bubblewrap relied on
// before --disable-userns; a seccomp filter could not inspect clone3's
// flags. User namespaces open kernel code that root-owned services
// never need; a service that does need them says "user_namespaces".
func coverRoot() error {
	if err := unix.Mount("/", "/", "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return wrap("cover / (no user namespaces)", err)
	}
	return nil
}
