package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/check"
	"vmsup/config"
	"vmsup/exit"
	"vmsup/explain"
	"vmsup/landlock"
	"vmsup/s6"
	"vmsup/status"
	"vmsup/supervisor"
)

// version and revision may be set at build time with -ldflags
// "-X main.version=... -X main.revision=...": the Makefile sets revision,
// because go build stamps none in a git worktree.
var version, revision = "", ""

func commands() []*command {
	var (
		parentPID, notifyFD string
		jsonOut             bool
		sd                  s6.MainOptions
	)
	return []*command{
		{name: "run", args: "CONFIG", desc: "supervise one VM until it is shut down (the s6 run entry)",
			about: "Exit status: 0 a stop request was honoured, 1 the VM failed, 3 the guest powered off,\n" +
				"100 usage or configuration error (nothing started), 111 temporary system failure.\n" +
				"SIGTERM, SIGINT and SIGQUIT ask for a graceful stop; a second one makes it forceful.",
			opts: []option{
				{name: "parent-pid", arg: "PID", help: "the s6-supervise that started vmsup: die with it", value: &parentPID},
				{name: "notify-fd", arg: "N", help: "s6 readiness: one newline on fd N once every service is ready", value: &notifyFD},
			},
			run: func(c *command, ops []string, io ioPair) int {
				if len(ops) != 1 {
					return usage(c, io, operandCount(ops, "CONFIG"))
				}
				o := supervisor.Options{Config: ops[0]}
				var err error
				if o.ParentPID, err = intOption("parent-pid", parentPID, 0); err != nil {
					return usage(c, io, err.Error())
				}
				if o.NotifyFD, err = intOption("notify-fd", notifyFD, -1); err != nil {
					return usage(c, io, err.Error())
				}
				if o.ParentPID < 0 {
					return usage(c, io, fmt.Sprintf("--parent-pid %d: not a PID", o.ParentPID))
				}
				if o.NotifyFD >= 0 && o.NotifyFD <= 2 {
					return usage(c, io, fmt.Sprintf("--notify-fd %d: must be 3 or above", o.NotifyFD))
				}
				if o.NotifyFD >= 0 {
					if _, err := unix.FcntlInt(uintptr(o.NotifyFD), unix.F_GETFD, 0); err != nil {
						io.errorf("run: --notify-fd %d: %v", o.NotifyFD, err)
						return exitUsage
					}
				}
				if err := landlock.CheckABIMaxEnv(); err != nil {
					io.errorf("run: %v", err)
					return exitUsage
				}
				return supervisor.Run(o)
			}},
		{name: "validate", args: "CONFIG", desc: "check a config without touching the system; every problem on standard output, one per line",
			about: "Each problem names its JSON path. Exit status: 0 valid, 100 invalid.",
			run: func(c *command, ops []string, io ioPair) int {
				if len(ops) != 1 {
					return usage(c, io, operandCount(ops, "CONFIG"))
				}
				vm, errs := config.Load(ops[0])
				if vm != nil {
					errs = supervisor.Problems(vm) // what run would refuse before creating anything
				}
				for _, e := range errs {
					fmt.Fprintln(io.out, e)
				}
				if len(errs) > 0 {
					return exitUsage // the problems are the whole output: scripts count its lines
				}
				return 0
			}},
		{name: "check", args: "[CONFIG]", desc: "probe the kernel and host for what run needs; with CONFIG, what this host would refuse of it",
			about: "Exit status: 0 every feature run requires is present (and, with CONFIG, nothing would be refused),\n" +
				"100 invalid CONFIG or environment, 111 otherwise.",
			opts: []option{{name: "json", help: "print a JSON report", set: &jsonOut}},
			run: func(c *command, ops []string, io ioPair) int {
				if len(ops) > 1 {
					return usage(c, io, "at most one CONFIG")
				}
				if err := landlock.CheckABIMaxEnv(); err != nil {
					io.errorf("check: %v", err)
					return exitUsage
				}
				if len(ops) == 0 {
					return check.MainCLI(nil, nil, jsonOut, io.out)
				}
				vm, errs := config.Load(ops[0])
				if len(errs) > 0 {
					configErrors(io, "check", ops[0], errs)
					return exitUsage
				}
				return check.MainCLI(vm, explain.Refusals(explain.Analyse(vm)), jsonOut, io.out)
			}},
		{name: "status", args: "[NAME]", desc: "the state of a running VM and of each of its services; without NAME, the VMs that run",
			about: "One line for the VM (phase, time in it, services ready), then one per service:\n" +
				"state (waiting, starting, ready, restarting, stopped), PID, time in that state, restarts.\n" +
				"Read from the record PID 1 keeps in " + status.DefaultDir + " (" + status.DirEnv + "); no socket.\n" +
				"Exit status: 0 running, 1 no such VM runs, 100 usage, 111 the record cannot be read.",
			opts: []option{{name: "json", help: "print the record as JSON (schema in the README)", set: &jsonOut}},
			run: func(c *command, ops []string, io ioPair) int {
				if len(ops) > 1 {
					return usage(c, io, "at most one NAME")
				}
				return statusCmd(ops, jsonOut, io)
			}},
		{name: "explain", args: "CONFIG", desc: "what each service of CONFIG could reach on this host, and what services could do to each other",
			about: "Exit status: 0, 100 invalid config.",
			opts:  []option{{name: "json", help: "print a JSON report", set: &jsonOut}},
			run: func(c *command, ops []string, io ioPair) int {
				if len(ops) != 1 {
					return usage(c, io, operandCount(ops, "CONFIG"))
				}
				if err := landlock.CheckABIMaxEnv(); err != nil {
					io.errorf("explain: %v", err)
					return exitUsage
				}
				vm, errs := config.Load(ops[0])
				if len(errs) > 0 {
					configErrors(io, "explain", ops[0], errs)
					return exitUsage
				}
				r := explain.Analyse(vm)
				if jsonOut {
					return writeJSON(io, r)
				}
				explain.Print(io.out, r)
				return 0
			}},
		{name: "s6-servicedir", args: "OUTDIR", desc: "write an s6 service directory that runs the VM of CONFIG",
			about: "OUTDIR must be new or empty. One of --config and --config-json is required.\n" +
				"Exit status: 0, 100 usage or config error, 111 the directory cannot be written.",
			opts: []option{
				{name: "config", arg: "CONFIG", help: "the VM's config file (an absolute path in the run script)", value: &sd.Config},
				{name: "config-json", arg: "JSON", help: "the config's text instead, written into OUTDIR as config.json (Nix)", value: &sd.ConfigJSON},
				{name: "execline", help: "write the scripts in execline instead of sh", set: &sd.Execline},
				{name: "log", arg: "LOGDIR", help: "add a log/ service: s6-log into LOGDIR (absolute)", value: &sd.LogDir},
				{name: "s6-log", arg: "PATH", help: "the s6-log binary log/run runs (default: s6-log from PATH)", value: &sd.S6Log},
			},
			run: func(c *command, ops []string, io ioPair) int {
				switch {
				case len(ops) != 1:
					return usage(c, io, operandCount(ops, "OUTDIR"))
				case (sd.Config == "") == (sd.ConfigJSON == ""):
					return usage(c, io, "give one of --config CONFIG and --config-json JSON")
				case sd.Config == "-":
					return usage(c, io, "--config -: the run script needs a file, not standard input")
				case sd.S6Log != "" && sd.LogDir == "":
					return usage(c, io, "--s6-log needs --log")
				}
				return s6.Run(sd, ops[0], io.errorf)
			}},
		{name: "version", desc: "print the version and the VCS revision vmsup was built from",
			run: func(c *command, ops []string, io ioPair) int {
				if len(ops) != 0 {
					return usage(c, io, "no operands expected")
				}
				fmt.Fprintln(io.out, versionString())
				return 0
			}},
		{name: "help", args: "[COMMAND]", desc: "print this list, or one command's usage",
			run: func(c *command, ops []string, io ioPair) int { return help(ops, io) }},
	}
}

func operandCount(ops []string, want string) string {
	if len(ops) == 0 {
		return "missing " + want
	}
	return fmt.Sprintf("want one %s, got %d operands: %s", want, len(ops), strings.Join(ops, " "))
}

func configErrors(io ioPair, cmd, path string, errs []*config.Error) {
	for _, e := range errs {
		io.errorf("%s: %s: %v", cmd, path, e)
	}
}

func writeJSON(io ioPair, v any) int {
	enc := json.NewEncoder(io.out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		io.errorf("%v", err)
		return exit.Temp
	}
	return 0
}

func statusCmd(ops []string, jsonOut bool, io ioPair) int {
	now := time.Now()
	if len(ops) == 0 {
		vms, err := status.List()
		if err != nil {
			io.errorf("status: %v", err)
			return exit.Temp
		}
		if jsonOut {
			if vms == nil {
				vms = []*status.VM{}
			}
			return writeJSON(io, struct {
				VMs []*status.VM `json:"vms"`
			}{vms})
		}
		for _, r := range vms {
			fmt.Fprintln(io.out, status.Summary(r, now))
		}
		return 0
	}
	name := ops[0]
	if !config.ValidName(name) {
		return usage(lookup("status"), io, fmt.Sprintf("%q is not a VM name", name))
	}
	r, err := status.Read(name)
	if errors.Is(err, status.ErrNotRunning) {
		io.errorf("status: %s: no such VM runs", name)
		return exit.Failed
	} else if err != nil {
		io.errorf("status: %v", err)
		return exit.Temp
	}
	if jsonOut {
		return writeJSON(io, r)
	}
	status.Print(io.out, r, now)
	return 0
}

// versionString is "vmsup VERSION (revision R[, modified], TIME)": the
// version from -ldflags or the module, the revision from the build's
// VCS stamp (go build adds it in a git checkout unless -buildvcs=false).
func versionString() string {
	v, rev, modified, when := version, revision, false, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value // the build's own stamp wins
			case "vcs.modified":
				modified = s.Value == "true"
			case "vcs.time":
				when = s.Value
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	if r, ok := strings.CutSuffix(rev, "-modified"); ok { // the Makefile's form
		rev, modified = r, true
	}
	if rev == "" {
		return "vmsup " + v + " (no VCS revision: built outside a git checkout, or with -buildvcs=false)"
	}
	out := "vmsup " + v + " (revision " + rev
	if modified {
		out += ", modified"
	}
	if when != "" {
		out += ", " + when
	}
	return out + ")"
}
