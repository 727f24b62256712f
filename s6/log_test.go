package s6_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"vmsup/internal/vmtest"
	"vmsup/s6"
)

// --log: s6-svscan pipes the VM's service into its log/ service, s6-log,
// which writes vmsup's and the services' lines, timestamped, into the
// log directory; the main service's output no longer reaches s6-svscan.
// Both script styles.
func TestLogService(t *testing.T) {
	for _, style := range []s6.Style{s6.Sh, s6.Execline} {
		name := map[s6.Style]string{s6.Sh: "s6-log-sh", s6.Execline: "s6-log-el"}[style]
		t.Run(name, func(t *testing.T) {
			logDir := filepath.Join(vmtest.SharedDir(t), "log")
			c := vmtest.NewConfig(t, name, sh("talker", "echo talker-says-hello; exec sleep 100"))
			cfgPath, cfg := newVM(t, c)
			vm := vmtest.Attach(t, c)
			sc := startScanner(t)
			bin := vmtest.Bin(t, "vmsup")
			svc, _ := sc.add(name, func(dir string) error {
				return s6.WriteServiceDirOptions(dir, cfgPath, bin, cfg, s6.Options{Style: style, LogDir: logDir})
			})
			waitSupervised(t, svc)
			svwait(t, "-U", svc, 30*time.Second)
			svwait(t, "-U", filepath.Join(svc, "log"), 10*time.Second)
			current := filepath.Join(logDir, "current")
			stamped := regexp.MustCompile(`(?m)^@4000[0-9a-f]{20} talker: talker-says-hello$`)
			deadline := time.Now().Add(10 * time.Second)
			for {
				b, _ := os.ReadFile(current)
				if stamped.Match(b) && strings.Contains(string(b), "vmsup: all services are ready") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s has no timestamped lines of the VM:\n%s\ns6-svscan's output:\n%s", current, b, sc.out.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			vm.PID1()
			run(t, "s6-svc", "-d", svc)
			svwait(t, "-D", svc, 30*time.Second)
			vm.AssertClean(time.Second)
			if strings.Contains(sc.out.String(), "talker-says-hello") {
				t.Errorf("the VM's output reached s6-svscan, not only its logger:\n%s", sc.out.String())
			}
		})
	}
}
