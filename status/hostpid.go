package status

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// hostPIDs fills in PID 1's and each service's PID as this process's PID namespace
// sees it. PID 1 knows only the PIDs of its own namespace; the
// processes of that namespace are found by its /proc/N/ns/pid link,
// and NSpid (innermost last) gives each one's PID inside. One pass over
// /proc, only when asked.
func hostPIDs(r *VM) {
	want := map[int]*Service{}
	for i := range r.Services {
		if s := &r.Services[i]; s.PID > 0 {
			want[s.PID] = s
		}
	}
	if r.PIDNS == "" {
		return
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if ns, _ := os.Readlink(p + "/ns/pid"); ns != r.PIDNS {
			continue
		}
		inner := nsPID(p)
		host, _ := strconv.Atoi(filepath.Base(p))
		if inner == 1 {
			r.HostPID = host
		} else if s := want[inner]; s != nil {
			s.HostPID = host
		}
	}
}

// nsPID is the innermost PID of the process at p, 0 if unknown.
func nsPID(p string) int {
	f, err := os.Open(p + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "NSpid:"); ok {
			fs := strings.Fields(v)
			if len(fs) == 0 {
				return 0
			}
			n, _ := strconv.Atoi(fs[len(fs)-1])
			return n
		}
	}
	return 0
}
