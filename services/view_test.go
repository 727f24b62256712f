package services_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/config"
	"vmsup/internal/vmtest"
)

// The README's virtiofsd set (legacy virtiofsd with sandbox=chroot).
var virtiofsdCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_SETGID", "CAP_SETUID", "CAP_MKNOD", "CAP_SETFCAP", "CAP_SYS_CHROOT", "CAP_SETPCAP"}

// viewAttacker is one service of TestHostileView: a credential set users
// actually give.
type viewAttacker struct {
	name    string
	uid     int
	caps    []string
	connect bool // has a connect list leaving victim.sock out
	writer  bool // creates a file of its own in the runtime dir (ready.exists)
}

var viewAttackers = []viewAttacker{
	{name: "virtiofsd-set", uid: 0, caps: virtiofsdCaps, connect: true},
	{name: "dac-read-search", uid: 2001, caps: []string{"CAP_DAC_READ_SEARCH"}},
	{name: "root-no-caps", uid: 0},
	{name: "writer", uid: 0, caps: virtiofsdCaps, writer: true},
}

// What a service that creates its own files in the runtime dir can
// still do there: vmsup's sockets are mount points in its view, but the
// directory is writable.
var viewGaps = map[string]string{
	"create a file in the runtime dir": "a service that creates sockets of its own in the runtime dir (its ready or vmm names one vmsup does not bind) sees it writable and can fill its file system; let vmsup bind the socket (sockets) instead",
	"plant a link in the runtime dir":  "the same service can leave names there; vmsup never follows them (services.Dial)",
}

// A service reaches only its own VM through what its mount view shows:
// whatever its credentials (the README's virtiofsd set as uid 0,
// CAP_DAC_READ_SEARCH alone, uid 0 without capabilities), it can
// neither remove, rename, replace nor add anything in the runtime dir,
// nor see the other VMs' runtime dirs or connect to their sockets, nor
// write /sys (another VM's cgroup), /proc/sys, nor read /proc's
// host-wide files, nor open the host's devices or get a pty of the host's devpts;
// with connect it reaches no other socket of its VM. The control runs
// the same attacks with the same credentials in the host's view (no
// per-service view, no /proc masks) and checks that each gets through
// there for at least one credential set, so that every attack is real.
func TestHostileView(t *testing.T) {
	prog := vmtest.Bin(t, "testprog")
	name := "view"
	// Another VM: its runtime dir beside ours, with a QMP-like socket,
	// and a cgroup beside ours.
	otherDir := filepath.Join(vmtest.RunDir(), "view-other")
	if err := os.MkdirAll(otherDir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(otherDir) })
	other := filepath.Join(otherDir, "qmp.sock")
	ol, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	defer ol.Close()
	otherCg := filepath.Join(vmtest.CgroupParent(t), "view-other")
	if err := os.MkdirAll(otherCg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Rmdir(otherCg) })
	cgfile := filepath.Join(otherCg, "cgroup.freeze")
	if _, err := os.Stat(cgfile); err != nil {
		cgfile = filepath.Join(otherCg, "cgroup.procs")
	}
	// The host's devpts, if it has one (the host image mounts none).
	hostPts, noPts := "none", ""
	var pts unix.Statfs_t
	if err := unix.Statfs("/dev/pts", &pts); err == nil && pts.Type == unix.DEVPTS_SUPER_MAGIC {
		var st unix.Stat_t
		if err := unix.Stat("/dev/pts", &st); err != nil {
			t.Fatal(err)
		}
		hostPts = fmt.Sprint(st.Dev)
	} else {
		noPts = "get a pty of the host's devpts"
		t.Logf("this host has no devpts on /dev/pts: %q has no host devpts to reach, in the control either", noPts)
	}
	devs := hostDevices(t, 2)

	c := vmtest.NewConfig(t, name)
	rundir := c["runtime_dir"].(string)
	sock := func(base string, fd int) map[string]any {
		return map[string]any{"path": rundir + "/" + base, "fd": fd, "mode": "0666"}
	}
	svcs := []map[string]any{{
		"name": "victim", "argv": []string{prog, "linger", "1ms"}, "uid": 2002, "gid": 2002,
		"sockets": []map[string]any{sock("victim.sock", 3), sock("spare.sock", 4), sock("allowed.sock", 5)},
	}}
	args := func(a viewAttacker, caps string) []string {
		connect := "no"
		if a.connect {
			connect = "yes"
		}
		return []string{prog, "view", a.name, rundir, other, cgfile, hostPts, devs[0], devs[1], caps, connect}
	}
	for _, a := range viewAttackers {
		s := map[string]any{"name": a.name, "argv": args(a, "-"), "uid": a.uid}
		if a.caps != nil {
			s["capabilities"] = a.caps
		}
		if a.uid != 0 {
			s["gid"] = a.uid
		}
		if a.connect {
			s["connect"] = []string{rundir + "/allowed.sock"}
		}
		if a.writer {
			s["ready"] = map[string]any{"exists": rundir + "/writer.ready"}
		}
		svcs = append(svcs, s)
	}
	c["services"] = svcs
	vm := vmtest.Start(t, c, vmtest.Options{})
	vm.PID1()
	for _, a := range viewAttackers {
		waitOrExit(t, vm, a.name+": view done", 60*time.Second)
	}
	out := vm.Stderr.String()
	inVM := map[string]map[string]string{}
	for _, a := range viewAttackers {
		inVM[a.name] = attempts(t, out, a.name+": ")
	}

	// The control: the same attacks, credentials and targets, in the
	// host's view, while the VM still runs.
	inHost := map[string]map[string]string{}
	for _, a := range viewAttackers {
		if a.writer {
			continue // its credentials are virtiofsd-set's
		}
		inHost[a.name] = hostView(t, a, args(a, capsArg(a)))
	}
	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(10 * time.Second); st != 0 {
		t.Fatalf("status %d", st)
	}
	vm.AssertClean(time.Second)

	names := attackNames(inVM)
	tried, blocked := 0, 0
	for _, a := range viewAttackers {
		for _, n := range names {
			got, ok := inVM[a.name][n]
			if !ok {
				if n != "connect to its VM's socket not in connect" || a.connect {
					t.Errorf("%s made no attempt %q", a.name, n)
				}
				continue
			}
			tried++
			if got != "ESCAPED" {
				blocked++
			}
			t.Run(a.name+"/"+n, func(t *testing.T) {
				gap := viewGaps[n]
				switch {
				case got == "ESCAPED" && a.writer && gap != "":
					t.Logf("KNOWN GAP, not blocked: %s", gap)
				case got == "ESCAPED":
					t.Errorf("ESCAPED from its view")
				case a.writer && gap != "":
					t.Errorf("listed as a known gap but blocked now (%s): update the suite", got)
				default:
					t.Logf("%s; in the host's view: %s", got, inHost[a.name][n])
				}
			})
		}
	}
	for _, n := range names {
		var through []string
		for who, res := range inHost {
			if res[n] == "ESCAPED" {
				through = append(through, who)
			}
		}
		sort.Strings(through)
		if n == noPts {
			continue
		}
		if len(through) == 0 {
			t.Errorf("control: %q is blocked in the host's view for every credential set: is it real? %v", n, inHost)
		} else {
			t.Logf("control: %q gets through in the host's view as %s", n, strings.Join(through, ", "))
		}
	}
	t.Logf("%d view attacks tried (%d services), %d blocked, %d escaped (known gaps of the writer only)", tried, len(viewAttackers), blocked, tried-blocked)
}

// capsArg is how the control passes the credential set: a root process
// lowers its own capabilities; another uid gets them from exec.
func capsArg(a viewAttacker) string {
	switch {
	case a.uid != 0:
		return "-"
	case len(a.caps) == 0:
		return "none"
	}
	return strings.Join(a.caps, ",")
}

// hostView runs the view attacks as a (uid, caps) in the host's view.
func hostView(t *testing.T, a viewAttacker, argv []string) map[string]string {
	cmd := exec.Command(argv[0], argv[1:]...)
	if a.uid != 0 {
		var amb []uintptr
		for _, c := range a.caps {
			n, ok := capNumber(c)
			if !ok {
				t.Fatalf("unknown capability %s", c)
			}
			amb = append(amb, uintptr(n))
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: uint32(a.uid), Gid: uint32(a.uid), Groups: []uint32{65534}},
			AmbientCaps: amb,
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.HasPrefix(sc.Text(), "view done") {
			break
		}
	}
	return attempts(t, strings.Join(lines, "\n"), "")
}

// attempts parses "<prefix>attempt <what>: <outcome>" lines.
func attempts(t *testing.T, out, prefix string) map[string]string {
	res := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		a, ok := strings.CutPrefix(line, prefix+"attempt ")
		if !ok {
			continue
		}
		i := strings.Index(a, ": ")
		if i < 0 {
			t.Fatalf("odd line %q", line)
		}
		res[a[:i]] = a[i+2:]
	}
	if len(res) == 0 {
		t.Fatalf("no attempts of %q in:\n%s", prefix, out)
	}
	return res
}

func attackNames(res map[string]map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range res {
		for n := range r {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out
}

func capNumber(name string) (uint, bool) {
	for n, s := range config.CapabilityNames() {
		if s == name {
			return n, true
		}
	}
	return 0, false
}

// hostDevices returns n root-only device nodes this host has.
func hostDevices(t *testing.T, n int) []string {
	var out []string
	for _, p := range []string{"/dev/net/tun", "/dev/userfaultfd", "/dev/fuse", "/dev/vhost-net", "/dev/kmsg", "/dev/mem"} {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Uid == 0 && st.Mode&0o006 == 0 && len(out) < n {
			out = append(out, p)
		}
	}
	if len(out) < n {
		t.Fatalf("want %d root-only device nodes on this host, found %v", n, out)
	}
	return out
}
