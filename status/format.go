package status

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Print writes the record as s6-svstat would: a line for the VM, then one
// per service, "NAME: STATE (pid N) TIME, ...". Times in state are
// whole seconds as of now.
func Print(w io.Writer, r *VM, now time.Time) error {
	if _, err := fmt.Fprintln(w, Summary(r, now)); err != nil {
		return err
	}
	for _, s := range r.Services {
		if _, err := fmt.Fprintln(w, "  "+Line(s, now)); err != nil {
			return err
		}
	}
	return nil
}

// Line is one service's line.
func Line(s Service, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", s.Name, s.State)
	if s.PID > 0 {
		if s.HostPID > 0 {
			fmt.Fprintf(&b, " (pid %d, %d in the VM)", s.HostPID, s.PID)
		} else {
			fmt.Fprintf(&b, " (pid %d in the VM)", s.PID)
		}
	}
	fmt.Fprintf(&b, " %s, restarts %d", ago(s.Since, now), s.Restarts)
	switch s.State {
	case Waiting:
		fmt.Fprintf(&b, ", then ready on %s", s.WaitsFor)
	case Starting:
		fmt.Fprintf(&b, ", not ready: waits for %s", s.WaitsFor)
	}
	if s.LastExit != "" && s.State != Ready && s.State != Starting {
		fmt.Fprintf(&b, ", last %s", s.LastExit)
	}
	return b.String()
}

// Summary is one line for a VM in the list of running VMs.
func Summary(r *VM, now time.Time) string {
	ready := 0
	for _, s := range r.Services {
		if s.Ready {
			ready++
		}
	}
	pid := ""
	if r.HostPID > 0 {
		pid = fmt.Sprintf(" (pid %d)", r.HostPID)
	}
	return fmt.Sprintf("%s: %s%s %s, %d of %d services ready", r.Name, r.Phase, pid, ago(r.Since, now), ready, len(r.Services))
}

func ago(t, now time.Time) string {
	d := now.Sub(t).Truncate(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String()
}
