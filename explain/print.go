package explain

import (
	"fmt"
	"io"
	"strings"
)

// Print writes the report for a reader: a block per service, the pairs,
// then a verdict per service.
func Print(w io.Writer, r *Report) {
	fmt.Fprintf(w, "VM %s on Linux %s, Landlock ABI %d (%q)\n", r.VM, r.Kernel.Release, r.Kernel.LandlockABI, r.Kernel.Landlock)
	fmt.Fprintln(w, "\nsyscall filter (every service; EPERM unless its syscalls.allow lifts the call or its @group)")
	for _, g := range r.SyscallFilter {
		fmt.Fprintf(w, "  %s: %s: %s\n", g.Name, strings.Join(g.Refuses, ", "), g.Opens)
	}
	for _, s := range r.Services {
		fmt.Fprintf(w, "\nservice %s\n", s.Name)
		fmt.Fprintf(w, "  credentials: uid %d, gid %d%s\n", s.UID, s.GID, groupsText(s.Groups))
		if len(s.Capabilities) == 0 {
			fmt.Fprintln(w, "  capabilities: none")
		}
		for _, c := range s.Capabilities {
			fmt.Fprintf(w, "  capability %s: %s\n", c.Name, c.Grants)
		}
		section(w, "file system", s.FileSystem)
		section(w, "sockets", s.Sockets)
		section(w, "devices", s.Devices)
		section(w, "network", s.Network)
		section(w, "syscalls", s.Syscalls)
		for _, b := range s.Enforced {
			fmt.Fprintf(w, "  enforced %s: %s\n", b.Name, b.Detail)
		}
		for _, b := range s.Lacks {
			tag := "lacks"
			if b.Refuses {
				tag = "REFUSED"
			}
			fmt.Fprintf(w, "  %s %s: %s\n", tag, b.Name, b.Detail)
		}
	}
	fmt.Fprintln(w, "\nsame uid")
	if len(r.Pairs) == 0 {
		fmt.Fprintln(w, "  no two services share a uid")
	}
	for _, p := range r.Pairs {
		fmt.Fprintf(w, "  %s and %s (uid %d):\n", p.A, p.B, p.UID)
		for _, o := range p.Operations {
			line := fmt.Sprintf("    %s: %s", o.Call, o.Effect)
			if o.Unless != "" {
				line += " (unless " + o.Unless + ")"
			}
			fmt.Fprintln(w, line)
		}
	}
	fmt.Fprintln(w, "\nverdict")
	for _, s := range r.Services {
		fmt.Fprintf(w, "  %s: %s\n", s.Name, s.Verdict)
	}
}

func section(w io.Writer, name string, lines []string) {
	for _, l := range lines {
		fmt.Fprintf(w, "  %s: %s\n", name, l)
	}
}

func groupsText(g []uint32) string {
	if len(g) == 0 {
		return ""
	}
	s := make([]string, len(g))
	for i, x := range g {
		s[i] = fmt.Sprint(x)
	}
	return ", groups " + strings.Join(s, " ")
}
