package check

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"vmsup/landlock"
	"vmsup/seccomp"
)

// seccompFilter probes what every service's syscall filter needs: seccomp
// filter mode with the errno action.
func seccompFilter() Feature {
	f := Feature{Name: "seccomp-filter", Required: true, Disables: runDisabled + " (every service runs under a syscall filter)"}
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		f.Detail = "seccomp is unavailable: " + errText(err)
		return f
	}
	b, err := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	if err != nil {
		f.Detail = "no seccomp filter mode (CONFIG_SECCOMP_FILTER): " + errText(err)
		return f
	}
	if !strings.Contains(" "+strings.TrimSpace(string(b))+" ", " errno ") {
		f.Detail = "the seccomp errno action is missing: " + strings.TrimSpace(string(b))
		return f
	}
	f.OK = true
	f.Detail = fmt.Sprintf("filter mode with errno: %d calls in %d groups refused by default", len(seccomp.Refused(nil)), len(seccomp.Groups))
	return f
}

// landlockLater says what each Landlock ABI after the scopes gives, per
// right, so that best-effort's degradation is visible.
func landlockLater(abi int) []Feature {
	tsync := Feature{Name: "landlock-tsync"} // without it the launcher enforces on the thread that execs, which is enough
	if abi >= landlock.TSyncABI {
		tsync.OK, tsync.Detail = true, abiText(abi)+": domains enforced on every thread (LANDLOCK_RESTRICT_SELF_TSYNC)"
	} else {
		tsync.Detail = fmt.Sprintf("%s: per-thread enforcement only (TSYNC needs ABI %d, Linux 7.0)", abiText(abi), landlock.TSyncABI)
	}
	unixConn := Feature{Name: "landlock-connect", Disables: "services[].connect outside the runtime dirs: other pathname sockets stay reachable"}
	if abi >= landlock.ResolveUnixABI {
		unixConn.OK, unixConn.Detail = true, abiText(abi)+": services with connect reach only the listed pathname sockets (RESOLVE_UNIX)"
	} else {
		unixConn.Detail = fmt.Sprintf("%s: pathname socket connects are not a Landlock right (needs ABI %d, Linux 7.1)", abiText(abi), landlock.ResolveUnixABI)
	}
	udp := Feature{Name: "landlock-udp"} // vmsup isolates networks with namespaces
	if abi >= landlock.UDPABI {
		udp.OK, udp.Detail = true, abiText(abi)+": UDP bind and connect rights, quiet rules (not used by vmsup)"
	} else {
		udp.Detail = fmt.Sprintf("%s: no UDP rights (ABI %d, Linux 7.2)", abiText(abi), landlock.UDPABI)
	}
	return []Feature{tsync, unixConn, udp}
}
