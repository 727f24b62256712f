// Package seccomp builds the syscall filter of a service: the groups in
// groups.go refused with EPERM, minus what `syscalls.allow` lifts. It
// assembles the BPF program in the supervisor (with golang.org/x/net/bpf);
// the launcher only loads the instructions (see package launcher), so it
// links neither this package nor the assembler. It owns the filter's
// groups and their BPF program, and touches no system state.
//
// The program is a deny list of at most a few dozen calls, assembled
// here rather than by github.com/elastic/go-seccomp-bpf, which vmsup used
// before: that library builds the system call tables of every
// architecture it knows in its package initialiser, 165 KB of heap and
// 1.2-1.8 ms at the start of every vmsup process (the outer stage and PID
// 1 of each VM, and every `vmsup status`), whether a filter is built or
// not. Here the x86_64 table is data (zsysnum_linux_amd64.go, generated
// from golang.org/x/sys/unix's constants) and costs nothing until read.
package seccomp

//go:generate go run mksysnum.go

import (
	"fmt"
	"sort"
	"strings"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// sysnum is one system call of the table.
type sysnum struct {
	name string
	nr   uint32
}

// number returns the x86_64 number of the system call name.
func number(name string) (uint32, bool) {
	i := sort.Search(len(sysnums), func(i int) bool { return sysnums[i].name >= name })
	if i < len(sysnums) && sysnums[i].name == name {
		return sysnums[i].nr, true
	}
	return 0, false
}

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
	if _, ok := number(name); !ok {
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

// seccomp_data offsets (linux/seccomp.h): nr, arch, then the six
// arguments of 8 bytes; x86_64 is little-endian, so an argument's low
// half comes first.
const (
	offNR   = 0
	offArch = 4
	offArg0 = 16
)

// x32Bit marks a call through the x32 ABI, which shares x86_64's arch
// value (__X32_SYSCALL_BIT).
const x32Bit = 0x40000000

// Program assembles the filter refusing Refused(allow) and returns it
// ready for seccomp(SECCOMP_SET_MODE_FILTER):
//
//	arch != x86_64          -> EPERM  (a 64-bit process could otherwise
//	                                   reach mount through the i386 entry,
//	                                   int 0x80; no per-VM daemon is 32-bit)
//	nr has the x32 bit      -> ENOSYS (the same calls by other numbers)
//	nr is refused           -> EPERM
//	clone, unshare with a CLONE_NEW* flag in argument 0 -> EPERM
//	anything else           -> allow
func Program(allow []string) ([]Raw, error) {
	names := Refused(allow)
	if len(names) == 0 {
		return nil, nil
	}
	var plain, flagged []uint32
	for _, n := range names {
		nr, ok := number(n)
		if !ok {
			return nil, fmt.Errorf("seccomp: unknown system call %q", n)
		}
		if nsFlagged[n] {
			flagged = append(flagged, nr)
		} else {
			plain = append(plain, nr)
		}
	}
	const (
		allowRet = unix.SECCOMP_RET_ALLOW
		eperm    = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		enosys   = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	)
	// The program ends with allow, deny (EPERM): every test jumps
	// forward to deny, counted from the end.
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AUDIT_ARCH_X86_64, SkipTrue: 1},
		bpf.RetConstant{Val: eperm},
		bpf.LoadAbsolute{Off: offNR, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32Bit, SkipFalse: 1},
		bpf.RetConstant{Val: enosys},
	}
	var toDeny []int // indexes of jumps whose SkipTrue is the distance to deny
	for _, nr := range plain {
		toDeny = append(toDeny, len(prog))
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr})
	}
	for _, nr := range flagged {
		// Not this call: skip its three instructions. Then reload nr,
		// which the argument test replaced, for the next call's test.
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: 3},
			bpf.LoadAbsolute{Off: offArg0, Size: 4})
		toDeny = append(toDeny, len(prog))
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: cloneNSFlags},
			bpf.LoadAbsolute{Off: offNR, Size: 4})
	}
	prog = append(prog, bpf.RetConstant{Val: allowRet}, bpf.RetConstant{Val: eperm})
	deny := len(prog) - 1
	for _, i := range toDeny {
		skip := deny - i - 1
		if skip > 255 {
			return nil, fmt.Errorf("seccomp: %d refused calls do not fit the jumps", len(names))
		}
		j := prog[i].(bpf.JumpIf)
		j.SkipTrue = uint8(skip)
		prog[i] = j
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	out := make([]Raw, len(raw))
	for i, r := range raw {
		out[i] = Raw(uint64(r.Op)<<48 | uint64(r.Jt)<<40 | uint64(r.Jf)<<32 | uint64(r.K))
	}
	return out, nil
}
