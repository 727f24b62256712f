// Command vmsup supervises the sandboxed daemons of one VM. It parses the
// command line and calls one function; see docs/reference.md for the commands.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"vmsup/check"
	"vmsup/config"
	"vmsup/s6"
	"vmsup/supervisor"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage:
  vmsup run [--parent-pid PID] [--notify-fd N] CONFIG
  vmsup validate CONFIG
  vmsup check [--json]
  vmsup s6-servicedir [--execline] --config CONFIG OUTDIR
  vmsup version
CONFIG is a JSON file, or - for standard input.
`

func main() {
	// vmsup re-executes itself for its inner stages; argv[0] says which.
	switch filepath.Base(os.Args[0]) {
	case "vmsup-pid1":
		if os.Getpid() != 1 {
			fmt.Fprintln(os.Stderr, "vmsup-pid1: not PID 1: this mode is only for vmsup itself")
			os.Exit(supervisor.ExitConfig)
		}
		os.Exit(supervisor.Init())
	}
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

func cli(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return supervisor.ExitConfig
	}
	fs := flag.NewFlagSet("vmsup "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch args[0] {
	case "run":
		o := supervisor.Options{NotifyFD: -1}
		fs.IntVar(&o.ParentPID, "parent-pid", 0, "PID of the s6-supervise that started vmsup: die with it")
		fs.IntVar(&o.NotifyFD, "notify-fd", -1, "s6 notification fd: one newline once every service is ready")
		if fs.Parse(args[1:]) != nil || fs.NArg() != 1 {
			fmt.Fprint(stderr, usage)
			return supervisor.ExitConfig
		}
		if o.NotifyFD >= 0 && o.NotifyFD <= 2 {
			fmt.Fprintf(stderr, "vmsup: --notify-fd %d: must be 3 or above\n", o.NotifyFD)
			return supervisor.ExitConfig
		}
		if o.NotifyFD >= 0 {
			if _, err := unix.FcntlInt(uintptr(o.NotifyFD), unix.F_GETFD, 0); err != nil {
				fmt.Fprintf(stderr, "vmsup: --notify-fd %d: %v\n", o.NotifyFD, err)
				return supervisor.ExitConfig
			}
		}
		if o.ParentPID < 0 {
			fmt.Fprintf(stderr, "vmsup: --parent-pid %d: not a PID\n", o.ParentPID)
			return supervisor.ExitConfig
		}
		o.Config = fs.Arg(0)
		return supervisor.Run(o)
	case "validate":
		if fs.Parse(args[1:]) != nil || fs.NArg() != 1 {
			fmt.Fprint(stderr, usage)
			return supervisor.ExitConfig
		}
		_, errs := config.Load(fs.Arg(0))
		for _, e := range errs {
			fmt.Fprintln(stdout, e)
		}
		if len(errs) > 0 {
			return supervisor.ExitConfig
		}
		return 0
	case "check":
		jsonOut := fs.Bool("json", false, "print a JSON report")
		if fs.Parse(args[1:]) != nil || fs.NArg() != 0 {
			fmt.Fprint(stderr, usage)
			return supervisor.ExitConfig
		}
		return check.Main(*jsonOut, stdout)
	case "s6-servicedir":
		return s6.Main(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "vmsup", version)
		return 0
	}
	fmt.Fprintf(stderr, "vmsup: unknown command %q\n%s", args[0], usage)
	return supervisor.ExitConfig
}
