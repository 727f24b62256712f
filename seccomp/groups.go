package seccomp

import "strings"

// Group is a named set of system calls that the default filter refuses
// with EPERM. A name in `syscalls.allow` starting with "@" lifts a whole
// group.
type Group struct {
	Name     string   // "@mount"
	Why      string   // what the group opens, for `vmsup explain` and the README
	Syscalls []string // x86_64 names
}

// Groups is the one table of what every service is refused by default.
// None of it is needed by a per-VM daemon (a VMM, virtiofsd, a GPU or
// network backend); each reaches kernel code or host state that a
// compromised daemon would attack. seccomp(2) and prctl(2) stay allowed,
// so QEMU's `-sandbox on` and virtiofsd's own filters still install.
var Groups = []Group{
	{"@mount", "mounting and changing the root: mount tables, new file system instances",
		[]string{"mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig",
			"fsmount", "fspick", "mount_setattr"}},
	{"@namespaces", "new or joined namespaces (clone and unshare with CLONE_NEW* flags, setns)",
		[]string{"unshare", "setns", "clone"}},
	{"@modules", "loading and removing kernel modules",
		[]string{"init_module", "finit_module", "delete_module"}},
	{"@kexec", "replacing the running kernel",
		[]string{"kexec_load", "kexec_file_load"}},
	{"@bpf", "loading eBPF programs and maps",
		[]string{"bpf"}},
	{"@perf", "performance counters and tracing of the kernel and other processes",
		[]string{"perf_event_open"}},
	{"@userfaultfd", "page-fault handling in user space (a classic kernel exploit aid)",
		[]string{"userfaultfd"}},
	{"@keyring", "the kernel keyrings, the per-uid user keyring (@u) that same-uid services share included",
		[]string{"add_key", "request_key", "keyctl"}},
	{"@file-handles", "opening files by handle, past every mask, bind and read-only mount",
		[]string{"open_by_handle_at"}},
	{"@swap", "enabling and disabling swap",
		[]string{"swapon", "swapoff"}},
	{"@reboot", "rebooting or halting the host",
		[]string{"reboot"}},
	{"@clock", "setting the host's clocks",
		[]string{"settimeofday", "clock_settime", "clock_adjtime", "adjtimex"}},
	{"@host", "host settings: host and domain name, process accounting, I/O ports, quotas, kernel log",
		[]string{"sethostname", "setdomainname", "acct", "iopl", "ioperm", "quotactl", "quotactl_fd",
			"syslog", "uselib", "ustat", "sysfs", "_sysctl", "lookup_dcookie", "nfsservctl", "vhangup"}},
}

// nsFlagged are the calls refused only with a CLONE_NEW* flag in their
// first argument: clone for threads and fork, and unshare(CLONE_FS),
// which virtiofsd calls on every thread, still work. clone3 passes its
// flags in memory, which seccomp cannot read; there a user namespace is
// refused by the launcher's cover and every other namespace needs
// CAP_SYS_ADMIN.
var nsFlagged = map[string]bool{"clone": true, "unshare": true}

// cloneNSFlags are the namespace flags of clone(2): CLONE_NEWTIME,
// NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
const cloneNSFlags = 0x00000080 | 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

// Table is Groups as the README's Markdown table (a test keeps the two
// equal).
func Table() string {
	s := "| group | refused calls | what they open |\n|---|---|---|\n"
	for _, g := range Groups {
		s += "| `" + g.Name + "` | " + strings.Join(g.Syscalls, ", ") + " | " + g.Why + " |\n"
	}
	return s
}
