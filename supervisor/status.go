package supervisor

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"vmsup/config"
	"vmsup/status"
)

// recorder keeps the VM's status record (package status) current: the
// event loop calls record after every event it handled, and the record
// is rewritten when anything in it changed. Only that goroutine uses it.
type recorder struct {
	w       *status.Writer
	rec     status.VM
	keys    []string // per service: the state and launch its since is for
	since   []time.Time
	lastKey string // the phase's
}

// openStatus creates the VM's record before the mount namespace is
// shaped; setupMounts then hides its directory (hideStatus).
func (v *vm) openStatus() error {
	w, err := status.Create(v.cfg.Name)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	ns, _ := os.Readlink("/proc/self/ns/pid")
	v.status = &recorder{w: w, keys: make([]string, len(v.svcs)), since: make([]time.Time, len(v.svcs)),
		rec: status.VM{Name: v.cfg.Name, Started: now, Since: now, PIDNS: ns}}
	v.record()
	return nil
}

// statusDir is the directory hideStatus covers, "" when there is none.
func (v *vm) statusDir() string {
	if v.status == nil {
		return ""
	}
	return v.status.w.Path()
}

// record writes the record if anything in it changed.
func (v *vm) record() {
	r := v.status
	if r == nil {
		return
	}
	now := time.Now().UTC()
	phase := "running"
	switch {
	case v.phase == running && !v.announced:
		phase = "starting"
	case v.phase == stopping:
		phase = "stopping"
	case v.phase == killing:
		phase = "killing"
	}
	if phase != r.lastKey {
		r.lastKey, r.rec.Phase, r.rec.Since = phase, phase, now
	}
	r.rec.Services = r.rec.Services[:0]
	for i, s := range v.svcs {
		e := status.Service{Name: s.cfg.Name, State: svcStateName(s.state), PID: s.pid,
			Ready: s.state == ready, WaitsFor: readyRule(s.cfg.Ready), LastExit: s.lastExit}
		if s.gen > 1 {
			e.Restarts = s.gen - 1
		}
		if e.State == status.Waiting && len(s.cfg.After) > 0 {
			e.WaitsFor = "after " + strings.Join(s.cfg.After, ", ") + ", " + e.WaitsFor
		}
		key := e.State + "/" + strconv.Itoa(s.gen)
		if key != r.keys[i] {
			r.keys[i], r.since[i] = key, now
		}
		e.Since = r.since[i]
		r.rec.Services = append(r.rec.Services, e)
	}
	if err := r.w.Write(&r.rec); err != nil {
		logger.Print(err)
	}
}

// closeStatus removes the record: the VM is over.
func (v *vm) closeStatus() {
	if v.status != nil {
		v.status.w.Remove()
		v.status = nil
	}
}

func svcStateName(s svcState) string {
	switch s {
	case waiting:
		return status.Waiting
	case launching, started:
		return status.Starting
	case ready:
		return status.Ready
	case backoff:
		return status.Restarting
	}
	return status.Stopped
}

// readyRule says in words what makes a service ready.
func readyRule(r config.Ready) string {
	switch {
	case r.Socket != "":
		return "socket " + r.Socket
	case r.Exists != "":
		return "exists " + r.Exists
	case r.NotifyFD != 0:
		return fmt.Sprintf("notify_fd %d", r.NotifyFD)
	}
	return "started"
}

// seconds writes a duration the way a config would: "60s", "1.5s".
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}
