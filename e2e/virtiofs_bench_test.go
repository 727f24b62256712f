package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/internal/guest"
	"vmsup/internal/vmtest"
)

// BenchmarkVirtiofsIO compares guest file I/O through the Rust virtiofsd
// under vmsup (the contract's example: uid 2001, CAP_DAC_READ_SEARCH,
// Landlock, its own cgroup, mount and PID namespace) with the same
// virtiofsd and flags started directly as root, in one run: rounds of one
// VM of each kind running side by side, each guest running
// the workload reps times (a 64 MiB file written with fsync and read back
// cold, 1000 small files created, statted and removed). It prints each
// phase's median and the ratios vmsup/direct. Run it alone:
//
//	go test -run '^$' -bench BenchmarkVirtiofsIO -benchtime 1x ./e2e/
//
// VMSUP_BENCH_VIRTIOFS_ROUNDS sets the rounds (default 3).
func BenchmarkVirtiofsIO(b *testing.B) {
	vmtest.RequireRoot(b)
	if err := guest.RequireHostTools(); err != nil {
		b.Fatal(err)
	}
	kdir, err := guest.Kernel()
	if err != nil {
		b.Fatal(err)
	}
	vfsd, err := guest.RustVirtiofsd()
	if err != nil {
		b.Fatal(err)
	}
	const bigMiB, files, reps = 64, 1000, 2
	d := vmtest.SharedDir(b)
	kernel, initrd := filepath.Join(d, "vmlinuz"), filepath.Join(d, "initrd")
	if err := copyFile(filepath.Join(kdir, "vmlinuz"), kernel); err != nil {
		b.Fatal(err)
	}
	if err := guest.BuildInitramfs(initrd, guest.InitramfsOptions{KernelDir: kdir, Init: guest.VirtiofsBenchInit("share", bigMiB, files, reps)}); err != nil {
		b.Fatal(err)
	}
	os.Chmod(initrd, 0o644)
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("VMSUP_BENCH_VIRTIOFS_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	// Each round runs one VM of each kind at the same time, so both see
	// the same load from the rest of the machine (other work runs here).
	res := map[string]map[string][]float64{"vmsup": {}, "direct": {}}
	pairs := map[string][]float64{} // per round and rep: vmsup / direct
	for i := 0; i < b.N; i++ {
		for r := 0; r < rounds; r++ {
			type run struct {
				out string
				err error
			}
			got := map[string]chan run{"vmsup": make(chan run, 1), "direct": make(chan run, 1)}
			for m, ch := range got {
				share := filepath.Join(d, fmt.Sprintf("share-%s-%d-%d", m, i, r))
				os.Mkdir(share, 0o755)
				os.Chown(share, guest.RustVirtiofsdUID, guest.RustVirtiofsdUID)
				if m == "vmsup" {
					c := benchVMConfig(b, vfsd, kernel, initrd, share, fmt.Sprintf("bench-vfs-%d-%d", i, r))
					vm := vmtest.Start(b, c, vmtest.Options{})
					go func() {
						// vm.Wait fails the benchmark on its timeout itself.
						st := vm.Wait(20 * time.Minute)
						var err error
						if st != guestPowerOffStatus {
							err = fmt.Errorf("status %d, want %d", st, guestPowerOffStatus)
						}
						ch <- run{vm.Stderr.String(), err}
					}()
					defer vm.AssertClean(time.Second)
				} else {
					go func() {
						out, err := benchDirect(vfsd, kernel, initrd, share, filepath.Join(d, fmt.Sprintf("fs-%d-%d.sock", i, r)))
						ch <- run{out, err}
					}()
				}
			}
			parsed := map[string]map[string][]float64{}
			for m, ch := range got {
				x := <-ch
				p, err := guest.ParseBench(x.out)
				if x.err != nil || err != nil || len(p["remove"]) != reps {
					b.Fatalf("%s: no complete results (%v, %v):\n%s", m, x.err, err, x.out)
				}
				parsed[m] = p
				for ph, v := range p {
					res[m][ph] = append(res[m][ph], v...)
				}
			}
			for _, ph := range guest.BenchPhases {
				for k := range parsed["vmsup"][ph] {
					pairs[ph] = append(pairs[ph], parsed["vmsup"][ph][k]/parsed["direct"][ph][k])
				}
			}
		}
	}
	var lines []string
	var sumV, sumD float64
	for _, ph := range guest.BenchPhases {
		mv, md := medianF(res["vmsup"][ph]), medianF(res["direct"][ph])
		sumV, sumD = sumV+mv, sumD+md
		lines = append(lines, fmt.Sprintf("%-7s vmsup %6.2f s  direct %6.2f s  ratio of medians %.3f  median of paired ratios %.3f  (n=%d each)",
			ph, mv, md, mv/md, medianF(pairs[ph]), len(res["vmsup"][ph])))
		b.ReportMetric(mv/md, ph+"-ratio")
	}
	lines = append(lines, fmt.Sprintf("all     vmsup %6.2f s  direct %6.2f s  ratio %.3f", sumV, sumD, sumV/sumD))
	b.ReportMetric(sumV/sumD, "all-ratio")
	b.Logf("guest file I/O through the Rust virtiofsd, medians (%d MiB file, %d small files, %d rounds x %d reps, the two VMs of a round side by side):\n%s",
		bigMiB, files, rounds, reps, strings.Join(lines, "\n"))
}

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// benchVMConfig is the bench guest's VM with the Rust virtiofsd as the
// e2e tests run it.
func benchVMConfig(b *testing.B, vfsd, kernel, initrd, share, name string) vmtest.Config {
	c := vmtest.NewConfig(b, name)
	rt := c["runtime_dir"].(string)
	c["services"] = []map[string]any{guest.RustVirtiofsdService(vfsd, share, rt+"/fs.sock", vmmUID), guest.VMMService(kernel, initrd, rt, vmmUID)}
	c["mount"] = map[string]any{"binds": []map[string]any{{"source": share, "target": share}}}
	return c
}

// benchDirect runs the same virtiofsd, as root, and QEMU, both started
// directly, and returns QEMU's console. Each in a session of its own, as
// s6 starts a daemon and vmsup a service: with sched_autogroup_enabled
// (on here) a session is a scheduling group, so both sides are scheduled
// alike.
func benchDirect(vfsd, kernel, initrd, share, sock string) (string, error) {
	argv := guest.RustVirtiofsdArgv(vfsd, share)
	for i, a := range argv {
		if a == "--fd=3" {
			argv[i] = "--socket-path=" + sock
		}
	}
	fsd := exec.Command(argv[0], argv[1:]...)
	fsd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var fsdOut vmtest.Buffer
	fsd.Stdout, fsd.Stderr = &fsdOut, &fsdOut
	fsd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := fsd.Start(); err != nil {
		return "", err
	}
	defer fsd.Wait()
	defer fsd.Process.Kill()
	if !fsdOut.WaitFor("Waiting for vhost-user socket connection", 60*time.Second) {
		return "", fmt.Errorf("virtiofsd did not start:\n%s", fsdOut.String())
	}
	qemu := exec.Command(guest.QEMUBinary, guest.QEMUArgs(guest.QEMUOptions{Kernel: kernel, Initrd: initrd, VirtiofsSocket: sock, VirtiofsTag: "share"})...)
	var con vmtest.Buffer
	qemu.Stdout, qemu.Stderr = &con, &con
	qemu.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := qemu.Run(); err != nil {
		return "", fmt.Errorf("qemu: %v\n%s", err, con.String())
	}
	return con.String(), nil
}
