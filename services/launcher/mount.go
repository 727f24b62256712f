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
