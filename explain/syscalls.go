package explain

import (
	"fmt"
	"slices"
	"strings"

	"vmsup/config"
	"vmsup/seccomp"
)

// FilterGroup is one group of the default syscall filter, as package
// seccomp defines it (the one source; Report.SyscallFilter).
type FilterGroup struct {
	Name    string   `json:"name"`
	Refuses []string `json:"refuses"`
	Opens   string   `json:"opens"`
}

func filterGroups() []FilterGroup {
	out := []FilterGroup{}
	for _, g := range seccomp.Groups {
		out = append(out, FilterGroup{Name: g.Name, Refuses: append([]string(nil), g.Syscalls...), Opens: g.Why})
	}
	return out
}

// refused is what s's filter refuses (package seccomp decides).
func refused(s *config.Service) map[string]bool {
	m := map[string]bool{}
	for _, c := range seccomp.Refused(s.Syscalls.Allow) {
		m[c] = true
	}
	return m
}

// calls expands group names ("@mount") into their members.
func calls(names []string) []string {
	var out []string
	for _, n := range names {
		i := slices.IndexFunc(seccomp.Groups, func(g seccomp.Group) bool { return g.Name == n })
		if i < 0 {
			out = append(out, n)
			continue
		}
		out = append(out, seccomp.Groups[i].Syscalls...)
	}
	return out
}

// allowed: s's filter lets every one of names through.
func allowed(s *config.Service, names ...string) bool {
	r := refused(s)
	return !slices.ContainsFunc(calls(names), func(c string) bool { return r[c] })
}

// anyAllowed: s's filter lets at least one of names through.
func anyAllowed(s *config.Service, names ...string) bool {
	r := refused(s)
	return slices.ContainsFunc(calls(names), func(c string) bool { return !r[c] })
}

// syscalls is its filter: what of the default its allow lifts.
func syscalls(s *config.Service) []string {
	r := refused(s)
	if len(r) == 0 {
		return []string{"no filter: syscalls.allow lifts every group, so none is loaded: every system call, through any architecture's entry"}
	}
	var lifted []string
	for _, g := range seccomp.Groups {
		var off, on []string
		for _, c := range g.Syscalls {
			if r[c] {
				on = append(on, c)
			} else {
				off = append(off, c)
			}
		}
		switch {
		case len(off) == 0:
		case len(on) == 0:
			lifted = append(lifted, fmt.Sprintf("%s whole (%s)", g.Name, strings.Join(off, ", ")))
		default:
			lifted = append(lifted, fmt.Sprintf("%s of %s (%s still refused)", strings.Join(off, ", "), g.Name, strings.Join(on, ", ")))
		}
	}
	out := []string{fmt.Sprintf("seccomp filter: refuses (EPERM) %d calls of the groups above, and every call through another architecture's entry (i386 int 0x80)", len(r))}
	if len(lifted) == 0 {
		out = append(out, "lifts nothing: the default filter")
	} else {
		out = append(out, "syscalls.allow lifts "+strings.Join(lifted, "; "))
	}
	var idle []string
	for _, a := range s.Syscalls.Allow {
		if !strings.HasPrefix(a, "@") && !slices.Contains(calls(seccomp.GroupNames()), a) {
			idle = append(idle, a)
		}
	}
	if len(idle) > 0 {
		out = append(out, "syscalls.allow names "+strings.Join(idle, ", ")+", which no group refuses: lifts nothing")
	}
	return out
}

// through lists the capabilities whose grant works through calls the
// filter refuses by default (group names or calls of package seccomp);
// whole: that is all the capability grants.
var through = map[string]struct {
	calls []string
	whole bool
}{
	"CAP_DAC_READ_SEARCH": {[]string{"open_by_handle_at"}, false},
	"CAP_SYS_ADMIN":       {[]string{"@mount"}, false},
	"CAP_SYS_MODULE":      {[]string{"@modules"}, true},
	"CAP_SYS_BOOT":        {[]string{"@reboot", "@kexec"}, true},
	"CAP_SYS_TIME":        {[]string{"@clock"}, true},
	"CAP_BPF":             {[]string{"@bpf"}, true},
	"CAP_PERFMON":         {[]string{"@perf"}, true},
}

// filterNote says, for a capability of s, whether its filter refuses the
// calls its grant goes through ("" when none do).
func filterNote(s *config.Service, capName string) string {
	t, ok := through[capName]
	if !ok {
		return ""
	}
	names := strings.Join(t.calls, ", ")
	switch {
	case allowed(s, t.calls...):
		return "; for it: " + names + " allowed (syscalls.allow)"
	case anyAllowed(s, t.calls...):
		return "; for it: " + names + " partly allowed (syscalls.allow)"
	}
	if t.whole {
		return "; for it: void, its syscall filter refuses " + names
	}
	return "; for it: " + names + " refused by its syscall filter"
}

// void: the filter refuses every call the capability's grant needs.
func void(s *config.Service, capName string) bool {
	t, ok := through[capName]
	return ok && t.whole && !anyAllowed(s, t.calls...)
}
