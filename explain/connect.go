package explain

import (
	"fmt"
	"slices"
	"strings"

	"vmsup/config"
	"vmsup/landlock"
	"vmsup/services"
)

// sockets lists the sockets it is handed and what it may connect to.
func sockets(vm *config.VM, s *config.Service, abi int) []string {
	out := []string{}
	for _, so := range s.Sockets {
		out = append(out, fmt.Sprintf("listens on %s (fd %d, owner %d:%d, mode %04o)", so.Path, so.FD, so.UID, so.GID, so.Mode))
	}
	resolve := abi >= landlock.ResolveUnixABI
	if s.Connect != nil {
		for _, c := range s.Connect {
			line := "may connect to " + c
			if o, so := listener(vm, c); o != "" {
				line += " (" + o + "'s)"
				if !mayConnect(vm, s, so) {
					line += ", listed, but its mode does not let it"
				}
			}
			out = append(out, line)
		}
		if len(s.Connect) == 0 {
			out = append(out, `"connect": []: it names no socket`)
		}
		v := services.RunDirView(vm, s)
		switch {
		case resolve:
			out = append(out, fmt.Sprintf("no other pathname socket anywhere: Landlock ABI %d refuses the rest (RESOLVE_UNIX)", abi))
		case v.Only != nil:
			out = append(out, fmt.Sprintf("no other socket of its runtime dir (its view holds no other); outside it any pathname socket its uid, groups and capabilities open: %s", noRight(abi)))
		default:
			out = append(out, fmt.Sprintf("connect narrows nothing here: its runtime dir stays whole in its view (it makes a socket there) and %s: any its uid, groups and capabilities open", noRight(abi)))
		}
		return out
	}
	var reach []string
	for _, o := range vm.Services {
		if o.Name == s.Name {
			continue
		}
		for _, so := range o.Sockets {
			if mayConnect(vm, s, so) {
				reach = append(reach, fmt.Sprintf("%s (%s's)", so.Path, o.Name))
			}
		}
	}
	if len(reach) > 0 {
		out = append(out, "may connect to "+strings.Join(reach, ", ")+", by their modes")
	}
	other := ""
	if len(reach) > 0 {
		other = "other "
	}
	out = append(out, "no connect: may connect to any "+other+"pathname socket its uid, groups and capabilities open, in its runtime dir and outside it")
	return out
}

// listener is the service that listens on path ("" if none) and its
// socket.
func listener(vm *config.VM, path string) (string, config.Socket) {
	for _, o := range vm.Services {
		for _, so := range o.Sockets {
			if so.Path == path {
				return o.Name, so
			}
		}
	}
	return "", config.Socket{}
}

// mayConnect: connecting needs write permission on the socket file; the
// service holds the VM's gid besides its own groups.
func mayConnect(vm *config.VM, s *config.Service, so config.Socket) bool {
	if has(s, "CAP_DAC_OVERRIDE") || so.Mode&0o002 != 0 {
		return true
	}
	if so.UID == s.UID {
		return so.Mode&0o200 != 0
	}
	if so.GID == s.GID || slices.Contains(groups(vm, s), so.GID) {
		return so.Mode&0o020 != 0
	}
	return false
}

// reaches: s may name path in connect(2), as far as connect and its
// view allow (file modes aside).
func reaches(vm *config.VM, s *config.Service, path string, abi int) bool {
	if s.Connect == nil || slices.Contains(s.Connect, path) {
		return true
	}
	if abi >= landlock.ResolveUnixABI {
		return false
	}
	v := services.RunDirView(vm, s)
	return v.Only == nil || !strings.HasPrefix(path, vm.RuntimeDir+"/")
}

// socketBarrier is the pathname socket rule: enforced with connect on
// an ABI that has RESOLVE_UNIX.
func socketBarrier(vm *config.VM, s *config.Service, abi int) (detail string, enforced bool) {
	switch {
	case s.Connect != nil && abi >= landlock.ResolveUnixABI:
		return fmt.Sprintf("Landlock ABI %d (RESOLVE_UNIX): connects to its connect list alone", abi), true
	case s.Connect != nil && services.RunDirView(vm, s).Only == nil:
		return noRight(abi) + ", and its runtime dir stays whole in its view: connect holds nowhere", false
	case s.Connect != nil:
		return noRight(abi) + ": connect holds in its runtime dir's view alone", false
	case abi >= landlock.ResolveUnixABI:
		return "no connect: pathname connects are left to file modes", false
	}
	return "no connect, and " + noRight(abi) + ": file modes decide", false
}

// noRight says that Landlock cannot guard pathname socket connects here.
func noRight(abi int) string {
	if abi == 0 {
		return "without Landlock nothing guards connecting to pathname UNIX sockets"
	}
	return fmt.Sprintf("Landlock ABI %d has no right for connecting to pathname UNIX sockets (ABI %d)", abi, landlock.ResolveUnixABI)
}
