// Command vmsup supervises the sandboxed daemons of one VM. It parses the
// command line and calls one function; see docs/reference.md for the commands.
//
// Conventions (those of s6 and GNU tools): results go to standard output;
// every message goes to standard error, each of its lines prefixed with
// "vmsup: "; a usage error is one line saying what was wrong, then
// "vmsup: usage: ..." and status 100; --help, -h and `vmsup help` print
// on standard output and exit 0.
//
// It owns the command line: parsing, usage and help text, and the choice
// of the one function each command calls. It must not hold product logic:
// that lives in the packages it calls.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"vmsup/exit"
	"vmsup/supervisor"
)

func main() {
	// vmsup re-executes itself once per VM, as the VM's PID 1 (services
	// are launched by vmsup-exec); argv[0] says which stage this is.
	switch filepath.Base(os.Args[0]) {
	case "vmsup-pid1":
		if os.Getpid() != 1 {
			fmt.Fprintln(os.Stderr, "vmsup: vmsup-pid1: not PID 1: this mode is only for vmsup itself")
			os.Exit(exit.Usage)
		}
		os.Exit(supervisor.Init())
	}
	os.Exit(cli(os.Args[1:], ioPair{os.Stdout, os.Stderr}))
}

// ioPair is a command's standard output and standard error.
type ioPair struct{ out, err io.Writer }

// errorf writes a message, every line of it prefixed.
func (p ioPair) errorf(format string, a ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, a...), "\n")
	for _, l := range strings.Split(msg, "\n") {
		fmt.Fprintln(p.err, prefix+l)
	}
}

const prefix = "vmsup: "

const exitUsage = exit.Usage

func cli(args []string, io ioPair) int {
	if len(args) == 0 {
		io.errorf("no command")
		io.errorf("usage: vmsup COMMAND [ARGS] (vmsup help lists the commands)")
		return exitUsage
	}
	name := args[0]
	switch name {
	case "--help", "-h":
		return help(nil, io)
	case "--version":
		name = "version"
	}
	c := lookup(name)
	if c == nil {
		io.errorf("unknown command %q", name)
		io.errorf("usage: vmsup COMMAND [ARGS] (vmsup help lists the commands)")
		return exitUsage
	}
	if c.raw != nil {
		for _, a := range args[1:] {
			if a == "--help" || a == "-h" {
				return commandHelp(c, io)
			}
			if a == "--" {
				break
			}
		}
		return c.raw(args[1:], io)
	}
	operands, wantHelp, err := c.parse(args[1:])
	if wantHelp {
		return commandHelp(c, io)
	}
	if err != nil {
		return usage(c, io, err.Error())
	}
	return c.run(c, operands, io)
}

// usage reports a usage error for c: what was wrong, then its usage.
func usage(c *command, io ioPair, msg string) int {
	io.errorf("%s: %s", c.name, msg)
	io.errorf("usage: %s", c.usageLine())
	return exitUsage
}

func lookup(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// help is `vmsup help [COMMAND]`.
func help(operands []string, io ioPair) int {
	if len(operands) > 1 {
		return usage(lookup("help"), io, "at most one COMMAND")
	}
	if len(operands) == 1 {
		c := lookup(operands[0])
		if c == nil {
			return usage(lookup("help"), io, fmt.Sprintf("unknown command %q", operands[0]))
		}
		return commandHelp(c, io)
	}
	var b strings.Builder
	b.WriteString("usage: vmsup COMMAND [ARGS]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-14s %s\n", c.name, c.desc)
	}
	b.WriteString("\nCONFIG is a JSON file, or - for standard input.\n")
	b.WriteString("vmsup help COMMAND, or vmsup COMMAND --help, describes one command.\n")
	fmt.Fprint(io.out, b.String())
	return 0
}

func commandHelp(c *command, io ioPair) int {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s\n\n%s.\n", c.usageLine(), capitalise(c.desc))
	if c.about != "" {
		b.WriteString("\n" + c.about + "\n")
	}
	if len(c.opts) > 0 {
		b.WriteString("\nOptions:\n")
		for _, o := range c.opts {
			flag := "--" + o.name
			if o.arg != "" {
				flag += " " + o.arg
			}
			fmt.Fprintf(&b, "  %-18s %s\n", flag, o.help)
		}
	}
	b.WriteString("  -h, --help         print this help\n")
	fmt.Fprint(io.out, b.String())
	return 0
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
