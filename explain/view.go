package explain

import (
	"fmt"
	"path/filepath"
	"strings"

	"vmsup/config"
	"vmsup/services"
	"vmsup/services/launcher"
	"vmsup/supervisor"
)

// devices is its /dev: the launcher's minimal one and its devices.
func devices(s *config.Service) []string {
	nodes, links := launcher.BasicNodeNames()
	shm := "the host's /dev/shm"
	if s.PrivateShm > 0 {
		shm = "its own /dev/shm"
	}
	ro := "a read-only tmpfs (no capability adds a node)"
	if unmounts(s) {
		ro = "a read-only tmpfs (which CAP_SYS_ADMIN, with mount calls allowed, can remount)"
	}
	out := []string{fmt.Sprintf("its own /dev, %s: %s; links %s; a devpts of its own (at most %d ptys); %s",
		ro, strings.Join(nodes, " "), strings.Join(links, " "), launcher.PtyMax, shm)}
	for _, d := range s.Devices {
		switch {
		case !strings.HasPrefix(d.Path, "/dev/") && d.FD > 0:
			out = append(out, fmt.Sprintf("%s: opened by vmsup and handed over as fd %d; not in its /dev", d.Path, d.FD))
		case !strings.HasPrefix(d.Path, "/dev/"):
			out = append(out, d.Path+": not under /dev: neither in its /dev nor handed over")
		case d.FD > 0:
			out = append(out, fmt.Sprintf("%s: in its /dev as on the host (type, number, mode, owner), and opened by vmsup and handed over as fd %d", d.Path, d.FD))
		default:
			out = append(out, d.Path+": in its /dev as on the host (type, number, mode, owner); it opens it if that mode lets it (no fd)")
		}
	}
	return out
}

// kernelFiles is its /sys and /proc (package supervisor's list).
func kernelFiles() []string {
	ro, masked := supervisor.ProcView()
	return []string{
		"/sys: read-only, every mount below it included (no cgroup file writable, its own included)",
		"/proc: its VM's PID namespace; read-only: " + strings.Join(ro, " ") + "; masked (where present): " + strings.Join(masked, " "),
	}
}

// runtimeDir is how it sees and may change the VM's runtime dir
// (package services decides the view).
func runtimeDir(vm *config.VM, s *config.Service) string {
	v := services.RunDirView(vm, s)
	owner := "root's, 0755: only vmsup creates entries"
	if vm.GID != nil {
		owner = fmt.Sprintf("root:%d 01770 (sticky), it holds gid %d", *vm.GID, *vm.GID)
	}
	var view string
	switch {
	case v.Only != nil && len(v.Only) == 0:
		view = "in its view an empty read-only tmpfs (connect names none of it)"
	case v.Only != nil:
		view = "in its view a read-only tmpfs holding only " + strings.Join(v.Only, " ") + " (its sockets and connect)"
	case v.Writable && vm.GID == nil && s.UID != 0:
		view = fmt.Sprintf("writable in its view (it makes a socket of its own there), but uid %d cannot create in a dir of root's", s.UID)
	case v.Writable:
		view = "writable in its view (it makes a socket of its own there): it creates entries and removes or renames only its own; the sockets vmsup bound there are mount points it cannot remove, rename or replace"
	default:
		view = "read-only in its view (it makes no socket there)"
	}
	if v.HideParent {
		view += fmt.Sprintf("; %s is an empty read-only tmpfs holding this VM's dir alone (no other VM's in sight)", filepath.Dir(vm.RuntimeDir))
	}
	return owner + "; " + view
}
