package config

import (
	"fmt"
	"strings"
)

// Network modes of a service.
const (
	NetworkNone = "none" // a network namespace of its own with only loopback up
	NetworkHost = "host" // the host's network namespace
)

// Tap is a TAP device vmsup creates for a service and hands over as
// Queues descriptors from FD on.
type Tap struct {
	Name   string
	FD     int
	Bridge string // "" = not enslaved
	Queues int    // >= 1
}

const (
	ifNameMax = 15  // IFNAMSIZ less the NUL
	maxQueues = 256 // the kernel's MAX_TAP_QUEUES
)

// ifNameProblem says why s cannot be a network interface name ("" if it
// can), as the kernel's dev_valid_name judges it; "%" is refused too,
// since the kernel would take it for a template and pick a name itself.
func ifNameProblem(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > ifNameMax:
		return fmt.Sprintf("an interface name has at most %d bytes", ifNameMax)
	case s == "." || s == "..":
		return "not an interface name"
	case strings.ContainsAny(s, "/:% \t\n\v\f\r"):
		return `an interface name has no "/", ":", "%" or white space`
	}
	return ""
}

func (p *parser) ifName(v *value, path string) (string, bool) {
	s, ok := p.str(v, path)
	if !ok {
		return "", false
	}
	if why := ifNameProblem(s); why != "" {
		p.errorf(v.pos, path, "%s: %s", quote(s), why)
		return "", false
	}
	return s, true
}

// taps parses a service's "taps"; every queue's descriptor joins fds.
func (p *parser) taps(v *value, path string, refs *svcRefs, fds *[]fdRef) []Tap {
	elems, _ := p.array(v, path)
	var out []Tap
	for i, e := range elems {
		path := index(path, i)
		f, ok := p.object(e, path)
		if !ok {
			continue
		}
		t := Tap{Queues: 1}
		if v, path := f.required("name"); v != nil {
			if s, ok := p.ifName(v, path); ok {
				t.Name = s
				refs.taps = append(refs.taps, nameRef{s, v, path})
			}
		}
		if v, path := f.get("queues"); v != nil {
			n, _ := p.integer(v, path, 1, maxQueues)
			t.Queues = int(n)
		}
		if v, path := f.get("bridge"); v != nil {
			if s, ok := p.ifName(v, path); ok {
				if s == t.Name {
					p.errorf(v.pos, path, "a TAP cannot be its own bridge")
				}
				t.Bridge = s
			}
		}
		if v, path := f.required("fd"); v != nil {
			if n, ok := p.fd(v, path); ok {
				t.FD = n
				if n+t.Queues-1 > maxFD {
					p.errorf(v.pos, path, "fd %d and its %d queues go past %d", n, t.Queues, maxFD)
				}
				for q := 0; q < t.Queues; q++ {
					*fds = append(*fds, fdRef{n + q, v, path})
				}
			}
		}
		out = append(out, t)
	}
	return out
}

// crossCheckTaps refuses a TAP name that two entries of the VM use.
func (p *parser) crossCheckTaps(refs []*svcRefs) {
	seen := map[string]string{}
	for _, r := range refs {
		for _, t := range r.taps {
			if first, dup := seen[t.s]; dup {
				p.errorf(t.v.pos, t.path, "interface name %s already used by %s", quote(t.s), first)
				continue
			}
			seen[t.s] = t.path
		}
	}
}
