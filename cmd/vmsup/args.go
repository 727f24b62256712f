package main

import (
	"fmt"
	"strconv"
	"strings"
)

// option is one GNU-style long option of a command.
type option struct {
	name  string // without the dashes
	arg   string // "" for a switch, else what the value is ("PID")
	help  string
	value *string
	set   *bool
}

// command is one `vmsup COMMAND`.
type command struct {
	name  string
	args  string // the operands in the usage line
	desc  string // one line
	about string // more, for `vmsup help COMMAND`
	opts  []option
	// run gets the operands once the options are parsed.
	run func(c *command, operands []string, io ioPair) int
	// raw commands parse their own arguments (everything after the name).
	raw func(args []string, io ioPair) int
}

// usageLine is "vmsup NAME [--opt ARG] ... OPERANDS".
func (c *command) usageLine() string {
	var b strings.Builder
	b.WriteString("vmsup " + c.name)
	for _, o := range c.opts {
		if o.arg == "" {
			fmt.Fprintf(&b, " [--%s]", o.name)
		} else {
			fmt.Fprintf(&b, " [--%s %s]", o.name, o.arg)
		}
	}
	if c.args != "" {
		b.WriteString(" " + c.args)
	}
	return b.String()
}

// usageError says what was wrong, then the short usage, each line with
// the one prefix, and returns the usage status.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// parse splits args into options (stored through c.opts) and operands.
// Options may come before or after operands; "--" ends them; "-" is an
// operand (standard input). It returns help=true for -h or --help.
func (c *command) parse(args []string) (operands []string, help bool, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(operands, args[i+1:]...), false, nil
		case a == "-h" || a == "--help":
			return nil, true, nil
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			o := c.option(name)
			if o == nil {
				return nil, false, usageError{fmt.Sprintf("unknown option --%s", name)}
			}
			if o.arg == "" {
				if hasVal {
					return nil, false, usageError{fmt.Sprintf("--%s takes no value", name)}
				}
				*o.set = true
				continue
			}
			if !hasVal {
				if i+1 >= len(args) {
					return nil, false, usageError{fmt.Sprintf("--%s needs a value (%s)", name, o.arg)}
				}
				i++
				val = args[i]
			}
			*o.value = val
		case len(a) > 1 && a[0] == '-':
			return nil, false, usageError{fmt.Sprintf("unknown option %s (options are --long, with two dashes)", a)}
		default:
			operands = append(operands, a)
		}
	}
	return operands, false, nil
}

func (c *command) option(name string) *option {
	for i := range c.opts {
		if c.opts[i].name == name {
			return &c.opts[i]
		}
	}
	return nil
}

// intOption parses an option's value as a number; "" is def.
func intOption(name, s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, usageError{fmt.Sprintf("--%s %s: not a number", name, strconv.Quote(s))}
	}
	return n, nil
}
