package supervisor

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vmsup/config"
	"vmsup/services"
)

// openNetwork gives a service with network "none" its network namespace
// and creates its TAPs; like its sockets, they are kept for the VM's
// life, so a restarted service gets the same ones.
func (s *service) openNetwork() error {
	if s.cfg.Network == config.NetworkNone {
		ns, err := services.NewNetNS()
		if err != nil {
			return err
		}
		s.spec.NetNamespace = ns
	}
	for _, t := range s.cfg.Taps {
		fds, err := createTap(t, s.cfg.UID, s.cfg.GID)
		if err != nil {
			return err
		}
		for q, f := range fds {
			s.files[t.FD+q] = f
		}
	}
	return nil
}

// createTap creates the TAP t in this process's network namespace (the
// host's: PID 1 shares the outer stage's), owned by uid and gid, up and
// enslaved to its bridge, and returns its queue descriptors.
//
// The device is not persistent: the kernel removes it when its last
// queue descriptor closes. Only PID 1 and the service hold them, both
// inside the VM's PID namespace, so however the VM ends (PID 1 exiting,
// killed, or ending with the outer stage) the TAP goes with it and
// nothing is left to clean up.
func createTap(t config.Tap, uid, gid uint32) ([]*os.File, error) {
	fail := func(err error) ([]*os.File, error) { return nil, fmt.Errorf("tap %s: %w", t.Name, err) }
	// IFF_TUN_EXCL makes creation fail rather than attach to a device of
	// that name; a multi-queue device needs a second TUNSETIFF per queue,
	// which that flag would refuse, so the name is checked first as well.
	if _, err := netlink.LinkByName(t.Name); err == nil {
		return fail(errors.New("the name is already in use by another network interface"))
	}
	flags := netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR
	if t.Queues > 1 {
		flags |= netlink.TUNTAP_MULTI_QUEUE
	} else {
		flags |= netlink.TUNTAP_TUN_EXCL
	}
	tap := &netlink.Tuntap{
		LinkAttrs:  netlink.LinkAttrs{Name: t.Name},
		Mode:       netlink.TUNTAP_MODE_TAP,
		Flags:      flags,
		Queues:     t.Queues,
		NonPersist: true,
		Owner:      uid,
		Group:      gid,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fail(errors.New("the name is already in use by another network interface"))
		}
		return fail(err)
	}
	closeAll := func() {
		for _, f := range tap.Fds {
			f.Close()
		}
	}
	if t.Bridge != "" {
		br, err := bridge(t.Bridge)
		if err == nil {
			err = netlink.LinkSetMaster(tap, br)
		}
		if err != nil {
			closeAll()
			return fail(err)
		}
	}
	if err := netlink.LinkSetUp(tap); err != nil {
		closeAll()
		return fail(fmt.Errorf("set up: %w", err))
	}
	return tap.Fds, nil
}

// bridge finds the bridge called name.
func bridge(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("bridge %s does not exist", name)
		}
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	if l.Type() != "bridge" {
		return nil, fmt.Errorf("%s is a %s device, not a bridge", name, l.Type())
	}
	return l, nil
}

// tapProblems adds, with their JSON paths, the bridges the config's
// TAPs name that are missing or not bridges: a config error (100), which
// `vmsup validate` reports too (Problems).
func tapProblems(vm *config.VM, add func(path, format string, args ...any)) {
	for i, s := range vm.Services {
		for j, t := range s.Taps {
			if t.Bridge == "" {
				continue
			}
			if _, err := bridge(t.Bridge); err != nil {
				add(fmt.Sprintf("services[%d].taps[%d].bridge", i, j), "%v", err)
			}
		}
	}
}
