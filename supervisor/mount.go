package supervisor

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"vmsup/config"
)

// setupMounts shapes the VM's mount namespace, in this order:
//  1. propagation: slave (host mounts made later still appear inside,
//     nothing made inside leaks out) or private;
//  2. a fresh /proc for the new PID namespace;
//  3. vmsup's own directories masked, so no service can open them: the
//     VMs' locks (ClaimDir) and the status records (hide); before the
//     binds, so that a bind of an ancestor carries the masks along;
//  4. binds, then read-only paths, then masked paths, so that a mask
//     always wins over a bind or a read-only path below it;
//  5. /proc/sys read-only and /proc's host-wide files masked (procMasks):
//     checked by euid alone, they would give a uid-0 service without
//     capabilities the host (core_pattern, sysrq-trigger). Each service
//     also gets /sys read-only (package launcher), which PID 1, writing
//     cgroup files, cannot have in its own view.
func setupMounts(m config.Mount, hide string) error {
	prop := uintptr(unix.MS_SLAVE)
	if m.Propagation == config.PropagationPrivate {
		prop = unix.MS_PRIVATE
	}
	if err := unix.Mount("", "/", "", prop|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("mount propagation %s: %w", m.Propagation, err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	for _, p := range []string{ClaimDir, hide} {
		if p == "" {
			continue
		}
		if err := mask(p); err != nil {
			return err
		}
	}
	for _, b := range m.Binds {
		if err := bind(b.Source, b.Target, b.Readonly); err != nil {
			return err
		}
	}
	for _, p := range m.ReadonlyPaths {
		if err := bind(p, p, true); err != nil {
			return err
		}
	}
	for _, p := range m.MaskedPaths {
		if err := mask(p); err != nil {
			return err
		}
	}
	for _, p := range procReadonly {
		if err := bind(p, p, true); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for _, p := range procMasks {
		if err := mask(p); err != nil {
			return err
		}
	}
	return nil
}

// procReadonly and procMasks are what runc and crun make read-only and
// mask in /proc, and what Spectrum's bwrap lines cover (/proc/fs,
// /proc/irq, /proc/kallsyms).
var (
	procReadonly = []string{"/proc/sys", "/proc/bus"}
	procMasks    = []string{"/proc/kcore", "/proc/keys", "/proc/kallsyms", "/proc/sysrq-trigger", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/proc/latency_stats", "/proc/kmsg", "/proc/fs", "/proc/irq",
		"/proc/acpi", "/proc/scsi", "/proc/asound", "/proc/driver"}
)

// ProcView is what every VM's mount namespace makes read-only and masks
// in /proc (for `vmsup explain`).
func ProcView() (readonly, masked []string) {
	return append([]string(nil), procReadonly...), append([]string(nil), procMasks...)
}

// bind mounts src on dst with everything below it; readonly applies to
// every mount of the tree (mount_setattr with AT_RECURSIVE), which a
// plain MS_RDONLY remount would not.
func bind(src, dst string, readonly bool) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, dst, err)
	}
	if !readonly {
		return nil
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(unix.AT_FDCWD, dst, unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("make %s read-only: %w", dst, err)
	}
	return nil
}

// mask hides p: an empty read-only tmpfs over a directory, /dev/null
// (read-only) over anything else. A path that does not exist has
// nothing to hide.
func mask(p string) error {
	fi, err := os.Stat(p)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	if fi.IsDir() {
		err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,nr_inodes=1,mode=0555")
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
		return nil
	}
	return bind("/dev/null", p, true)
}
