package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"vmsup/cgroup"
	"vmsup/config"
	"vmsup/landlock"
	"vmsup/services"
)

// Problems lists everything `run` would refuse before creating anything,
// each with the JSON path it concerns (a problem of the installation has
// none). It only reads the host. `validate` and `run` both call it, so
// they agree on what a config may do, and with the same status: 100,
// because retrying cannot help.
func Problems(vm *config.VM) []*config.Error {
	ps, _ := check(vm)
	return ps
}

// check is Problems, and what it found on the host on the way that PID 1
// uses as it is: vmsup-exec and each service's program.
func check(vm *config.VM) ([]*config.Error, *handoff) {
	var ps []*config.Error
	add := func(path, format string, args ...any) {
		ps = append(ps, &config.Error{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	h := &handoff{Paths: make([]string, len(vm.Services))}
	if p, err := services.LauncherPath(); err != nil {
		add("", "%v", err)
	} else {
		h.Launcher = p
	}
	if why := systemDir(vm.RuntimeDir); why != "" {
		add("runtime_dir", "%s is %s: name a directory of this VM's own, such as /run/vmsup/%s", vm.RuntimeDir, why, vm.Name)
	}
	if vm.Cgroup != "" {
		if why := notVMCgroup(vm.Cgroup); why != "" {
			add("cgroup", "%s %s", vm.Cgroup, why)
		}
	}
	mountProblems(vm.Mount, add)
	for i := range vm.Services {
		h.Paths[i] = serviceProblems(vm, i, add)
	}
	tapProblems(vm, add)
	return ps, h
}

// systemDir says why dir may not be a runtime dir ("" if it may): it is
// removed with everything in it when the VM stops.
func systemDir(dir string) string {
	for _, d := range []string{dir, resolved(dir)} {
		switch {
		case d == "/":
			return "the root directory"
		case strings.Count(d, "/") == 1:
			return "a top-level directory"
		case d == "/var/tmp":
			return "a system directory"
		case strings.HasPrefix(d, "/proc/") || strings.HasPrefix(d, "/sys/"):
			return "in a kernel file system"
		}
	}
	return ""
}

// resolved is dir with the links of its existing ancestors resolved
// (/var/run is /run on most hosts).
func resolved(dir string) string {
	parent := filepath.Dir(dir)
	if r, err := filepath.EvalSymlinks(parent); err == nil {
		return filepath.Join(r, filepath.Base(dir))
	}
	return dir
}

// notVMCgroup says why dir may not be a VM's cgroup ("" if it may): it
// must be below the root of the cgroup2 hierarchy, not in a v1 one.
func notVMCgroup(dir string) string {
	mnt, err := cgroup.Mount()
	if err != nil {
		return "" // the host has no cgroup2: run says so, with 111
	}
	if dir == mnt {
		return "is the cgroup2 root: name a cgroup below it, such as " + filepath.Join(mnt, "vmsup", "NAME")
	}
	if v1 := v1Hierarchy(dir); v1 != "" {
		return "is in the cgroup v1 hierarchy at " + v1 + ": vmsup needs cgroup v2, mounted at " + mnt
	}
	if !strings.HasPrefix(dir, mnt+"/") {
		return "is not in the cgroup2 hierarchy at " + mnt
	}
	return ""
}

// v1Hierarchy returns the mount point of the cgroup v1 hierarchy (or the
// tmpfs holding them, /sys/fs/cgroup on a hybrid host) that dir is in.
func v1Hierarchy(dir string) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	best := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts ... - fstype source opts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) || fields[sep+1] != "cgroup" {
			continue
		}
		mp := unescapeMount(fields[4])
		if (dir == mp || strings.HasPrefix(dir, mp+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	return best
}

func unescapeMount(s string) string {
	if u, err := strconv.Unquote(`"` + strings.ReplaceAll(s, `"`, `\"`) + `"`); err == nil {
		return u
	}
	return s
}

// mountProblems checks the mount view: what it names exists, and it
// keeps what vmsup and every service need.
func mountProblems(m config.Mount, add func(path, format string, args ...any)) {
	for i, b := range m.Binds {
		for _, p := range []struct{ field, path string }{{"source", b.Source}, {"target", b.Target}} {
			if _, err := os.Stat(p.path); err != nil {
				add(fmt.Sprintf("mount.binds[%d].%s", i, p.field), "%v", err)
			}
		}
		if b.Target == "/proc" {
			add(fmt.Sprintf("mount.binds[%d].target", i), "/proc cannot be bound over: vmsup mounts the VM's own /proc there")
		}
	}
	for i, p := range m.ReadonlyPaths {
		if _, err := os.Stat(p); err != nil {
			add(fmt.Sprintf("mount.readonly_paths[%d]", i), "%v", err)
		}
		if p == "/" {
			add(fmt.Sprintf("mount.readonly_paths[%d]", i), "/ cannot be read-only: the VM's /proc, sockets and private /tmp are mounted below it; list the directories to protect instead")
		}
	}
	for i, p := range m.MaskedPaths {
		switch p {
		case "/":
			add(fmt.Sprintf("mount.masked_paths[%d]", i), "/ cannot be masked: the services' programs are below it")
		case "/proc":
			add(fmt.Sprintf("mount.masked_paths[%d]", i), "/proc cannot be masked: vmsup mounts the VM's own /proc there")
		case "/dev":
			add(fmt.Sprintf("mount.masked_paths[%d]", i), "/dev cannot be masked: services need /dev/null; use devices for what they may open")
		}
	}
}

// serviceProblems checks service i: its program, devices, rlimits and
// the sockets it or vmsup creates. It returns the program's path.
func serviceProblems(vm *config.VM, i int, add func(path, format string, args ...any)) string {
	s := &vm.Services[i]
	at := func(f string, args ...any) string { return fmt.Sprintf("services[%d].", i) + fmt.Sprintf(f, args...) }
	path, err := services.Resolve(s)
	if err != nil {
		add(at("argv[0]"), "%v", err)
	}
	for j, d := range s.Devices {
		if fi, err := os.Stat(d.Path); err != nil {
			add(at("devices[%d].path", j), "%v", err)
		} else if fi.IsDir() {
			add(at("devices[%d].path", j), "%s is a directory, not a device", d.Path)
		} else if fi.Mode()&os.ModeDevice == 0 {
			add(at("devices[%d].path", j), "%s is not a device node", d.Path)
		}
	}
	for _, r := range s.Rlimits {
		var cur unix.Rlimit
		if unix.Getrlimit(r.Resource, &cur) != nil || r.Value <= cur.Max || mayRaiseRlimits() {
			continue
		}
		add(at("rlimits.%s", r.Name), "%s is above the hard limit %s, and vmsup lacks CAP_SYS_RESOURCE to raise it", rlimitString(r.Value), rlimitString(cur.Max))
	}
	for k, so := range s.Sockets {
		if why := socketInRuntimeDir(vm.RuntimeDir, so.Path); why != "" {
			add(at("sockets[%d].path", k), "%s", why)
		}
	}
	// Sockets the service creates itself (QEMU's QMP socket): in the
	// runtime dir, only root can, unless the VM has a gid (the dir is
	// then group-writable and the service in the group).
	for _, own := range []struct{ field, path string }{{"ready.socket", s.Ready.Socket}, {"vmm.qmp", vmmQMP(s)}} {
		if own.path == "" {
			continue
		}
		if why := socketInRuntimeDir(vm.RuntimeDir, own.path); why != "" {
			add(at("%s", own.field), "%s", why)
		} else if filepath.Dir(own.path) == vm.RuntimeDir && vm.GID == nil && s.UID != 0 && !boundByVmsup(vm, own.path) {
			add(at("%s", own.field), "the service (uid %d) creates this socket, but it cannot write to runtime_dir: set the VM-level \"gid\" (the runtime dir is then writable by that group, which every service has)", s.UID)
		}
	}
	return path
}

// boundByVmsup says whether path is one of the sockets vmsup binds.
func boundByVmsup(vm *config.VM, path string) bool {
	for _, s := range vm.Services {
		for _, so := range s.Sockets {
			if so.Path == path {
				return true
			}
		}
	}
	return false
}

func vmmQMP(s *config.Service) string {
	if s.VMM == nil {
		return ""
	}
	return s.VMM.QMP
}

// socketInRuntimeDir says why a socket may not be at path: the runtime
// dir itself, or below a subdirectory of it (vmsup creates it empty).
func socketInRuntimeDir(rd, path string) string {
	switch {
	case path == rd:
		return "is the runtime dir itself"
	case strings.HasPrefix(path, rd+"/") && filepath.Dir(path) != rd:
		return fmt.Sprintf("is in a subdirectory of the runtime dir %s, which vmsup creates empty: put it in the runtime dir itself", rd)
	}
	return ""
}

// mayRaiseRlimits says whether vmsup has CAP_SYS_RESOURCE (effective).
func mayRaiseRlimits() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) != nil {
		return false
	}
	return data[unix.CAP_SYS_RESOURCE/32].Effective&(1<<(unix.CAP_SYS_RESOURCE%32)) != 0
}

func rlimitString(v uint64) string {
	if v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}

// preflight checks everything that can be checked without changing the
// host, so that a config or host problem leaves nothing behind, and
// returns what it found for PID 1. Its error carries the exit status
// (exitError).
func preflight(vm *config.VM) (*handoff, error) {
	ps, h := check(vm)
	if len(ps) > 0 {
		var lines []string
		for _, p := range ps {
			lines = append(lines, "config: "+p.Error())
		}
		return nil, configError(errors.New(strings.Join(lines, "\n")))
	}
	switch vm.Landlock {
	case config.LandlockRequired, config.LandlockBestEffort:
		h.ABI = landlock.ABI()
		if miss := landlock.Missing(h.ABI); miss != "" {
			if vm.Landlock == config.LandlockRequired {
				return nil, tempError(fmt.Errorf(`landlock is required but %s; set "landlock": "best-effort" to run without it`, miss))
			}
			logger.Printf("landlock best-effort: %s", miss)
		}
	}
	dir, err := vmCgroupDir(vm)
	if err != nil {
		return nil, tempError(err)
	}
	h.Cgroup = dir
	if h.Mount, err = cgroup.Mount(); err != nil {
		return nil, tempError(fmt.Errorf("cgroup: %w", err))
	}
	return h, nil
}
