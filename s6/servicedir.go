package s6

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"vmsup/cgroup"
	"vmsup/config"
	"vmsup/exit"
)

// Exit statuses of `vmsup s6-servicedir`, as for `vmsup run`.
const (
	exitUsage = exit.Usage
	exitTemp  = exit.Temp
)

// KillMargin is how long after shutdown_timeout s6-supervise waits before
// it SIGKILLs vmsup (timeout-kill). vmsup ends by itself at
// shutdown_timeout plus the time it takes to kill and remove the VM's
// cgroups: the services' cgroups, killed together, then the VM's own,
// each wait bounded by cgroup.DestroyTimeout; so s6 only has to step in
// when vmsup itself is stuck.
const KillMargin = 2 * cgroup.DestroyTimeout

// Style says in which language the run and finish scripts are written.
type Style int

const (
	Sh       Style = iota // #!/bin/sh
	Execline              // #!<execlineb from PATH> -P
)

// WriteServiceDir writes an s6 service directory at outDir that runs
// `vmsupPath run` on the config at configPath; vm is that config, parsed.
// Both paths must be absolute. outDir must not exist or be empty.
func WriteServiceDir(outDir, configPath, vmsupPath string, vm *config.VM) error {
	return WriteServiceDirStyle(outDir, configPath, vmsupPath, vm, Sh)
}

// WriteServiceDirStyle is WriteServiceDir with scripts in the given style.
//
// The directory is assembled in a hidden sibling (s6-svscan ignores names
// starting with a dot) and renamed into place, so a scanner never sees a
// half-written service: it sees nothing, or all of it.
func WriteServiceDirStyle(outDir, configPath, vmsupPath string, vm *config.VM, style Style) error {
	return WriteServiceDirOptions(outDir, configPath, vmsupPath, vm, Options{Style: style})
}

// Options for WriteServiceDirOptions.
type Options struct {
	Style Style
	// LogDir, when set, adds a log/ service: s6-log writing vmsup's and
	// the services' lines, timestamped, to this directory (at most 20
	// files of 1 MB each), as every s6 host pairs a longrun with a logger.
	LogDir string
	// S6Log is the s6-log the log/ run script execs; default "s6-log",
	// found through s6-supervise's PATH when the logger starts.
	S6Log string
	// ConfigText, when set, is the config itself: it is written into the
	// directory as config.json and configPath must be that file's final
	// path (outDir/config.json). Nix passes a config this way, with no
	// file of its own to point at.
	ConfigText []byte
}

// EmbeddedConfig is the name of the config inside a service directory
// written with Options.ConfigText.
const EmbeddedConfig = "config.json"

// WriteServiceDirOptions is WriteServiceDir with options.
func WriteServiceDirOptions(outDir, configPath, vmsupPath string, vm *config.VM, o Options) error {
	paths := []string{configPath, vmsupPath}
	if o.LogDir != "" {
		paths = append(paths, o.LogDir)
	}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return usageErrorf("%s: not an absolute path: the run script must not depend on its working directory", p)
		}
	}
	files, err := serviceFiles(configPath, vmsupPath, vm, o.Style)
	if err != nil {
		return err
	}
	if o.LogDir != "" {
		files = append(files, logFiles(o)...)
	}
	if o.ConfigText != nil {
		files = append(files, file{EmbeddedConfig, 0o644, string(o.ConfigText)})
	}
	if err := checkOutDir(outDir); err != nil {
		return err
	}
	outDir = filepath.Clean(outDir)
	tmp, err := os.MkdirTemp(filepath.Dir(outDir), "."+filepath.Base(outDir)+".tmp-")
	if err != nil {
		return err
	}
	if err := writeFiles(tmp, files); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	// rename(2) replaces an empty directory atomically (os.Rename
	// refuses to replace any directory).
	if err := unix.Rename(tmp, outDir); err != nil {
		os.RemoveAll(tmp)
		if err == unix.ENOTEMPTY || err == unix.EEXIST {
			// Filled meanwhile.
			return usageErrorf("%s: exists and is not empty; give a new or empty directory", outDir)
		}
		return &os.LinkError{Op: "rename", Old: tmp, New: outDir, Err: err}
	}
	return nil
}

type file struct {
	name string
	mode os.FileMode
	data string
}

func writeFiles(dir string, files []file) error {
	if err := os.Chmod(dir, 0o755); err != nil { // MkdirTemp made it 0700
		return err
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil { // log/
			return err
		}
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.mode); err != nil { // the umask applied
			return err
		}
	}
	return nil
}

// checkOutDir accepts a missing or empty directory.
func checkOutDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if errors.Is(err, unix.ENOTDIR) {
		return usageErrorf("%s: exists and is not a directory", dir)
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return usageErrorf("%s: exists and is not empty; give a new or empty directory", dir)
	}
	return nil
}

// UsageError is an error in what the caller asked for (exit 100), as
// opposed to a failure to write (111).
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &UsageError{fmt.Sprintf(format, args...)}
}

// serviceFiles returns the service directory's files.
func serviceFiles(configPath, vmsupPath string, vm *config.VM, style Style) ([]file, error) {
	killMs := (vm.ShutdownTimeout + KillMargin).Milliseconds()
	files := []file{
		// vmsup writes its readiness line to fd 3 (--notify-fd 3).
		{"notification-fd", 0o644, "3\n"},
		{"timeout-kill", 0o644, strconv.FormatInt(killMs, 10) + "\n"},
	}
	switch style {
	case Sh:
		return append(files,
			file{"run", 0o755, shRun(vmsupPath, configPath)},
			file{"finish", 0o755, shFinish}), nil
	case Execline:
		elb, err := exec.LookPath("execlineb")
		if err != nil {
			return nil, fmt.Errorf("--execline: %w", err)
		}
		if elb, err = filepath.Abs(elb); err != nil {
			return nil, err
		}
		run, err := execlineRun(elb, vmsupPath, configPath)
		if err != nil {
			return nil, err
		}
		return append(files,
			file{"run", 0o755, run},
			file{"finish", 0o755, execlineFinish(elb)}), nil
	}
	return nil, fmt.Errorf("unknown script style %d", style)
}

// shQuote quotes s for sh: inside single quotes only ' is special.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// oneProcNote is the run scripts' reason for GOMAXPROCS=1: vmsup runs no
// parallel Go code, and a Go runtime that starts with one processor
// keeps 100-250 KiB less memory all the VM's life than one reduced to
// one after its start (measured with BenchmarkManyVMs; services never
// see the variable).
const oneProcNote = `GOMAXPROCS=1: vmsup's Go runtime starts on one processor, 100-250 KiB less memory a VM.`

func shRun(vmsup, cfg string) string {
	return `#!/bin/sh
# Written by vmsup s6-servicedir. s6-supervise runs this script and exec
# keeps its PID, so vmsup's parent is s6-supervise, whose PID the shell
# holds in $PPID: vmsup dies with it. A $PPID of 1 means s6-supervise died
# before the shell started: the death signal could never fire, so give up.
# stderr joins stdout so that a log/ service sees vmsup's messages.
#
# The same in execline (vmsup s6-servicedir --execline; execline 2.9.1 or
# later, for getpid -P and eltest):
#   #!/bin/execlineb -P
#   fdmove -c 2 1
#   getpid -E -P PPID
#   ifelse { eltest $PPID = 1 } { exit ` + strconv.Itoa(exit.Temp) + ` }
#   export GOMAXPROCS 1
#   /path/to/vmsup run --parent-pid $PPID --notify-fd 3 /path/to/config.json
#
# ` + oneProcNote + `
[ "$PPID" != 1 ] || exit ` + strconv.Itoa(exit.Temp) + `
exec 2>&1
export GOMAXPROCS=1
exec ` + shQuote(vmsup) + ` run --parent-pid "$PPID" --notify-fd 3 ` + shQuote(cfg) + "\n"
}

// shFinish maps vmsup's exit status to s6's restart policy; the numbers
// are package exit's (finishArgs).
var shFinish = fmt.Sprintf(`#!/bin/sh
# Written by vmsup s6-servicedir. s6-supervise runs this after vmsup ends:
# $1 is vmsup's exit status, or 256 if a signal killed it ($2 names it).
# Exit %[1]d tells s6-supervise not to restart (as s6-svc -O would).
case $1 in
%[2]d|%[3]d)
	# %[2]d: the guest powered off by itself; %[3]d: the config is invalid and
	# retrying cannot help.
	echo "vmsup-finish: run exited $1: not restarting" >&2
	exit %[1]d ;;
256)
	echo "vmsup-finish: run was killed by signal $2" >&2 ;;
*)
	# %[4]d: a stop request was honoured (s6-svc -d keeps it down, s6-svc
	# -r restarts it); %[5]d: the VM failed; %[6]d: a temporary failure.
	echo "vmsup-finish: run exited $1" >&2 ;;
esac
exit 0
`, finishArgs...)

// finishArgs are the statuses the finish scripts name, by index:
// %[1]d NoRestart, %[2]d PoweredOff, %[3]d Usage, %[4]d OK, %[5]d Failed,
// %[6]d Temp. A finish script's own exit 0 is s6's "carry on", not one
// of vmsup's statuses.
var finishArgs = []any{exit.NoRestart, exit.PoweredOff, exit.Usage, exit.OK, exit.Failed, exit.Temp}

// execlineWord quotes s for execlineb. Characters that execline would
// interpret even inside quotes ($ for substitution by getpid -E, \ and "
// for quoting) are refused rather than escaped: the rules differ between
// execline versions, and no real path needs them.
func execlineWord(s string) (string, error) {
	if i := strings.IndexFunc(s, func(r rune) bool { return r == '$' || r == '\\' || r == '"' || r < ' ' || r == 0x7f }); i >= 0 {
		return "", usageErrorf("%q: an execline script cannot hold this path (it contains %q); use the sh style", s, s[i])
	}
	return `"` + s + `"`, nil
}

func execlineRun(elb, vmsup, cfg string) (string, error) {
	qv, err := execlineWord(vmsup)
	if err != nil {
		return "", err
	}
	qc, err := execlineWord(cfg)
	if err != nil {
		return "", err
	}
	return `#!` + elb + ` -P
# Written by vmsup s6-servicedir --execline. s6-supervise runs this script
# and every execline command execs into the next, keeping the PID, so
# vmsup's parent is s6-supervise: getpid -P gives its PID and vmsup dies
# with it. Needs execline 2.9.1 or later (getpid -P, eltest). A parent PID of 1 means s6-supervise died
# before getpid ran: the death signal could never fire, so give up.
# stderr joins stdout so that a log/ service sees vmsup's messages.
fdmove -c 2 1
getpid -E -P PPID
ifelse { eltest $PPID = 1 } { exit ` + strconv.Itoa(exit.Temp) + ` }
# ` + oneProcNote + `
export GOMAXPROCS 1
` + qv + ` run --parent-pid $PPID --notify-fd 3 ` + qc + "\n", nil
}

func execlineFinish(elb string) string {
	return `#!` + elb + fmt.Sprintf(` -S2
# Written by vmsup s6-servicedir --execline (execline 2.9.1 or later). s6-supervise runs this after
# vmsup ends: $1 is vmsup's exit status, or 256 if a signal killed it ($2
# names it). Exit %[1]d tells s6-supervise not to restart (as s6-svc -O):
# on %[2]d (the guest powered off by itself) and %[3]d (the config is invalid).
# %[4]d (a stop request honoured: s6-svc -r restarts), %[5]d (the VM failed) and
# %[6]d (a temporary failure) may be retried.
fdmove -c 1 2
ifelse { eltest $1 = %[2]d -o $1 = %[3]d } {
  foreground { echo "vmsup-finish: run exited ${1}: not restarting" }
  exit %[1]d
}
foreground {
  ifelse { eltest $1 = 256 } { echo "vmsup-finish: run was killed by signal" $2 }
  echo "vmsup-finish: run exited" $1
}
exit 0
`, finishArgs...)
}

// logFiles is the log/ service: s6-log reads the run script's stdout
// (s6-svscan pipes a service into its log/), prefixes each line with a
// TAI64N timestamp (t) and keeps at most 20 archived files of 1 MB (n20
// s1000000) in LogDir, which it creates. -d3 is its readiness.
func logFiles(o Options) []file {
	s6log := o.S6Log
	if s6log == "" {
		s6log = "s6-log"
	}
	var run string
	if o.Style == Execline {
		run = "#!" + execlinebPath() + " -P\n# Written by vmsup s6-servicedir --log.\nfdmove -c 2 1\n" +
			s6log + " -d3 -b -- t n20 s1000000 " + o.LogDir + "\n"
	} else {
		run = "#!/bin/sh\n# Written by vmsup s6-servicedir --log: the VM's log, timestamped, in\n# " + o.LogDir + " (20 files of 1 MB at most).\nexec 2>&1\nexec " +
			shQuote(s6log) + " -d3 -b -- t n20 s1000000 " + shQuote(o.LogDir) + "\n"
	}
	return []file{{"log/notification-fd", 0o644, "3\n"}, {"log/run", 0o755, run}}
}

// execlinebPath is the execlineb the execline scripts name.
func execlinebPath() string {
	if p, err := exec.LookPath("execlineb"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return "/bin/execlineb"
}

// MainOptions are the options of `vmsup s6-servicedir`, parsed by the
// CLI (cmd/vmsup), which also refuses what is wrong with them alone
// (both or neither of Config and ConfigJSON, Config "-", S6Log without
// LogDir).
type MainOptions struct {
	Config     string // the VM's config file
	ConfigJSON string // or the config's text, written into OUTDIR as config.json
	Execline   bool   // the scripts in execline instead of sh
	LogDir     string // add a log/ service: s6-log into this directory
	S6Log      string // the s6-log binary for log/run (default: s6-log from PATH)
}

// Run is `vmsup s6-servicedir`: it writes outDir and returns the exit
// status: 0, 100 for a usage or config error, 111 when the directory
// cannot be written. Messages go to errorf, one line each.
func Run(mo MainOptions, outDir string, errorf func(format string, a ...any)) int {
	var (
		vm   *config.VM
		errs []*config.Error
		o    = Options{LogDir: mo.LogDir, S6Log: mo.S6Log}
		src  = mo.Config
		abs  string
		err  error
	)
	if mo.ConfigJSON != "" {
		src = "--config-json"
		vm, errs = config.Parse([]byte(mo.ConfigJSON))
		o.ConfigText = []byte(mo.ConfigJSON)
		if abs, err = filepath.Abs(outDir); err == nil {
			abs = filepath.Join(abs, EmbeddedConfig)
		}
	} else {
		vm, errs = config.Load(mo.Config)
		abs, err = filepath.Abs(mo.Config)
	}
	for _, e := range errs {
		errorf("s6-servicedir: %s: %v", src, e)
	}
	if len(errs) > 0 {
		return exitUsage
	}
	if err != nil {
		errorf("s6-servicedir: %v", err)
		return exitTemp
	}
	self, err := os.Executable()
	if err == nil {
		self, err = filepath.EvalSymlinks(self)
	}
	if err != nil {
		errorf("s6-servicedir: cannot find the vmsup binary: %v", err)
		return exitTemp
	}
	o.Style = Sh
	if mo.Execline {
		o.Style = Execline
	}
	if err := WriteServiceDirOptions(outDir, abs, self, vm, o); err != nil {
		errorf("s6-servicedir: %v", err)
		var ue *UsageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitTemp
	}
	return 0
}
