package supervisor

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"vmsup/cgroup"
	"vmsup/config"
	"vmsup/landlock"
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
// devices; create the service cgroups with their limits. Then the event
// loop runs the VM (see vm.go).
func Init() int {
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("vmsup-pid1\x00")[0])), 0, 0, 0)
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP)
	survivePipes()

	cfgFile := os.NewFile(fdConfig, "config")
	raw, err := io.ReadAll(io.NewSectionReader(cfgFile, 0, 1<<30))
	cfgFile.Close()
	if err != nil {
		logger.Printf("read config: %v", err)
		return ExitTemp
	}
	vmc, errs := config.Parse(raw)
	if len(errs) > 0 {
		logger.Printf("config: %v", errs[0])
		return ExitConfig
	}
	cgroupDir, err := vmCgroupDir(vmc)
	if err != nil {
		logger.Print(err)
		return ExitTemp
	}
	ctl := os.NewFile(fdControl, "control")
	outer := os.NewFile(fdOuter, "outer")
	var notify *os.File
	if len(os.Args) > 2 && os.Args[2] == "notify" { // argv: vmsup-pid1 NAME [notify]
		notify = os.NewFile(fdNotify, "notify")
	}
	// Nothing inherited may reach a service.
	unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)

	if !handedOver(ctl) {
		logger.Print("the outer vmsup died while creating the VM: removing what it created")
		// Its lock on the VM's cgroup may outlive the control pipe by a
		// moment (the kernel closes a dying process's files one by
		// one): wait until it has exited, so the lock tells whether
		// another vmsup holds the VM.
		waitExit(outer)
		removeAbandoned(vmc, cgroupDir)
		return ExitTemp
	}
	outer.Close()
	// Held until this process exits: see claimCgroup.
	lock, err := lockDir(cgroupDir, unix.LOCK_SH|unix.LOCK_NB)
	if err != nil {
		logger.Printf("cgroup: lock %s: %v", cgroupDir, err)
		return ExitTemp
	}
	defer lock.Close()

	// PID 1 creates sockets: keep them private until chmod'ed. Services
	// get the umask vmsup was started with.
	umask := syscall.Umask(0o077)

	v := newVM(vmc, notify, umask)
	v.cgroupDir = cgroupDir
	go v.readControl(ctl)

	if err := v.setup(); err != nil {
		logger.Print(err)
		v.teardown()
		return ExitTemp
	}
	return v.run(sigs)
}

// setup prepares everything the services need before the first starts.
func (v *vm) setup() error {
	exe, err := services.LauncherPath()
	if err != nil {
		return err
	}
	services.Launcher = exe
	if err := v.openStatus(); err != nil {
		return err
	}
	if err := setupMounts(v.cfg.Mount, v.statusDir()); err != nil {
		return err
	}
	abi := 0
	if v.cfg.Landlock != config.LandlockOff {
		abi = landlock.ABI()
	}
	for _, s := range v.svcs {
		c := s.cfg
		path, err := services.Resolve(c)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		if s.spec, err = services.NewSpec(c, path, abi, v.cfg.GID, v.umask); err != nil {
			return err
		}
		if err := s.openFiles(); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		if err := s.makeCgroup(v.cgroupDir); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
	}
	return nil
}

// handedOver waits for the outer stage to hand the VM over: ctlGo, or
// end of file if it died first.
func handedOver(ctl *os.File) bool {
	b := make([]byte, 1)
	n, _ := ctl.Read(b)
	return n == 1 && b[0] == ctlGo
}

// waitExit waits until the process of a pidfd has exited.
func waitExit(pidfd *os.File) {
	fds := []unix.PollFd{{Fd: int32(pidfd.Fd()), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != unix.EINTR {
			return
		}
	}
}

// removeAbandoned removes the VM's cgroup and runtime directory when the
// outer stage died before handing the VM over. Unless another vmsup holds
// the VM (the cgroup's lock is taken), they are what the dead outer stage
// created, or what an earlier crash left; a missing cgroup means it
// created nothing.
func removeAbandoned(vm *config.VM, dir string) {
	pl, err := lockDir(filepath.Dir(dir), unix.LOCK_EX)
	if err != nil {
		return // no parent: nothing was created
	}
	defer pl.Close()
	l, err := lockDir(dir, unix.LOCK_EX|unix.LOCK_NB)
	if err != nil {
		return // none, or another vmsup's
	}
	defer l.Close()
	removeVM(vm, dir)
}

// removeVM removes the runtime directory and the VM's cgroup, killing
// whatever is still in it, after moving this process out of it.
func removeVM(vm *config.VM, dir string) {
	os.RemoveAll(vm.RuntimeDir)
	if mnt, err := cgroup.Mount(); err == nil {
		if err := cgroup.Write(mnt, "cgroup.procs", strconv.Itoa(os.Getpid())); err != nil {
			logger.Print(err)
		}
	}
	if err := cgroup.Destroy(dir, cleanupTimeout); err != nil {
		logger.Print(err)
	}
}
