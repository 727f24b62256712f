package seccomp

import (
	"encoding/binary"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Every name of the table is a system call the library knows, so the
// default program assembles; each group lifted removes exactly its
// members.
func TestTableAssembles(t *testing.T) {
	prog, err := Program(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("default filter: %d instructions, %d calls refused", len(prog), len(Refused(nil)))
	seen := map[string]string{}
	for _, g := range Groups {
		if err := Check(g.Name); err != nil {
			t.Error(err)
		}
		for _, s := range g.Syscalls {
			if err := Check(s); err != nil {
				t.Errorf("%s: %v", g.Name, err)
			}
			if o, dup := seen[s]; dup {
				t.Errorf("%s is in %s and %s", s, o, g.Name)
			}
			seen[s] = g.Name
		}
		left := Refused([]string{g.Name})
		for _, s := range g.Syscalls {
			if slices.Contains(left, s) {
				t.Errorf("%s still refused with %s allowed", s, g.Name)
			}
		}
		if len(left)+len(g.Syscalls) != len(Refused(nil)) {
			t.Errorf("allowing %s lifts more than its members", g.Name)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{{"open_by_handle_at", true}, {"read", true}, {"@bpf", true}, {"@nope", false}, {"open_by_handle", false}, {"", false}} {
		if err := Check(c.name); (err == nil) != c.ok {
			t.Errorf("Check(%q) = %v", c.name, err)
		}
	}
	if r := Refused([]string{"keyctl"}); slices.Contains(r, "keyctl") || !slices.Contains(r, "add_key") {
		t.Errorf("allow keyctl: %v", r)
	}
}

// The README lists the groups exactly as the table has them.
func TestREADMEListsGroups(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), Table()) {
		t.Errorf("README.md lacks the current group table; put this in it:\n%s", Table())
	}
}

// The assembled program decides as its doc comment says, run in x/net's
// BPF interpreter on a seccomp_data (the kernel itself runs it in the
// services and hostile suites). The interpreter loads words in network
// byte order where the kernel loads them in the host's, so the data is
// laid out big-endian: each load then reads the value the kernel would.
func TestProgramDecides(t *testing.T) {
	const (
		allowed = unix.SECCOMP_RET_ALLOW
		eperm   = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		enosys  = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
		i386    = 0x40000003 // AUDIT_ARCH_I386
	)
	data := func(arch, nr uint32, arg0 uint64) []byte {
		b := make([]byte, 64)
		binary.BigEndian.PutUint32(b[0:], nr)
		binary.BigEndian.PutUint32(b[4:], arch)
		// args[0]: its low half first, as on x86_64.
		binary.BigEndian.PutUint32(b[16:], uint32(arg0))
		binary.BigEndian.PutUint32(b[20:], uint32(arg0>>32))
		return b
	}
	x := uint32(unix.AUDIT_ARCH_X86_64)
	for _, c := range []struct {
		allow []string
		what  string
		in    []byte
		want  uint32
	}{
		{nil, "read", data(x, unix.SYS_READ, 0), allowed},
		{nil, "mount", data(x, unix.SYS_MOUNT, 0), eperm},
		{nil, "open_by_handle_at", data(x, unix.SYS_OPEN_BY_HANDLE_AT, 0), eperm},
		{nil, "_sysctl (last group's)", data(x, unix.SYS__SYSCTL, 0), eperm},
		{nil, "read through i386", data(i386, 3, 0), eperm},
		{nil, "read through x32", data(x, x32Bit|unix.SYS_READ, 0), enosys},
		{nil, "clone a thread", data(x, unix.SYS_CLONE, unix.CLONE_VM|unix.CLONE_THREAD|unix.CLONE_SIGHAND), allowed},
		{nil, "clone CLONE_NEWUSER", data(x, unix.SYS_CLONE, unix.CLONE_NEWUSER), eperm},
		{nil, "clone CLONE_NEWTIME", data(x, unix.SYS_CLONE, unix.CLONE_NEWTIME), eperm},
		{nil, "unshare CLONE_FS", data(x, unix.SYS_UNSHARE, unix.CLONE_FS), allowed},
		{nil, "unshare CLONE_NEWNS", data(x, unix.SYS_UNSHARE, unix.CLONE_NEWNS), eperm},
		{nil, "setns", data(x, unix.SYS_SETNS, 0), eperm},
		{[]string{"@mount"}, "mount, @mount lifted", data(x, unix.SYS_MOUNT, 0), allowed},
		{[]string{"@mount"}, "bpf, @mount lifted", data(x, unix.SYS_BPF, 0), eperm},
		{[]string{"@namespaces"}, "clone CLONE_NEWUSER, @namespaces lifted", data(x, unix.SYS_CLONE, unix.CLONE_NEWUSER), allowed},
		{[]string{"unshare"}, "unshare CLONE_NEWNS, unshare lifted", data(x, unix.SYS_UNSHARE, unix.CLONE_NEWNS), allowed},
		{[]string{"unshare"}, "clone CLONE_NEWNS, unshare lifted", data(x, unix.SYS_CLONE, unix.CLONE_NEWNS), eperm},
	} {
		raw, err := Program(c.allow)
		if err != nil {
			t.Fatal(err)
		}
		prog := make([]bpf.RawInstruction, len(raw))
		for i, r := range raw {
			prog[i] = bpf.RawInstruction{Op: uint16(r >> 48), Jt: uint8(r >> 40), Jf: uint8(r >> 32), K: uint32(r)}
		}
		insns, ok := bpf.Disassemble(prog)
		if !ok {
			t.Fatalf("%s: the program does not disassemble", c.what)
		}
		vm, err := bpf.NewVM(insns)
		if err != nil {
			t.Fatal(err)
		}
		got, err := vm.Run(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if uint32(got) != c.want {
			t.Errorf("%s (allow %v): %#x, want %#x", c.what, c.allow, got, c.want)
		}
	}
}
