package supervisor

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"vmsup/cgroup"
	"vmsup/config"
	"vmsup/landlock"
	"vmsup/services"
)

// Init is the inner stage, PID 1 of the VM's namespaces. The outer stage
// has already validated the config, claimed the cgroup (this process was
// born in its supervisor leaf) and created the runtime directory.
//
// Setup, in order: catch signals (before anything else, so none is lost);
// watch the control pipe; shape the mount namespace; bind the services'
// sockets and open their devices; create the service cgroups with their
// limits. Then the event loop runs the VM (see vm.go).
func Init() int {
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("vmsup-pid1\x00")[0])), 0, 0, 0)
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
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
	ctl := os.NewFile(fdControl, "control")
	var notify *os.File
	if len(os.Args) > 1 && os.Args[1] == "notify" {
		notify = os.NewFile(fdNotify, "notify")
	}
	// Nothing inherited may reach a service; the lock (fdLock) stays open
	// until PID 1 exits.
	unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)

	// PID 1 creates sockets: keep them private until chmod'ed. Services
	// get the umask vmsup was started with.
	umask := syscall.Umask(0o077)

	v := newVM(vmc, notify, umask)
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
	if err := setupMounts(v.cfg.Mount); err != nil {
		return err
	}
	abi := 0
	if v.cfg.Landlock != config.LandlockOff {
		abi = landlock.ABI()
	}
	cgroupDir := v.cfg.Cgroup
	if cgroupDir == "" {
		mnt, err := cgroup.Mount()
		if err != nil {
			return err
		}
		cgroupDir = filepath.Join(mnt, "vmsup", v.cfg.Name)
	}
	v.cgroupDir = cgroupDir
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
		if err := s.makeCgroup(cgroupDir); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
	}
	return nil
}
