package config

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	maxPids = 4194304 // PID_MAX_LIMIT: pids.max refuses anything larger

	// cpu.max periods the kernel accepts, and its default, in µs.
	minCPUPeriod     = 1000
	maxCPUPeriod     = 1000000
	defaultCPUPeriod = 100000

	// cpu.weight's range.
	minCPUWeight = 1
	maxCPUWeight = 10000
)

func (p *parser) limits(v *value, path string, l *Limits) {
	f, ok := p.object(v, path)
	if !ok {
		return
	}
	if v, path := f.get("memory_max"); v != nil {
		l.MemoryMax, _ = p.size(v, path, "max")
	}
	if v, path := f.get("memory_high"); v != nil {
		l.MemoryHigh, _ = p.size(v, path, "max")
	}
	if v, path := f.get("pids_max"); v != nil {
		switch {
		case v.kind == kindNumber:
			l.PidsMax, _ = p.integer(v, path, 1, maxPids)
		case v.kind == kindString && v.text == "max":
			l.PidsMax = Unlimited
		case v.kind == kindString:
			p.errorf(v.pos, path, `must be an integer or "max"`)
		default:
			p.typeError(v, path, `integer or "max"`)
		}
	}
	if v, path := f.get("cpu_weight"); v != nil {
		n, _ := p.integer(v, path, minCPUWeight, maxCPUWeight)
		l.CPUWeight = uint64(n)
	}
	if v, path := f.get("cpu_max"); v != nil {
		if s, ok := p.str(v, path); ok {
			if norm, msg := cpuMax(s); msg != "" {
				p.errorf(v.pos, path, "%s", msg)
			} else {
				l.CPUMax = norm
			}
		}
	}
}

// cpuMax normalises "QUOTA [PERIOD]" or "max [PERIOD]" to the two-field
// form cpu.max takes, or returns why it cannot.
func cpuMax(s string) (string, string) {
	const form = `must be "QUOTA [PERIOD]" or "max [PERIOD]" in microseconds`
	parts := strings.Split(s, " ")
	if len(parts) > 2 {
		return "", form
	}
	quota, period := parts[0], strconv.Itoa(defaultCPUPeriod)
	if len(parts) == 2 {
		period = parts[1]
	}
	if quota != "max" {
		q, err := strconv.ParseUint(quota, 10, 63)
		if err != nil {
			return "", form
		}
		// The kernel refuses a quota below 1ms; say so now rather than at start.
		if q < minCPUPeriod {
			return "", fmt.Sprintf("quota must be at least %d", minCPUPeriod)
		}
		quota = strconv.FormatUint(q, 10)
	}
	n, err := strconv.ParseUint(period, 10, 63)
	if err != nil {
		return "", form
	}
	if n < minCPUPeriod || n > maxCPUPeriod {
		return "", fmt.Sprintf("period must be between %d and %d", minCPUPeriod, maxCPUPeriod)
	}
	return quota + " " + strconv.FormatUint(n, 10), ""
}

func (p *parser) rlimits(v *value, path string) []Rlimit {
	if !p.is(v, path, kindObject, "object") {
		return nil
	}
	var out []Rlimit
	for _, mb := range v.members {
		kpath := join(path, mb.key)
		r, known := rlimits[mb.key]
		if !known {
			hint := ""
			guess := strings.ToLower(strings.TrimPrefix(mb.key, "RLIMIT_"))
			if _, ok := rlimits[guess]; ok {
				hint = ", did you mean " + quote(guess) + "?"
			}
			p.errorf(mb.pos, kpath, "unknown rlimit%s", hint)
			continue
		}
		if n, ok := p.rlimitValue(mb.val, kpath, r.sized); ok {
			out = append(out, Rlimit{Name: mb.key, Resource: r.resource, Value: n})
		}
	}
	// Sorted so that the order of the JSON object does not matter.
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (p *parser) rlimitValue(v *value, path string, sized bool) (uint64, bool) {
	want := `non-negative integer or "unlimited"`
	if sized {
		want = `non-negative integer, size string like "64M" or "unlimited"`
	}
	switch v.kind {
	case kindNumber:
		if !integral(v.text) {
			p.errorf(v.pos, path, "must be an integer")
			return 0, false
		}
		n, err := strconv.ParseUint(v.text, 10, 64)
		if err != nil {
			p.errorf(v.pos, path, "must be between 0 and %d", uint64(math.MaxUint64))
			return 0, false
		}
		return n, true
	case kindString:
		if v.text == "unlimited" {
			return unix.RLIM_INFINITY, true
		}
		if sized {
			if n, ok := parseSize(v.text); ok {
				return uint64(n), true
			}
		}
		p.errorf(v.pos, path, "must be a %s", want)
		return 0, false
	}
	p.typeError(v, path, want)
	return 0, false
}
