package launcher

import (
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Node is a device node of the service's /dev: its path, mode (type and
// permission bits), device number and owner, as the supervisor found
// them on the host.
type Node struct {
	Path     string
	Mode     uint32
	Rdev     uint64
	UID, GID uint32
}

// PtyMax is how many ptys the service's own devpts hands out.
const PtyMax = 16

// basicNodes are in every service's /dev (char devices, mode 0666).
var basicNodes = []struct {
	name         string
	major, minor uint32
}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}

// BasicNodeNames are the nodes and links in every service's /dev
// besides its devpts and /dev/shm (for `vmsup explain`).
func BasicNodeNames() (nodes, links []string) {
	for _, n := range basicNodes {
		nodes = append(nodes, n.name)
	}
	for _, l := range devLinks {
		links = append(links, l[0])
	}
	return nodes, links
}

var devLinks = [][2]string{{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
	{"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"}}

// minimalDev replaces /dev with a tmpfs of the service's own: the basic
// nodes, a devpts instance of its own with a small max, /dev/shm (the
// VM's unless the service has a private one, which privateTmpfs mounts
// later) and the configured devices; then it is made read-only, so no
// capability (CAP_MKNOD, CAP_DAC_OVERRIDE) adds a node. The nodes are
// made with mknod, not bound from the host's /dev: a bind mount costs
// more than a mknod, and the host's nodes would be hidden by now anyway.
func minimalDev(sp *Spec) error {
	shm := -1
	if sp.Shm <= 0 {
		fd, err := unix.OpenTree(unix.AT_FDCWD, "/dev/shm", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err == nil {
			shm = fd
			defer unix.Close(fd)
		} else if err != unix.ENOENT {
			return wrap("clone /dev/shm", err)
		}
	}
	if err := unix.Mount("tmpfs", "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "size=64k,nr_inodes=256,mode=0755"); err != nil {
		return wrap("tmpfs on /dev", err)
	}
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	for _, n := range basicNodes {
		if err := unix.Mknod("/dev/"+n.name, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return wrap("mknod /dev/"+n.name, err)
		}
	}
	for _, l := range devLinks {
		if err := unix.Symlink(l[1], "/dev/"+l[0]); err != nil {
			return wrap("symlink /dev/"+l[0], err)
		}
	}
	if err := unix.Mkdir("/dev/pts", 0o755); err != nil {
		return wrap("mkdir /dev/pts", err)
	}
	if err := unix.Mkdir("/dev/shm", 0o1777); err != nil {
		return wrap("mkdir /dev/shm", err)
	}
	opts := "newinstance,ptmxmode=0666,mode=0620,max=" + strconv.Itoa(PtyMax)
	if err := unix.Mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, opts); err != nil {
		return wrap("devpts on /dev/pts", err)
	}
	for _, n := range sp.View.Devices {
		if err := mkdirParents(n.Path); err != nil {
			return err
		}
		if err := unix.Mknod(n.Path, n.Mode, int(n.Rdev)); err != nil && err != unix.EEXIST {
			return wrap("mknod "+n.Path, err)
		}
		if err := unix.Lchown(n.Path, int(n.UID), int(n.GID)); err != nil {
			return wrap("chown "+n.Path, err)
		}
	}
	if shm >= 0 {
		if err := unix.MoveMount(shm, "", unix.AT_FDCWD, "/dev/shm", unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return wrap("mount the VM's /dev/shm", err)
		}
	}
	if err := unix.Mount("", "/dev", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
		return wrap("make /dev read-only", err)
	}
	return nil
}

// mkdirParents creates the missing directories above p (mode 0755).
func mkdirParents(p string) error {
	for i := 1; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		if err := unix.Mkdir(p[:i], 0o755); err != nil && err != unix.EEXIST {
			return wrap("mkdir "+p[:i], err)
		}
	}
	return nil
}
