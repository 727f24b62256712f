package cgroup

import (
	"slices"
	"strconv"

	"vmsup/config"
)

// limitFiles is the one table from a field of config.Limits to the
// interface file that sets it and the controller that file belongs to.
// A service's limits are written in this order, the controllers enabled
// down the tree are derived from it, and so are `vmsup check`'s refusals.
var limitFiles = []struct {
	controller string
	file       string
	key        string                             // the config key under "limits"
	value      func(config.Limits) (string, bool) // false: the limit is not set
}{
	{"memory", "memory.max", "memory_max", func(l config.Limits) (string, bool) { return size(l.MemoryMax) }},
	{"memory", "memory.high", "memory_high", func(l config.Limits) (string, bool) { return size(l.MemoryHigh) }},
	{"pids", "pids.max", "pids_max", func(l config.Limits) (string, bool) { return size(l.PidsMax) }},
	{"cpu", "cpu.weight", "cpu_weight", func(l config.Limits) (string, bool) {
		return strconv.FormatUint(l.CPUWeight, 10), l.CPUWeight != 0
	}},
	{"cpu", "cpu.max", "cpu_max", func(l config.Limits) (string, bool) { return l.CPUMax, l.CPUMax != "" }},
}

// size is a byte or count limit as its interface file takes it; 0 is
// unset.
func size(v int64) (string, bool) {
	if v == config.Unlimited {
		return "max", true
	}
	return strconv.FormatInt(v, 10), v != 0
}

// LimitWrite is one interface file write that sets a limit.
type LimitWrite struct {
	Controller string // the controller the file belongs to
	File       string // e.g. "memory.max"
	Value      string // what is written to it
}

// LimitWrites lists the writes that set l, in a fixed order.
func LimitWrites(l config.Limits) []LimitWrite {
	var out []LimitWrite
	for _, f := range limitFiles {
		if v, ok := f.value(l); ok {
			out = append(out, LimitWrite{f.controller, f.file, v})
		}
	}
	return out
}

// SetLimits writes l into the cgroup dir; the first failure ends it.
func SetLimits(dir string, l config.Limits) error {
	for _, w := range LimitWrites(l) {
		if err := Write(dir, w.File, w.Value); err != nil {
			return err
		}
	}
	return nil
}

// NeededControllers lists the controllers that the limits ls set need,
// sorted by name.
func NeededControllers(ls ...config.Limits) []string {
	var out []string
	for _, l := range ls {
		for _, w := range LimitWrites(l) {
			if !slices.Contains(out, w.Controller) {
				out = append(out, w.Controller)
			}
		}
	}
	slices.Sort(out)
	return out
}

// LimitController is a controller that limits are set through, with the
// config keys (under "limits") that need it.
type LimitController struct {
	Name string
	Keys []string
}

// LimitControllers lists every controller a limit can need, in the
// order of the table, each with its keys.
func LimitControllers() []LimitController {
	var out []LimitController
	for _, f := range limitFiles {
		if n := len(out); n > 0 && out[n-1].Name == f.controller {
			out[n-1].Keys = append(out[n-1].Keys, f.key)
			continue
		}
		out = append(out, LimitController{f.controller, []string{f.key}})
	}
	return out
}

// UsesController reports whether l sets a limit through the controller.
func UsesController(l config.Limits, controller string) bool {
	for _, w := range LimitWrites(l) {
		if w.Controller == controller {
			return true
		}
	}
	return false
}
