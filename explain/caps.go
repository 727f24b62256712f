package explain

// grants says in plain words what each capability lets a service do on
// this kernel, given what vmsup always sets (no_new_privs, no user
// namespaces, a Landlock domain, its own mount namespace). One source:
// `vmsup explain` and the README's table come from here.
var grants = map[string]string{
	"CAP_CHOWN":              "changes the owner of any file it can reach, past file modes",
	"CAP_DAC_OVERRIDE":       "reads, writes and executes any file it can reach, past file modes: other services' sockets and files, any VM's cgroup files (kill or freeze it), unless Landlock paths exclude them",
	"CAP_DAC_READ_SEARCH":    "reads any file and lists any directory past file modes, and reads any file by handle, past masks and read-only mounts, unless open_by_handle_at is filtered",
	"CAP_FOWNER":             "acts as the owner of any file it can reach: chmod, utimes, removing others' files from sticky directories",
	"CAP_FSETID":             "keeps setuid/setgid bits when it changes files (no_new_privs still stops them at exec)",
	"CAP_KILL":               "signals processes of other uids (Landlock's signal scope still confines it to its own domain)",
	"CAP_SETGID":             "takes any gid and any supplementary groups",
	"CAP_SETUID":             "takes any uid, root's included",
	"CAP_SETPCAP":            "drops capabilities from its bounding set and sets securebits (cannot gain any)",
	"CAP_LINUX_IMMUTABLE":    "sets and clears the immutable and append-only file attributes",
	"CAP_NET_BIND_SERVICE":   "binds TCP/UDP ports below 1024",
	"CAP_NET_BROADCAST":      "sends broadcast and listens to multicast",
	"CAP_NET_ADMIN":          "configures the network of its network namespace: interfaces, routes, firewall, TAP devices",
	"CAP_NET_RAW":            "opens raw and packet sockets: sees and forges every packet of its network namespace",
	"CAP_IPC_LOCK":           "locks memory (mlock) beyond RLIMIT_MEMLOCK",
	"CAP_IPC_OWNER":          "bypasses permission checks on System V IPC objects",
	"CAP_SYS_MODULE":         "loads and removes kernel modules: the whole kernel",
	"CAP_SYS_RAWIO":          "raw I/O: ioperm/iopl, /dev/mem and /dev/port where it can open them",
	"CAP_SYS_CHROOT":         "calls chroot",
	"CAP_SYS_PTRACE":         "traces and reads the memory of any process it can see (Landlock still confines ptrace to its own domain)",
	"CAP_SYS_PACCT":          "turns process accounting on and off",
	"CAP_SYS_ADMIN":          "mounts and unmounts in its mount namespace (so it can remove every mask, the status record's included), creates namespaces, and much more: treat it as root",
	"CAP_SYS_BOOT":           "reboots the host and loads a new kernel (kexec)",
	"CAP_SYS_NICE":           "raises its priority, sets real-time scheduling, renices and pins any process it can see",
	"CAP_SYS_RESOURCE":       "raises its hard rlimits, uses reserved space, sets any oom_score_adj",
	"CAP_SYS_TIME":           "sets the host's clock",
	"CAP_SYS_TTY_CONFIG":     "vhangup and virtual terminal configuration",
	"CAP_MKNOD":              "creates device nodes (then opens them if file modes allow: any disk, /dev/mem)",
	"CAP_LEASE":              "takes leases on files it does not own",
	"CAP_AUDIT_WRITE":        "writes records to the kernel's audit log",
	"CAP_AUDIT_CONTROL":      "configures kernel auditing",
	"CAP_SETFCAP":            "sets file capabilities (no_new_privs still stops them at exec)",
	"CAP_MAC_OVERRIDE":       "overrides mandatory access control (SMACK)",
	"CAP_MAC_ADMIN":          "configures mandatory access control (SMACK)",
	"CAP_SYSLOG":             "reads and clears the kernel log, sees kernel addresses",
	"CAP_WAKE_ALARM":         "sets alarms that wake the host from suspend",
	"CAP_BLOCK_SUSPEND":      "keeps the host from suspending",
	"CAP_AUDIT_READ":         "reads the audit log over netlink",
	"CAP_PERFMON":            "uses perf_event_open and BPF tracing on any process it can see",
	"CAP_BPF":                "loads BPF programs and maps",
	"CAP_CHECKPOINT_RESTORE": "sets PIDs of new processes, reads other processes' map_files",
}

// Grant is what a capability grants, "" if unknown.
func Grant(name string) string { return grants[name] }
