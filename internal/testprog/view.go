package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"vmsup/config"
)

// view NAME RUNDIR OTHERSOCK CGFILE HOSTPTS DEV1 DEV2 CAPS CONNECT: attacks on
// what a service's mount view shows (services/hostile_test.go's
// TestHostileView): its VM's runtime dir (the sockets vmsup bound there,
// victim.sock and spare.sock, room to fill, links to plant), vmsup's
// parent of the runtime dirs and another VM's socket (OTHERSOCK), another
// VM's cgroup file (CGFILE), host sysfs and /proc/sys, /proc's host-wide
// files, the host's root-only devices (DEV1, DEV2; mknod) and devpts
// (HOSTPTS: the st_dev of the host's /dev/pts). With CONNECT "yes" it
// also connects to victim.sock, which its connect list leaves out.
//
// CAPS "-" keeps the credentials it was started with (under vmsup);
// otherwise (a control run started as root outside vmsup) this thread
// keeps exactly CAPS ("none", or CAP_ names joined by ","), and every
// attempt is made from it. Each attempt prints a line as in duel, then
// "view done". Whatever an attempt changed is undone when it got through.
func view(a []string) {
	name, rundir, other, cgfile, hostPts, dev1, dev2, caps, connect := a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]
	runtime.LockOSThread()
	if caps != "-" {
		must(keepCaps(caps))
	}
	d := &duelist{name: name}
	victim, spare := rundir+"/victim.sock", rundir+"/spare.sock"

	// The runtime dir.
	d.try("rename a socket vmsup bound", undo(unix.Rename(victim, victim+".moved"), func() { unix.Rename(victim+".moved", victim) }))
	d.try("create a file in the runtime dir", fill(rundir+"/fill-"+name))
	d.try("plant a link in the runtime dir", undo(unix.Symlink(other, rundir+"/planted-"+name), func() { unix.Unlink(rundir + "/planted-" + name) }))
	if connect == "yes" {
		d.try("connect to its VM's socket not in connect", connectUnix(unix.SOCK_STREAM, victim))
	}
	d.try("list the other VMs' runtime dirs", otherEntries(filepath.Dir(rundir), filepath.Base(rundir)))
	d.try("connect to another VM's socket", connectUnix(unix.SOCK_STREAM, other))

	// /sys and /proc.
	d.try("open another VM's cgroup file for writing", openWrite(cgfile))
	d.try("open a host sysfs file for writing", openWrite(sysfsFile()))
	d.try("open /proc/sys/kernel/core_pattern for writing", openWrite("/proc/sys/kernel/core_pattern"))
	d.try("read /proc/timer_list", readSome("/proc/timer_list"))
	d.try("read /proc/kallsyms", readSome("/proc/kallsyms"))
	d.try("list /proc/irq", otherEntries("/proc/irq", ""))
	d.try("list /proc/fs", otherEntries("/proc/fs", ""))

	// /dev.
	d.try("open a host device", openRW(dev1))
	d.try("open another host device", openRW(dev2))
	d.try("mknod in /dev", undo(unix.Mknod("/dev/vmsup-view-"+name, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))), func() { unix.Unlink("/dev/vmsup-view-" + name) }))
	d.try("get a pty of the host's devpts", hostPty(hostPts))

	// Last: it removes what it attacks.
	d.try("replace a socket vmsup bound", replace(spare))
	fmt.Println("view done", d.n)
	time.Sleep(time.Hour)
}

// keepCaps leaves this thread exactly the named capabilities.
func keepCaps(list string) error {
	byName := map[string]uint{}
	for n, s := range config.CapabilityNames() {
		byName[s] = n
	}
	var set [2]uint32
	if list != "none" {
		for _, c := range strings.Split(list, ",") {
			n, ok := byName[c]
			if !ok {
				return fmt.Errorf("unknown capability %s", c)
			}
			set[n/32] |= 1 << (n % 32)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{{Effective: set[0], Permitted: set[0]}, {Effective: set[1], Permitted: set[1]}}
	return unix.Capset(&hdr, &data[0])
}

func undo(err error, f func()) error {
	if err == nil {
		f()
	}
	return err
}

func fill(p string) error {
	fd, err := unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer unix.Unlink(p)
	defer unix.Close(fd)
	_, err = unix.Write(fd, make([]byte, 64<<10))
	return err
}

// replace removes the socket at p and binds one of its own there.
func replace(p string) error {
	if err := unix.Unlink(p); err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	return unix.Bind(fd, &unix.SockaddrUnix{Name: p})
}

// otherEntries fails unless dir lists an entry other than own.
func otherEntries(dir, own string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	buf := make([]byte, 32<<10)
	n, err := unix.ReadDirent(fd, buf)
	if err != nil {
		return err
	}
	_, _, names := unix.ParseDirent(buf[:n], -1, nil)
	for _, s := range names {
		if s != own {
			return nil
		}
	}
	return fmt.Errorf("%s shows nothing else (%d entries)", dir, len(names))
}

func openWrite(p string) error {
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd) // opened, never written
	}
	return err
}

func openRW(p string) error {
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// readSome fails unless p yields at least one byte.
func readSome(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	n, err := unix.Read(fd, make([]byte, 512))
	if err == nil && n == 0 {
		err = errors.New("read nothing")
	}
	return err
}

// sysfsFile is a host-wide sysfs setting this kernel has.
func sysfsFile() string {
	for _, p := range []string{"/sys/kernel/mm/transparent_hugepage/enabled", "/sys/kernel/mm/ksm/run", "/sys/power/state", "/sys/kernel/uevent_helper"} {
		if _, err := os.Lstat(p); err == nil {
			return p
		}
	}
	return "/sys/kernel/mm/transparent_hugepage/enabled"
}

// hostPty opens /dev/ptmx and fails unless the pty comes from the
// devpts whose st_dev is host.
func hostPty(host string) error {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var n uint32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		return e
	}
	var st unix.Stat_t
	if err := unix.Stat("/dev/pts", &st); err != nil {
		return err
	}
	if fmt.Sprint(st.Dev) != host {
		return fmt.Errorf("pty %d of a devpts of its own", n)
	}
	return nil
}
