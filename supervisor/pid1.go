package supervisor

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
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
// (see vm.go), and PID 1 hands it back (handBack).
func Init() int {
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
	vmc, errs := config.Parse(raw)
	if len(errs) > 0 {
		logger.Printf("config: %v", errs[0])
		return ExitConfig
	}
	ctl := os.NewFile(fdControl, "control")
	outer := os.NewFile(fdOuter, "outer")
	report := os.NewFile(fdStatus, "status")
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
	status := v.run(sigs)
	if !v.orphaned {
		v.handBack(status, report)
	}
	return status
}

// handBack gives the VM back to the outer stage: PID 1 reports the
// status and waits for ctlDone, the outer stage's word that it has run
// its own removal (destroyVM: the status record, and anything PID 1's
// teardown could not remove). The outer stage can die at any moment
// (with its parent, say): then PID 1 reads end of file instead and runs
// the removal again itself. Both removals take only what carries the
// VM's mark, so running them twice is harmless; teardown has already
// removed the cgroup and runtime dir, so that neither depends on the
// other stage surviving. The VM's lock keeps any other vmsup of this VM
// out until both stages have exited.
func (v *vm) handBack(status int, report *os.File) {
	if mnt, err := cgroup.Mount(); err == nil {
		if err := cgroup.Write(mnt, "cgroup.procs", strconv.Itoa(os.Getpid())); err != nil {
			logger.Print(err)
		}
	}
	_, err := report.Write([]byte{byte(status)})
	report.Close()
	for err == nil {
		e := <-v.events
		if e.kind != evControl || (e.err == nil && e.b != ctlDone) {
			continue
		}
		if e.err == nil {
			return
		}
		err = e.err
	}
	logger.Print("the outer vmsup died before removing the VM: removing it")
	removeVM(v.cfg, v.cgroupDir)
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
