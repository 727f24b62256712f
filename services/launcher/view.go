package launcher

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// View is what the service sees of the host beyond the VM's mount
// namespace: computed by the supervisor (services.SetView), set up here.
type View struct {
	Devices []Node
	// RunDir is the VM's runtime dir ("" for none). HideParent replaces
	// its parent (where the other VMs' runtime dirs are) with an empty
	// read-only tmpfs holding RunDir alone.
	RunDir     string
	HideParent bool
	// Writable: the service creates sockets of its own in RunDir, so
	// RunDir stays writable in its view and every socket vmsup bound
	// there (Protect) is a mount point, which nothing can remove or
	// rename. Otherwise RunDir is read-only.
	Writable bool
	Protect  []string
	// Only, when not nil (config: connect), lists the entries of RunDir
	// the service sees; RunDir is then an empty tmpfs with those bound in.
	Only []string
}

// setupView shapes the service's view: a minimal /dev, /sys read-only
// with every mount below it, and its VM's runtime dir alone.
func setupView(sp *Spec) error {
	if err := minimalDev(sp); err != nil {
		return err
	}
	if err := readOnlyTree(unix.AT_FDCWD, "/sys", 0); err != nil {
		return wrap("make /sys read-only", err)
	}
	return runDirView(&sp.View)
}

func runDirView(v *View) error {
	if v.RunDir == "" {
		return nil
	}
	old := syscall.Umask(0) // the modes below are exact
	defer syscall.Umask(old)
	// Clone what stays visible while its path still reaches it.
	var trees []int
	defer func() {
		for _, fd := range trees {
			unix.Close(fd)
		}
	}()
	clone := func(p string) error {
		fd, err := unix.OpenTree(unix.AT_FDCWD, p, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW)
		if err != nil {
			return wrap("clone "+p, err)
		}
		trees = append(trees, fd)
		return nil
	}
	if v.Only != nil {
		for _, p := range v.Only {
			if err := clone(p); err != nil {
				return err
			}
		}
	} else if v.HideParent {
		if err := clone(v.RunDir); err != nil {
			return err
		}
		if !v.Writable {
			if err := readOnlyTree(trees[0], "", unix.AT_EMPTY_PATH); err != nil {
				return wrap("make "+v.RunDir+" read-only", err)
			}
		}
	}
	cover := "" // the tmpfs made read-only at the end
	switch {
	case v.HideParent:
		cover = parent(v.RunDir)
		if err := tmpfsOn(cover); err != nil {
			return err
		}
		if err := unix.Mkdir(v.RunDir, 0o755); err != nil {
			return wrap("mkdir "+v.RunDir, err)
		}
		if v.Only == nil {
			if err := unix.MoveMount(trees[0], "", unix.AT_FDCWD, v.RunDir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				return wrap("mount "+v.RunDir, err)
			}
		}
	case v.Only != nil:
		cover = v.RunDir
		if err := tmpfsOn(cover); err != nil {
			return err
		}
	case !v.Writable:
		if err := unix.Mount(v.RunDir, v.RunDir, "", unix.MS_BIND, ""); err != nil {
			return wrap("bind "+v.RunDir, err)
		}
		if err := readOnlyTree(unix.AT_FDCWD, v.RunDir, 0); err != nil {
			return wrap("make "+v.RunDir+" read-only", err)
		}
	}
	if v.Only != nil {
		for i, p := range v.Only {
			if err := unix.Mknod(p, unix.S_IFREG|0o444, 0); err != nil {
				return wrap("mknod "+p, err)
			}
			if err := unix.MoveMount(trees[i], "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				return wrap("mount "+p, err)
			}
		}
	}
	if cover != "" {
		if err := unix.Mount("", cover, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return wrap("make "+cover+" read-only", err)
		}
	}
	if v.Writable {
		for _, p := range v.Protect {
			if err := unix.Mount(p, p, "", unix.MS_BIND, ""); err != nil {
				return wrap("protect "+p, err)
			}
		}
	}
	return nil
}

// tmpfsOn mounts a small empty tmpfs on dir.
func tmpfsOn(dir string) error {
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=16k,nr_inodes=64,mode=0755"); err != nil {
		return wrap("tmpfs on "+dir, err)
	}
	return nil
}

// readOnlyTree makes a mount and every mount below it read-only.
func readOnlyTree(dirfd int, p string, flags int) error {
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	return unix.MountSetattr(dirfd, p, uint(flags|unix.AT_RECURSIVE), &attr)
}

func parent(p string) string {
	for i := len(p) - 1; i > 0; i-- {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return "/"
}
