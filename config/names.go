package config

import (
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// capabilities maps the CAP_ names golang.org/x/sys/unix knows to their
// numbers. x/sys has the constants but no table, hence this list.
var capabilities = map[string]uint{
	"CAP_CHOWN":              unix.CAP_CHOWN,
	"CAP_DAC_OVERRIDE":       unix.CAP_DAC_OVERRIDE,
	"CAP_DAC_READ_SEARCH":    unix.CAP_DAC_READ_SEARCH,
	"CAP_FOWNER":             unix.CAP_FOWNER,
	"CAP_FSETID":             unix.CAP_FSETID,
	"CAP_KILL":               unix.CAP_KILL,
	"CAP_SETGID":             unix.CAP_SETGID,
	"CAP_SETUID":             unix.CAP_SETUID,
	"CAP_SETPCAP":            unix.CAP_SETPCAP,
	"CAP_LINUX_IMMUTABLE":    unix.CAP_LINUX_IMMUTABLE,
	"CAP_NET_BIND_SERVICE":   unix.CAP_NET_BIND_SERVICE,
	"CAP_NET_BROADCAST":      unix.CAP_NET_BROADCAST,
	"CAP_NET_ADMIN":          unix.CAP_NET_ADMIN,
	"CAP_NET_RAW":            unix.CAP_NET_RAW,
	"CAP_IPC_LOCK":           unix.CAP_IPC_LOCK,
	"CAP_IPC_OWNER":          unix.CAP_IPC_OWNER,
	"CAP_SYS_MODULE":         unix.CAP_SYS_MODULE,
	"CAP_SYS_RAWIO":          unix.CAP_SYS_RAWIO,
	"CAP_SYS_CHROOT":         unix.CAP_SYS_CHROOT,
	"CAP_SYS_PTRACE":         unix.CAP_SYS_PTRACE,
	"CAP_SYS_PACCT":          unix.CAP_SYS_PACCT,
	"CAP_SYS_ADMIN":          unix.CAP_SYS_ADMIN,
	"CAP_SYS_BOOT":           unix.CAP_SYS_BOOT,
	"CAP_SYS_NICE":           unix.CAP_SYS_NICE,
	"CAP_SYS_RESOURCE":       unix.CAP_SYS_RESOURCE,
	"CAP_SYS_TIME":           unix.CAP_SYS_TIME,
	"CAP_SYS_TTY_CONFIG":     unix.CAP_SYS_TTY_CONFIG,
	"CAP_MKNOD":              unix.CAP_MKNOD,
	"CAP_LEASE":              unix.CAP_LEASE,
	"CAP_AUDIT_WRITE":        unix.CAP_AUDIT_WRITE,
	"CAP_AUDIT_CONTROL":      unix.CAP_AUDIT_CONTROL,
	"CAP_SETFCAP":            unix.CAP_SETFCAP,
	"CAP_MAC_OVERRIDE":       unix.CAP_MAC_OVERRIDE,
	"CAP_MAC_ADMIN":          unix.CAP_MAC_ADMIN,
	"CAP_SYSLOG":             unix.CAP_SYSLOG,
	"CAP_WAKE_ALARM":         unix.CAP_WAKE_ALARM,
	"CAP_BLOCK_SUSPEND":      unix.CAP_BLOCK_SUSPEND,
	"CAP_AUDIT_READ":         unix.CAP_AUDIT_READ,
	"CAP_PERFMON":            unix.CAP_PERFMON,
	"CAP_BPF":                unix.CAP_BPF,
	"CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

// CapabilityNames lists the capability names a config may use, by number.
func CapabilityNames() map[uint]string {
	m := make(map[uint]string, len(capabilities))
	for name, n := range capabilities {
		m[n] = name
	}
	return m
}

// rlimits maps the config's resource names to RLIMIT_ numbers. sized says
// whether the limit counts bytes, so that "64M" makes sense for it.
var rlimits = map[string]struct {
	resource int
	sized    bool
}{
	"as":         {unix.RLIMIT_AS, true},
	"core":       {unix.RLIMIT_CORE, true},
	"cpu":        {unix.RLIMIT_CPU, false},
	"data":       {unix.RLIMIT_DATA, true},
	"fsize":      {unix.RLIMIT_FSIZE, true},
	"locks":      {unix.RLIMIT_LOCKS, false},
	"memlock":    {unix.RLIMIT_MEMLOCK, true},
	"msgqueue":   {unix.RLIMIT_MSGQUEUE, true},
	"nice":       {unix.RLIMIT_NICE, false},
	"nofile":     {unix.RLIMIT_NOFILE, false},
	"nproc":      {unix.RLIMIT_NPROC, false},
	"rss":        {unix.RLIMIT_RSS, true},
	"rtprio":     {unix.RLIMIT_RTPRIO, false},
	"rttime":     {unix.RLIMIT_RTTIME, false},
	"sigpending": {unix.RLIMIT_SIGPENDING, false},
	"stack":      {unix.RLIMIT_STACK, true},
}

// signal looks up a signal name such as "SIGTERM". SIGSTOP is refused: it
// would leave the service stopped, never exiting, until the timeout.
func signal(name string) (syscall.Signal, string) {
	if name == "SIGSTOP" {
		return 0, "must not be SIGSTOP: a stopped process never exits"
	}
	if !strings.HasPrefix(name, "SIG") {
		if unix.SignalNum("SIG"+name) != 0 {
			return 0, "unknown signal " + quote(name) + ", did you mean " + quote("SIG"+name) + "?"
		}
		return 0, "unknown signal " + quote(name)
	}
	n := unix.SignalNum(name)
	if n == 0 {
		return 0, "unknown signal " + quote(name)
	}
	return n, ""
}
