package services

import (
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"vmsup/config"
	"vmsup/services/launcher"
)

// SetView fills in what the launcher needs for the service's view of
// the host (see launcher.View): its device nodes as they are on the
// host, and how it sees the VM's runtime dir.
//
// A service sees its runtime dir read-only, unless it creates a socket
// of its own there: a path of its ready or vmm that is in the runtime
// dir and not one of its sockets. Then the dir stays writable, and the
// sockets vmsup bound there are mount points in its view, so that even
// CAP_FOWNER or CAP_DAC_OVERRIDE cannot remove, rename or replace them.
// With connect, a service that creates nothing there sees only its own
// sockets and the connect entries in the runtime dir. The runtime
// dir's parent is hidden when it is not a top-level directory (the
// default /run/vmsup holds every VM's).
func (sp *Spec) SetView(vm *config.VM, s *config.Service) error {
	v := &sp.View
	for i, d := range s.Devices {
		if !strings.HasPrefix(d.Path, "/dev/") {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(d.Path, &st); err != nil {
			return fmt.Errorf("devices[%d]: %s: %w", i, d.Path, err)
		}
		if t := st.Mode & unix.S_IFMT; t != unix.S_IFCHR && t != unix.S_IFBLK {
			return fmt.Errorf("devices[%d]: %s is not a device node", i, d.Path)
		}
		v.Devices = append(v.Devices, launcher.Node{Path: d.Path, Mode: st.Mode, Rdev: st.Rdev, UID: st.Uid, GID: st.Gid})
	}
	dev := v.Devices
	*v = RunDirView(vm, s)
	v.Devices = dev
	return nil
}

// RunDirView is how s sees its VM's runtime dir (the fields of
// launcher.View other than Devices); it reads nothing of the host.
func RunDirView(vm *config.VM, s *config.Service) (v launcher.View) {
	rd := vm.RuntimeDir
	v.RunDir = rd
	v.HideParent = strings.Count(filepath.Dir(rd), "/") >= 2
	in := func(p string) bool { return strings.HasPrefix(p, rd+"/") }
	own := map[string]bool{}
	for _, so := range s.Sockets {
		own[so.Path] = true
	}
	creates := []string{s.Ready.Socket, s.Ready.Exists}
	if s.VMM != nil {
		creates = append(creates, s.VMM.QMP, s.VMM.CloudHypervisor)
	}
	for _, p := range creates {
		if p != "" && in(p) && !own[p] {
			v.Writable = true
		}
	}
	for _, o := range vm.Services {
		for _, so := range o.Sockets {
			if in(so.Path) {
				v.Protect = append(v.Protect, so.Path)
			}
		}
	}
	if s.Connect != nil && !v.Writable {
		v.Only = []string{}
		seen := map[string]bool{}
		for _, p := range append(append([]string(nil), socketPaths(s)...), s.Connect...) {
			if filepath.Dir(p) == rd && !seen[p] {
				seen[p] = true
				v.Only = append(v.Only, p)
			}
		}
	}
	return v
}

func socketPaths(s *config.Service) []string {
	var out []string
	for _, so := range s.Sockets {
		out = append(out, so.Path)
	}
	return out
}
