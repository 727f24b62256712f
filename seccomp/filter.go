// Package seccomp builds the syscall filter of a service: the groups in
// groups.go refused with EPERM, minus what `syscalls.allow` lifts. It
// assembles the BPF program with github.com/elastic/go-seccomp-bpf in the
// supervisor; the launcher only loads the instructions (see package
// launcher), so it links neither this package nor the library.
//
// It owns the filter's groups and their BPF program. It must not be linked
// by the launcher, which only loads the instructions.
package seccomp

import (
	"fmt"
	"sort"
	"strings"

	sbpf "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Check says whether name is something `syscalls.allow` may hold: a
// group of the table, or a system call this architecture knows. A known
// call that no group refuses lifts nothing, and is accepted.
func Check(name string) error {
	if strings.HasPrefix(name, "@") {
		if group(name) == nil {
			return fmt.Errorf("unknown syscall group %q (groups: %s)", name, strings.Join(GroupNames(), ", "))
		}
		return nil
	}
	if _, ok := arch.X86_64.SyscallNames[name]; !ok {
		return fmt.Errorf("unknown system call %q", name)
	}
	return nil
}

// GroupNames lists the groups in table order.
func GroupNames() []string {
	var names []string
	for _, g := range Groups {
		names = append(names, g.Name)
	}
	return names
}

func group(name string) *Group {
	for i := range Groups {
		if Groups[i].Name == name {
			return &Groups[i]
		}
	}
	return nil
}

// Refused lists the system calls a service with allow is refused,
// sorted: the table minus the lifted groups and names.
func Refused(allow []string) []string {
	lifted := map[string]bool{}
	for _, a := range allow {
		if g := group(a); g != nil {
			for _, s := range g.Syscalls {
				lifted[s] = true
			}
		}
		lifted[a] = true
	}
	var out []string
	for _, g := range Groups {
		if lifted[g.Name] {
			continue
		}
		for _, s := range g.Syscalls {
			if !lifted[s] {
				out = append(out, s)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Raw is one BPF instruction as struct sock_filter packs it (code in
// bits 48-63, jt 40-47, jf 32-39, k 0-31), so it travels in the launch
// spec as one number.
type Raw uint64

// Program assembles the filter refusing Refused(allow) and returns it
// ready for seccomp(SECCOMP_SET_MODE_FILTER).
//
// Other architectures: go-seccomp-bpf matches only the native one and
// lets any other fall to the default action, which for a deny list is
// "allow": a 64-bit process could reach mount through the i386 entry
// (int 0x80). The program therefore starts by refusing (EPERM) every
// call whose arch is not x86_64; no per-VM daemon is a 32-bit binary.
// x32 calls (the native arch with bit 30 set) get ENOSYS from the
// library.
func Program(allow []string) ([]Raw, error) {
	names := Refused(allow)
	if len(names) == 0 {
		return nil, nil
	}
	var plain []string
	var conds []sbpf.NameWithConditions
	for _, n := range names {
		if nsFlagged[n] {
			conds = append(conds, sbpf.NameWithConditions{Name: n, Conditions: sbpf.ArgumentConditions{
				{Argument: 0, Operation: sbpf.BitsSet, Value: cloneNSFlags}}})
			continue
		}
		plain = append(plain, n)
	}
	policy := sbpf.Policy{DefaultAction: sbpf.ActionAllow, Syscalls: []sbpf.SyscallGroup{
		{Names: plain, NamesWithCondtions: conds, Action: sbpf.ActionErrno},
	}}
	prog, err := policy.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	guard := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(arch.X86_64.ID), SkipTrue: 1},
		bpf.RetConstant{Val: uint32(sbpf.ActionErrno) | uint32(unix.EPERM)},
	}
	raw, err := bpf.Assemble(append(guard, prog...))
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	out := make([]Raw, len(raw))
	for i, r := range raw {
		out[i] = Raw(uint64(r.Op)<<48 | uint64(r.Jt)<<40 | uint64(r.Jf)<<32 | uint64(r.K))
	}
	return out, nil
}
