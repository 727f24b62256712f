package hostimage

import (
	"fmt"
	"strings"

	"vmsup/internal/guest"
)

// InitScript is the image's /init: the minimal early init of a
// Spectrum-like host. It mounts what s6 and vmsup need, makes cgroup v2
// the only hierarchy and enables no controller (a bare host: vmsup
// enables what the limits need, TestBareHostLimits), sets up the scan
// directory on the /run tmpfs and hands PID 1
// to s6-svscan. A failing step prints GUEST-FAIL and powers off.
const InitScript = `#!/bin/sh
export PATH=/usr/bin:/usr/sbin:/bin:/sbin
fail() {
	echo "` + guest.MarkerFail + `: $*"
	sync
	poweroff -f
}
mount -t proc -o nosuid,nodev,noexec proc /proc || fail "mount /proc"
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys || fail "mount /sys"
mount -t devtmpfs -o nosuid devtmpfs /dev || fail "mount /dev"
mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 /sys/fs/cgroup || fail "mount cgroup2"
mount -t securityfs -o nosuid,nodev,noexec securityfs /sys/kernel/security || fail "mount securityfs"
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run || fail "mount /run"
mkdir -p /dev/pts /dev/shm /var/tmp && chmod 1777 /var/tmp /tmp || fail "mkdir"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm || fail "mount /dev/shm"
cp -a ` + services + ` ` + ScanDir + ` || fail "scan directory"
echo "` + MarkerInit + ` $(cut -d' ' -f1 /proc/uptime) $(uname -r) controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
exec s6-svscan ` + ScanDir + `
`

// runnerRun is the run script of the s6 service that drives the tier.
// Once the runner is through it powers the guest off itself (busybox
// poweroff -f), whatever s6-svscan would do next.
const runnerRun = `#!/bin/sh
exec 2>&1
` + Runner + `
echo ` + MarkerDone + `
sync
exec poweroff -f
`

// RunnerScript returns the script that runs Steps in the guest. Every
// step's binary runs with -test.v (one "--- PASS: TestX" line per test)
// and VMSUP_TEST_BIN_DIR pointing at the prebuilt binaries.
func RunnerScript() string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
cd /
export PATH=/usr/bin:/usr/sbin:/bin:/sbin VMSUP_TEST_BIN_DIR=` + BinDir + `
up() { cut -d' ' -f1 /proc/uptime; }
echo "` + MarkerRunner + ` $(up)"
step() {
	s=$1
	shift
	echo "` + MarkerStep + ` $s $(up)"
	"$@"
	echo "` + MarkerExit + ` $s $? $(up)"
}
`)
	for _, s := range Steps {
		fmt.Fprintf(&b, "step %s %s/%s -test.v -test.count=1 -test.timeout=%s -test.run '%s'\n",
			s.Name, BinDir, s.Binary, s.Timeout, s.Run)
	}
	return b.String()
}
