package guest

import (
	"fmt"
	"strconv"
	"strings"
)

// BenchPhases are the phases VirtiofsBenchInit times, in order.
var BenchPhases = []string{"write", "read", "create", "stat", "remove"}

// MarkerBench starts each of VirtiofsBenchInit's result lines:
// "GUEST-BENCH <rep> <phase> <centiseconds>".
const MarkerBench = "GUEST-BENCH"

// VirtiofsBenchInit returns a guest /init that mounts the virtiofs share
// tag on /mnt and, reps times: writes a file of bigMiB MiB (fsync'd),
// drops the guest's page cache and reads it back, then creates files
// small files, stats them all and removes them, printing each phase's
// duration (guest clock, /proc/uptime: 10 ms resolution). Then it
// prints GUEST-POWEROFF and powers off.
func VirtiofsBenchInit(tag string, bigMiB, files, reps int) string {
	var b strings.Builder
	b.WriteString(InitPrelude)
	b.WriteString("mount -t virtiofs " + shellQuote(tag) + " /mnt || fail " + shellQuote("mount virtiofs "+tag) + "\n")
	b.WriteString(`cs() { read u _ </proc/uptime; echo $(( ${u%.*} * 100 + 1${u#*.} - 100 )); }
phase() { echo "` + MarkerBench + ` $rep $1 $(( $(cs) - t0 ))"; t0=$(cs); }
rep=1
while [ $rep -le ` + strconv.Itoa(reps) + ` ]; do
	rm -rf /mnt/bench; mkdir /mnt/bench || fail "mkdir /mnt/bench"
	t0=$(cs)
	dd if=/dev/zero of=/mnt/bench/big bs=1M count=` + strconv.Itoa(bigMiB) + ` conv=fsync 2>/dev/null || fail "write big"
	phase write
	sync; echo 3 >/proc/sys/vm/drop_caches
	t0=$(cs)
	dd if=/mnt/bench/big of=/dev/null bs=1M 2>/dev/null || fail "read big"
	phase read
	rm /mnt/bench/big
	mkdir /mnt/bench/d
	t0=$(cs)
	i=0
	while [ $i -lt ` + strconv.Itoa(files) + ` ]; do : >/mnt/bench/d/f$i || fail "create f$i"; i=$((i+1)); done
	phase create
	sync; echo 3 >/proc/sys/vm/drop_caches
	t0=$(cs)
	n=$(ls -l /mnt/bench/d | grep -c '^-')
	phase stat
	[ "$n" = ` + strconv.Itoa(files) + ` ] || fail "stat saw $n files"
	t0=$(cs)
	rm -r /mnt/bench/d || fail "remove"
	phase remove
	rep=$((rep+1))
done
rm -rf /mnt/bench
echo ` + MarkerPowerOff + `
sync
poweroff -f
`)
	return b.String()
}

// ParseBench reads VirtiofsBenchInit's result lines out of console
// output (a prefix such as "vmm: " before the marker is allowed) into
// phase -> durations in seconds.
func ParseBench(out string) (map[string][]float64, error) {
	res := map[string][]float64{}
	for _, l := range strings.Split(out, "\n") {
		i := strings.Index(l, MarkerBench+" ")
		if i < 0 {
			continue
		}
		f := strings.Fields(l[i:])
		if len(f) != 4 {
			return nil, fmt.Errorf("bench line %q", l)
		}
		cs, err := strconv.Atoi(f[3])
		if err != nil {
			return nil, fmt.Errorf("bench line %q: %v", l, err)
		}
		res[f[2]] = append(res[f[2]], float64(cs)/100)
	}
	return res, nil
}
