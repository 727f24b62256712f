package hostimage

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Result is one test's verdict as its binary printed it.
type Result struct {
	Step    string
	Test    string // "TestX" or "TestX/sub"
	Verdict string // PASS, FAIL or SKIP
	Seconds float64
}

// Report is what the guest's console says.
type Report struct {
	Results []Result
	Exits   map[string]int     // step -> the binary's exit status
	Uptime  map[string]float64 // marker or step -> guest uptime (s) when it was printed
	Done    bool
}

var resultLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+)s\)`)

// Parse reads the console's lines.
func Parse(lines []string) Report {
	r := Report{Exits: map[string]int{}, Uptime: map[string]float64{}}
	step := ""
	for _, l := range lines {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && (f[0] == MarkerInit || f[0] == MarkerRunner):
			r.Uptime[f[0]], _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 3 && f[0] == MarkerStep:
			step = f[1]
		case len(f) == 4 && f[0] == MarkerExit:
			st, err := strconv.Atoi(f[2])
			if err != nil {
				st = -1
			}
			r.Exits[f[1]] = st
			r.Uptime[f[1]], _ = strconv.ParseFloat(f[3], 64)
			step = ""
		case len(f) == 1 && f[0] == MarkerDone:
			r.Done = true
		default:
			if m := resultLine.FindStringSubmatch(l); m != nil && step != "" {
				sec, _ := strconv.ParseFloat(m[3], 64)
				r.Results = append(r.Results, Result{Step: step, Test: m[2], Verdict: m[1], Seconds: sec})
			}
		}
	}
	return r
}

// Check compares the report with the tests each step must run: every one
// of them passed in its step, the step's binary exited 0, nothing was
// skipped or failed. It returns the problems, one per line.
func (r Report) Check(expected map[string][]string) []string {
	var problems []string
	if !r.Done {
		problems = append(problems, "the runner did not finish ("+MarkerDone+" missing)")
	}
	for _, s := range Steps {
		st, ok := r.Exits[s.Name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("step %s: never ended", s.Name))
		case st != 0:
			problems = append(problems, fmt.Sprintf("step %s: %s exited %d", s.Name, s.Binary, st))
		}
		passed := map[string]bool{}
		for _, res := range r.Results {
			if res.Step != s.Name {
				continue
			}
			if res.Verdict != "PASS" {
				problems = append(problems, fmt.Sprintf("step %s: %s: %s", s.Name, res.Test, res.Verdict))
			} else {
				passed[res.Test] = true
			}
		}
		for _, name := range expected[s.Name] {
			if !passed[name] {
				problems = append(problems, fmt.Sprintf("step %s: %s did not report PASS", s.Name, name))
			}
		}
	}
	return problems
}

// Passed counts the passed top-level tests and subtests.
func (r Report) Passed() (tests, subtests int) {
	for _, res := range r.Results {
		if res.Verdict != "PASS" {
			continue
		}
		if strings.Contains(res.Test, "/") {
			subtests++
		} else {
			tests++
		}
	}
	return tests, subtests
}
