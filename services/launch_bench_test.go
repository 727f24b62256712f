package services_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/config"
	"vmsup/internal/vmtest"
	"vmsup/landlock"
	"vmsup/services"
)

// BenchmarkLaunch starts /bin/true several ways, interleaved so that the
// machine's noise hits all alike, and reports each one's median:
//
//   - vmsup: a fully sandboxed service as the supervisor starts it: a new
//     cgroup (created and removed each time), clone3 into it with a new
//     mount namespace, the launcher joining the service's network
//     namespace (network "none": made once per service, at set-up), the
//     service's view (a minimal /dev with its own devpts, /sys read-only,
//     the VM's runtime dir alone with its parent hidden), its private
//     /tmp and /dev/shm, rlimits, a Landlock domain (scopes and path
//     rules), uid/gid change, every capability dropped, the seccomp
//     filter, execve; timed until the service has exited;
//   - vmsup-nofilter: vmsup without the seccomp filter, for its cost;
//   - vmsup+netns: the same with the network namespace made for this
//     launch (NewNetNS, loopback up through netlink) and closed after:
//     a service's first launch;
//   - netns: NewNetNS and close alone;
//   - bwrap: `bwrap --unshare-pid --unshare-net --dev-bind / / --dev /dev
//     --ro-bind /sys /sys --tmpfs /tmp --tmpfs /dev/shm --die-with-parent
//     --new-session /bin/true`;
//   - true: bare /bin/true.
//
// vmsup's VM-wide setup (its PID namespace, done once per VM) is not in
// the per-service figure; bwrap makes a PID namespace per service. The
// kernel frees a network namespace later, in a work queue (cleanup_net),
// so its teardown is in none of the figures.
func BenchmarkLaunch(b *testing.B) {
	vmtest.RequireRoot(b)
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		b.Fatal("bwrap is needed for the comparison (apt-get install bubblewrap)")
	}
	parent := vmtest.CgroupParent(b)
	os.MkdirAll(parent, 0o755)
	abi := landlock.ABI()
	svc := &config.Service{
		Name: "bench", Argv: []string{"/bin/true"}, UID: 65534, GID: 65534,
		PrivateTmp: 1 << 20, PrivateShm: 1 << 20,
		Rlimits:  []config.Rlimit{{Name: "nofile", Resource: unix.RLIMIT_NOFILE, Value: 1024}},
		Landlock: &config.LandlockPaths{Read: []string{"/"}, Execute: []string{"/usr", "/bin", "/lib", "/lib64"}},
	}
	spec, err := services.NewSpec(svc, "/bin/true", abi, nil, 0o022)
	if err != nil {
		b.Fatal(err)
	}
	rundir := filepath.Join(vmtest.RunDir(), "bench-launch")
	if err := os.MkdirAll(rundir, 0o755); err != nil {
		b.Fatal(err)
	}
	defer os.Remove(rundir)
	if err := spec.SetView(&config.VM{Name: "bench", RuntimeDir: rundir}, svc); err != nil {
		b.Fatal(err)
	}
	exe := vmtest.Bin(b, "vmsup-exec")
	devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	defer devnull.Close()

	netns := func() *os.File {
		f, err := services.NewNetNS()
		if err != nil {
			b.Fatal(err)
		}
		return f
	}
	spec.NetNamespace = netns()
	defer spec.NetNamespace.Close()
	launch := func(spec *services.Spec) {
		dir := filepath.Join(parent, fmt.Sprintf("bench-%d", time.Now().UnixNano()))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		cg, err := os.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		l, err := services.Start(exe, spec, nil, devnull, int(cg.Fd()))
		if err != nil {
			b.Fatal(err)
		}
		var ws unix.WaitStatus
		unix.Wait4(l.Pid, &ws, 0, nil)
		if err := <-l.Result; err != nil || ws.ExitStatus() != 0 {
			b.Fatalf("launch: %v, status %v", err, ws)
		}
		cg.Close()
		if err := unix.Rmdir(dir); err != nil {
			b.Fatal(err)
		}
	}
	fresh := *spec
	vmsup := func() { launch(spec) }
	// The same launch without the seccomp filter: the difference is the
	// filter's cost (it is built once per service, not at each launch).
	noFilter := *spec
	noFilter.Filter = nil
	vmsupNetns := func() {
		fresh.NetNamespace = netns()
		launch(&fresh)
		fresh.NetNamespace.Close()
	}
	run := func(argv ...string) func() {
		return func() {
			if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
				b.Fatalf("%v: %v %s", argv, err, out)
			}
		}
	}
	ways := []struct {
		name string
		f    func()
		d    []time.Duration
	}{
		{"vmsup", vmsup, nil},
		{"vmsup-nofilter", func() { launch(&noFilter) }, nil},
		{"vmsup+netns", vmsupNetns, nil},
		{"netns", func() { netns().Close() }, nil},
		{"bwrap", run(bwrap, "--unshare-pid", "--unshare-net", "--dev-bind", "/", "/", "--dev", "/dev", "--ro-bind", "/sys", "/sys",
			"--tmpfs", "/tmp", "--tmpfs", "/dev/shm", "--die-with-parent", "--new-session", "/bin/true"), nil},
		{"true", run("/bin/true"), nil},
	}
	for i := range ways { // warm up caches
		ways[i].f()
	}
	b.ResetTimer()
	for range b.N {
		for i := range ways {
			t0 := time.Now()
			ways[i].f()
			ways[i].d = append(ways[i].d, time.Since(t0))
		}
	}
	b.StopTimer()
	med := map[string]float64{}
	for _, w := range ways {
		slices.Sort(w.d)
		med[w.name] = float64(w.d[len(w.d)/2].Microseconds()) / 1000
		b.ReportMetric(med[w.name], w.name+"-median-ms")
	}
	b.ReportMetric(med["vmsup"]/med["bwrap"], "vmsup/bwrap")
	b.ReportMetric(med["vmsup"]-med["vmsup-nofilter"], "filter-ms")
	b.ReportMetric(med["vmsup+netns"]/med["bwrap"], "vmsup+netns/bwrap")
	b.ReportMetric(0, "ns/op")
}
