package supervisor_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/internal/vmtest"
)

// `vmsup run` and `vmsup validate` read through the one capped reader: a
// document nested 200,000 deep and /dev/zero are refused with 100 and one
// line, at once. The figures (wall time, peak RSS of the vmsup process)
// are printed; the bound asserted is loose (2 s, 64 MiB) because the
// machine is shared, the typical figures are far below.
func TestReadCapsRun(t *testing.T) {
	deep := filepath.Join(t.TempDir(), "deep.json")
	if err := os.WriteFile(deep, bytes.Repeat([]byte("["), 200000), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ file, want string }{
		{deep, "vmsup: config: invalid JSON: nested deeper than 32 levels at byte 33"},
		{"/dev/zero", "vmsup: config: cannot read /dev/zero: larger than 1048576 bytes"},
	} {
		for _, cmdName := range []string{"run", "validate"} {
			t.Run(cmdName+" "+filepath.Base(c.file), func(t *testing.T) {
				cmd := exec.Command(vmtest.Bin(t, "vmsup"), cmdName, c.file)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				t0 := time.Now()
				cmd.Run()
				el := time.Since(t0)
				rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
				want := c.want
				if cmdName == "validate" {
					want = strings.TrimPrefix(want, "vmsup: config: ")
				}
				if st := cmd.ProcessState.ExitCode(); st != 100 || strings.TrimSpace(out.String()) != want {
					t.Fatalf("status %d, want 100 and %q:\n%s", st, want, out.String())
				}
				t.Logf("%s %s: %v, peak RSS %d KiB (machine shared and loaded)", cmdName, c.file, el, rss)
				if el > 2*time.Second || rss > 64<<10 {
					t.Errorf("took %v and %d KiB", el, rss)
				}
			})
		}
	}
}
