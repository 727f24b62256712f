// Package check implements `vmsup check`: it probes the kernel and host for
// what `vmsup run` needs and says, for each missing feature, what stops
// working.
//
// Every probe only looks: it reads /proc and cgroup files and calls
// syscalls with arguments the kernel rejects before doing anything. No
// cgroup is created, nothing is mounted, no process is started, so `check`
// is safe to run on a production host and from a test.
//
// It owns the probes and the report's lines and JSON. It must not create
// or change anything, and it does not decide what run refuses of a config:
// those refusals come from its callers (explain) and from the tables of
// the packages that enforce (cgroup's limits).
package check

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"vmsup/cgroup"
	"vmsup/config"
	"vmsup/exit"
	"vmsup/landlock"
	"vmsup/services"
)

// Feature is one probed kernel or host feature.
type Feature struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Required bool   `json:"required"` // `vmsup run` cannot work without it
	Detail   string `json:"detail"`   // the one-line verdict
	Disables string `json:"disables"` // what stops working while it is missing
}

// Report is the result of Probe, in a stable order.
type Report struct {
	Features []Feature `json:"features"`
}

// OK reports whether every required feature is present.
func (r Report) OK() bool {
	for _, f := range r.Features {
		if f.Required && !f.OK {
			return false
		}
	}
	return true
}

// Exit statuses of Main (see package exit).
const (
	exitOK      = exit.OK
	exitMissing = exit.Temp
)

// runDisabled is what a missing required feature disables.
const runDisabled = "vmsup run"

// Probe inspects the running kernel and host without changing anything.
func Probe() Report {
	var r Report
	add := func(f Feature) { r.Features = append(r.Features, f) }

	kernel := kernelVersion()

	abi := landlock.ABI()
	add(landlockScopes(abi))
	add(landlockFS(abi))
	for _, f := range landlockLater(abi) {
		add(f)
	}
	add(seccompFilter())

	mount, mountErr := cgroup.FindMount()
	add(cgroup2(mount.Point, mountErr))
	add(cgroupKill(mount, mountErr, kernel))
	for _, c := range controllers {
		add(controller(c, mount.Point, mountErr))
	}

	sysAdmin, capErr := hasCapSysAdmin()
	add(namespace("pid-namespace", "/proc/self/ns/pid", sysAdmin, capErr))
	add(namespace("mount-namespace", "/proc/self/ns/mnt", sysAdmin, capErr))

	add(pidfd())
	add(clone3(kernel))
	add(mountSetattr(kernel))
	return r
}

// launcher looks for vmsup-exec next to this binary, as run does.
func launcher() Feature {
	f := Feature{Name: "vmsup-exec", Required: true, Disables: runDisabled}
	p, err := services.LauncherPath()
	if err != nil {
		f.Detail = err.Error()
		return f
	}
	f.OK = true
	f.Detail = p
	return f
}

// Main runs `vmsup check`: one aligned line per feature, or with jsonOut
// one JSON object {"ok": ..., "features": [...]}. It returns 0 when every
// required feature is present and 111 otherwise.
func Main(jsonOut bool, w io.Writer) int {
	return write(Probe(), jsonOut, w)
}

// write prints r and returns the exit status it stands for.
func write(r Report, jsonOut bool, w io.Writer) int {
	return writeReport(r, nil, jsonOut, w)
}

// writeReport prints r, then what run would refuse of a config, then a
// summary line, and returns the exit status they stand for.
func writeReport(r Report, refusals []string, jsonOut bool, w io.Writer) int {
	status := exitOK
	if !r.OK() || len(refusals) > 0 {
		status = exitMissing
	}
	var missing []string
	for _, f := range r.Features {
		if f.Required && !f.OK {
			missing = append(missing, f.Name)
		}
	}
	summary := fmt.Sprintf("%d of %d features present", countOK(r), len(r.Features))
	if len(missing) > 0 {
		summary += "; vmsup run cannot work without " + strings.Join(missing, ", ")
	} else {
		summary += "; everything vmsup run requires is present"
	}
	if len(refusals) > 0 {
		summary += fmt.Sprintf("; run would refuse this config (%d %s)", len(refusals), map[bool]string{true: "reason", false: "reasons"}[len(refusals) == 1])
	}
	if jsonOut {
		if refusals == nil {
			refusals = []string{}
		}
		out := struct {
			OK       bool      `json:"ok"`
			Features []Feature `json:"features"`
			Refusals []string  `json:"refusals"`
			Missing  []string  `json:"missing_required"`
			Summary  string    `json:"summary"`
		}{status == exitOK, r.Features, refusals, append([]string{}, missing...), summary}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // keep ">=" readable
		if err := enc.Encode(out); err != nil {
			return exitMissing
		}
		return status
	}
	width := 0
	for _, f := range r.Features {
		width = max(width, len(f.Name))
	}
	for _, f := range r.Features {
		verdict := "ok"
		if !f.OK {
			verdict = "missing"
		}
		line := f.Detail
		switch {
		case !f.OK && f.Required:
			line += ": required by vmsup run"
			if f.Disables != runDisabled {
				line += " (" + f.Disables + ")"
			}
		case !f.OK && f.Disables != "":
			line += ": disables " + f.Disables
		}
		if _, err := fmt.Fprintf(w, "%-7s %-*s  %s\n", verdict, width, f.Name, line); err != nil {
			return exitMissing
		}
	}
	for _, s := range refusals {
		fmt.Fprintf(w, "refused %-*s  %s\n", width, "config", s)
	}
	fmt.Fprintln(w, "summary: "+summary)
	return status
}

func countOK(r Report) int {
	n := 0
	for _, f := range r.Features {
		if f.OK {
			n++
		}
	}
	return n
}

// ---- Landlock ----

func landlockScopes(abi int) Feature {
	f := Feature{Name: "landlock-scopes", Required: true,
		Disables: `landlock "required" (the default)`}
	switch {
	case abi >= landlock.ScopeABI:
		f.OK = true
		f.Detail = abiText(abi) + ": signals and abstract UNIX sockets scoped"
	case abi == 0:
		f.Detail = "Landlock is unavailable (not built in, or not in the lsm= boot list)" + capNote()
	default:
		f.Detail = fmt.Sprintf("%s: cannot scope signals and abstract UNIX sockets (needs ABI %d, Linux 6.12)",
			abiText(abi), landlock.ScopeABI)
	}
	return f
}

func landlockFS(abi int) Feature {
	f := Feature{Name: "landlock-fs", Disables: "services[].landlock_paths"}
	if abi >= 1 {
		f.OK = true
		f.Detail = abiText(abi) + ": filesystem rules enforced"
	} else {
		f.Detail = "Landlock is unavailable" + capNote()
	}
	return f
}

// abiText is "ABI 7", saying so when the value is capped by the
// environment: otherwise a capped report would contradict the kernel.
func abiText(abi int) string {
	return fmt.Sprintf("ABI %d", abi) + capNote()
}

func capNote() string {
	if v := os.Getenv(landlock.ABIMaxEnv); v != "" {
		return fmt.Sprintf(" (%s=%s)", landlock.ABIMaxEnv, v)
	}
	return ""
}

// ---- cgroup v2 ----

func cgroup2(mount string, err error) Feature {
	f := Feature{Name: "cgroup2", Required: true, Disables: runDisabled}
	if err != nil {
		f.Detail = err.Error()
		return f
	}
	f.OK = true
	f.Detail = "mounted at " + mount
	return f
}

// cgroupKill looks for cgroup.kill (Linux 5.14) in a non-root cgroup: the
// root cgroup never has the file. Our own cgroup comes first, then any
// child of the root. Only when no non-root cgroup exists at all (a host
// where everything lives in the v2 root, like a hybrid one) is the kernel
// version the evidence, since creating a cgroup to look would change the
// system.
func cgroupKill(mount cgroup.MountEntry, mountErr error, kernel version) Feature {
	f := Feature{Name: "cgroup.kill", Required: true, Disables: runDisabled}
	if mountErr != nil {
		f.Detail = "no cgroup2 mount"
		return f
	}
	var dirs []string
	if own, err := ownCgroupDir(mount); err == nil && own != mount.Point {
		dirs = append(dirs, own)
	}
	if entries, err := os.ReadDir(mount.Point); err == nil {
		for _, e := range entries {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(mount.Point, e.Name()))
			}
		}
	}
	for _, dir := range dirs {
		if exists(filepath.Join(dir, "cgroup.kill")) {
			f.OK = true
			f.Detail = "present in " + dir
			return f
		}
		// A cgroup that vanished since ReadDir proves nothing; a live one
		// without the file proves the kernel lacks it.
		if exists(filepath.Join(dir, "cgroup.procs")) {
			f.Detail = "not in " + dir + " (needs Linux 5.14)"
			return f
		}
	}
	if kernel.atLeast(5, 14) {
		f.OK = true
		f.Detail = fmt.Sprintf("Linux %s >= 5.14 (no non-root cgroup to look in)", kernel)
	} else {
		f.Detail = fmt.Sprintf("Linux %s < 5.14", kernel)
	}
	return f
}

// ownCgroupDir returns this process's cgroup v2 directory, from the "0::"
// line of /proc/self/cgroup.
func ownCgroupDir(m cgroup.MountEntry) (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		p, ok := strings.CutPrefix(line, "0::")
		if !ok {
			continue
		}
		// The mount may show only a sub-tree (m.Root); our path is
		// relative to the hierarchy, so strip that sub-tree first.
		if m.Root != "/" {
			if p, ok = strings.CutPrefix(p, m.Root); !ok || (p != "" && p[0] != '/') {
				return "", fmt.Errorf("own cgroup %s is outside the mounted %s", line[3:], m.Root)
			}
		}
		return filepath.Join(m.Point, p), nil
	}
	return "", errors.New("no cgroup v2 line in /proc/self/cgroup")
}

// controllers are probed in this order: those limits are set through
// (cgroup's table), then the ones with nothing to disable, reported for
// information (vmsup sets no limit through them).
var controllers = limitControllers("io", "hugetlb")

func limitControllers(others ...string) []controllerSpec {
	var out []controllerSpec
	for _, c := range cgroup.LimitControllers() {
		out = append(out, controllerSpec{c.Name, "limits." + strings.Join(c.Keys, ", limits.")})
	}
	for _, name := range others {
		out = append(out, controllerSpec{name, ""})
	}
	return out
}

// controller says whether the cgroup2 root offers a controller to its
// descendants. None is required: a config that sets no limit runs without
// them, and one that does fails at start naming the limit.
type controllerSpec struct {
	name     string
	disables string // the config fields that need it
}

func controller(c controllerSpec, mount string, mountErr error) Feature {
	f := Feature{Name: c.name, Disables: c.disables}
	if mountErr != nil {
		f.Detail = "no cgroup2 mount"
		return f
	}
	file := filepath.Join(mount, "cgroup.controllers")
	b, err := os.ReadFile(file)
	if err != nil {
		f.Detail = err.Error()
		return f
	}
	for _, name := range strings.Fields(string(b)) {
		if name == c.name {
			f.OK = true
			f.Detail = "in cgroup.controllers of " + mount
			return f
		}
	}
	f.Detail = "not in cgroup.controllers of " + mount
	return f
}

// ---- namespaces and capabilities ----

// hasCapSysAdmin reports whether CAP_SYS_ADMIN is effective: creating
// pid and mount namespaces (and mounting in them) needs it.
func hasCapSysAdmin() (bool, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, fmt.Errorf("parse CapEff %q: %w", v, err)
			}
			return caps&(1<<unix.CAP_SYS_ADMIN) != 0, nil
		}
	}
	return false, errors.New("no CapEff line in /proc/self/status")
}

func namespace(name, nsFile string, capOK bool, capErr error) Feature {
	f := Feature{Name: name, Required: true, Disables: runDisabled}
	switch {
	case !exists(nsFile):
		f.Detail = "no " + nsFile + " (kernel built without this namespace)"
	case capErr != nil:
		f.Detail = capErr.Error()
	case !capOK:
		f.Detail = nsFile + " present, but CAP_SYS_ADMIN is not in the effective set"
	default:
		f.OK = true
		f.Detail = nsFile + " present, CAP_SYS_ADMIN held"
	}
	return f
}

// ---- syscalls ----

func pidfd() Feature {
	f := Feature{Name: "pidfd", Required: true, Disables: runDisabled}
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		f.Detail = "pidfd_open: " + errText(err) + " (needs Linux 5.3)"
		return f
	}
	unix.Close(fd)
	f.OK = true
	f.Detail = "pidfd_open works"
	return f
}

// clone3 calls clone3(NULL, 0): every kernel that has clone3 rejects a size
// below CLONE_ARGS_SIZE_VER0 with EINVAL before reading anything, so no
// process can be created. ENOSYS means the kernel (or a seccomp filter,
// as container runtimes install) refuses clone3. CLONE_INTO_CGROUP itself
// cannot be probed without a cgroup and a child, so the kernel version
// (5.7) stands for it.
func clone3(kernel version) Feature {
	f := Feature{Name: "clone3-into-cgroup", Required: true, Disables: runDisabled}
	_, _, errno := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
	switch {
	case errno != unix.EINVAL:
		f.Detail = "clone3: " + errText(errno) + " (not in this kernel, or blocked by seccomp)"
	case !kernel.atLeast(5, 7):
		f.Detail = fmt.Sprintf("clone3 present, but Linux %s < 5.7 has no CLONE_INTO_CGROUP", kernel)
	default:
		f.OK = true
		f.Detail = fmt.Sprintf("clone3 present, Linux %s >= 5.7", kernel)
	}
	return f
}

// mountSetattr calls mount_setattr(-1, NULL, 0, NULL, 0): a size below
// MOUNT_ATTR_SIZE_VER0 is rejected with EINVAL before any lookup, so no
// mount changes. vmsup needs it for recursive read-only binds (Linux 5.12).
func mountSetattr(kernel version) Feature {
	f := Feature{Name: "mount_setattr", Required: true, Disables: runDisabled}
	badFD := -1
	_, _, errno := unix.Syscall6(unix.SYS_MOUNT_SETATTR, uintptr(badFD), 0, 0, 0, 0, 0)
	if errno != unix.EINVAL && errno != unix.EBADF {
		f.Detail = "mount_setattr: " + errText(errno) + " (needs Linux 5.12, or blocked by seccomp)"
		return f
	}
	f.OK = true
	f.Detail = fmt.Sprintf("mount_setattr present (Linux %s)", kernel)
	return f
}

// errText names an errno ("ENOSYS") rather than describing it: that is
// what a reader searches for.
func errText(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		if errno == 0 {
			return "succeeded unexpectedly"
		}
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
	}
	return err.Error()
}

// ---- helpers ----

type version struct{ major, minor int }

func (v version) atLeast(major, minor int) bool {
	return v.major > major || v.major == major && v.minor >= minor
}

func (v version) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

// kernelVersion returns the running kernel's major.minor; 0.0 when uname
// cannot be read, so that version checks fail rather than pass.
func kernelVersion() version {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return version{}
	}
	return parseRelease(unix.ByteSliceToString(u.Release[:]))
}

// parseRelease reads "6.18.44-fc-v769" as 6.18.
func parseRelease(release string) version {
	var v version
	fmt.Sscanf(release, "%d.%d", &v.major, &v.minor)
	return v
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// MainCLI runs `vmsup check [CONFIG]` for the vmsup binary: the probe,
// vmsup-exec next to this binary, and, with a config (vm not nil), what
// this host would refuse of it: the refusals explain found (Landlock),
// and limits whose controller the cgroup2 root does not offer. It
// returns 111 if a required feature is missing or run would refuse the
// config.
func MainCLI(vm *config.VM, refusals []string, jsonOut bool, w io.Writer) int {
	r := Probe()
	r.Features = append(r.Features, launcher())
	if vm == nil {
		return writeReport(r, nil, jsonOut, w)
	}
	have := map[string]bool{}
	for _, f := range r.Features {
		have[f.Name] = f.OK
	}
	for _, c := range controllers {
		if c.disables == "" || have[c.name] {
			continue
		}
		for i, s := range vm.Services {
			if cgroup.UsesController(s.Limits, c.name) {
				refusals = append(refusals, fmt.Sprintf("services[%d].limits: needs the %s controller, which this host's cgroup2 root does not offer", i, c.name))
			}
		}
	}
	return writeReport(r, refusals, jsonOut, w)
}
