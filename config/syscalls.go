package config

import "vmsup/seccomp"

// Syscalls is a service's `syscalls` field: what it lifts of the default
// filter (package seccomp holds the groups).
type Syscalls struct {
	Allow []string // system call names and @groups
}

// syscalls parses {"allow": [NAMES or @GROUPS]}; an unknown name is an
// error at its own index.
func (p *parser) syscalls(v *value, path string) Syscalls {
	var sc Syscalls
	f, ok := p.object(v, path)
	if !ok {
		return sc
	}
	if v, path := f.get("allow"); v != nil {
		elems, _ := p.array(v, path)
		for i, e := range elems {
			s, ok := p.str(e, index(path, i))
			if !ok {
				continue
			}
			if err := seccomp.Check(s); err != nil {
				p.errorf(e.pos, index(path, i), "%v", err)
				continue
			}
			sc.Allow = append(sc.Allow, s)
		}
	}
	return sc
}
