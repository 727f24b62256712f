package supervisor

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"vmsup/cgroup"
	"vmsup/config"
	"vmsup/services"
)

// Init is the inner stage, PID 1 of the VM's namespaces. The outer stage
// has already validated the config; it starts this process before it
// creates anything, then claims the cgroup, creates the runtime
// directory, moves this process into the supervisor leaf and hands the
// VM over with ctlGo on the control pipe.
//
// Setup, in order: catch signals (before anything else, so none is lost);
// wait for the VM to be handed over and lock it; watch the control pipe;
// shape the mount namespace; bind the services' sockets and open their
// devices; make their network namespaces and TAPs (tap.go); create the
// service cgroups with their limits. Then the event loop runs the VM
// (see vm.go) and removes it at its end (teardown).
func Init() int {
	oneProc()
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("vmsup-pid1\x00")[0])), 0, 0, 0)
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP)
	survivePipes()

	cfgFile := os.NewFile(fdConfig, "config")
	h, raw, err := readHandoff(cfgFile)
	cfgFile.Close()
	if err != nil {
		logger.Printf("config: %v", err)
		return ExitTemp
	}
	// Not read again from mountinfo, which teardown would do when 1,000
	// VMs may be tearing down with this one.
	cgroup.KnownMount(h.Mount)
	vmc, errs := config.Parse(raw)
	if len(errs) > 0 {
		logger.Printf("config: %v", errs[0])
		return ExitConfig
	}
	// Non-blocking, so that its reads wait in Go's poller: a read
	// blocked in the kernel would hold a thread of its own all the VM's
	// life (about 22 KiB each, and one more to wake at the stop).
	unix.SetNonblock(fdControl, true)
	ctl := os.NewFile(fdControl, "control")
	outer := os.NewFile(fdOuter, "outer")
	var notify *os.File
	if len(os.Args) > 2 && os.Args[2] == "notify" { // argv: vmsup-pid1 NAME [notify]
		notify = os.NewFile(fdNotify, "notify")
	}
	// Nothing inherited may reach a service.
	unix.CloseRange(fdExtra, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)

	// The VM's lock, the same open file as the outer stage's: held
	// until this process exits too (see claimVM).
	claim := os.NewFile(fdClaim, "claim")
	defer claim.Close()
	intents, ok := handedOver(ctl)
	if !ok {
		logger.Print("the outer vmsup died while creating the VM: removing what it created")
		removeAbandoned(vmc, h.Cgroup, intents)
		return ExitTemp
	}
	outer.Close()

	// PID 1 creates sockets: keep them private until chmod'ed. Services
	// get the umask vmsup was started with.
	umask := syscall.Umask(0o077)

	v := newVM(vmc, notify, umask)
	v.cgroupDir = h.Cgroup
	go v.readControl(ctl)

	if err := v.setup(h); err != nil {
		logger.Print(err)
		v.teardown()
		return ExitTemp
	}
	return v.run(sigs)
}

// setup prepares everything the services need before the first starts,
// with what the outer stage found (h).
func (v *vm) setup(h *handoff) error {
	v.launcher = h.Launcher
	if err := v.openStatus(); err != nil {
		return err
	}
	if err := setupMounts(v.cfg.Mount, v.statusDir()); err != nil {
		return err
	}
	for i, s := range v.svcs {
		c := s.cfg
		var err error
		if s.spec, err = services.NewSpec(c, h.Paths[i], h.ABI, v.cfg.GID, v.umask); err != nil {
			return err
		}
		if err := s.spec.SetView(v.cfg, c); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		if err := s.openFiles(); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		if err := s.openNetwork(); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		if err := s.makeCgroup(v.cgroupDir); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
	}
	return nil
}
