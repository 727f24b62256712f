package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// FuzzParse checks that Parse never panics, that every error names a
// well-formed path, that its output is deterministic, and that whatever it
// accepts satisfies the invariants the supervisor relies on.
// nameRE is the contract's name rule, as an oracle independent of
// validName.
var nameRE = regexp.MustCompile(namePattern)

func FuzzParse(f *testing.F) {
	var seeds []string
	for _, pattern := range []string{"*.json", "good/*.json", "bad/*.json"} {
		seeds = append(seeds, corpus(f, pattern)...)
	}
	for _, file := range seeds {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		vm, errs := Parse(data)
		if len(errs) > 0 {
			checkErrors(t, vm, errs)
		} else {
			checkVM(t, vm)
		}
		vm2, errs2 := Parse(data)
		if !reflect.DeepEqual(errLines(errs), errLines(errs2)) || !reflect.DeepEqual(vm, vm2) {
			t.Fatalf("Parse is not deterministic:\n%q\n%q", errLines(errs), errLines(errs2))
		}
	})
}

func checkErrors(t *testing.T, vm *VM, errs []*Error) {
	if vm != nil {
		t.Fatalf("VM returned along with %d errors", len(errs))
	}
	for _, e := range errs {
		if e == nil || e.Msg == "" {
			t.Fatalf("empty error in %q", errLines(errs))
		}
		if r := []rune(e.Msg)[0]; unicode.IsUpper(r) {
			t.Errorf("message not lower-case: %q", e)
		}
		if e.Path == "" {
			// Only a syntax error or a document that is not an object
			// concerns the whole document, and it is then the only error.
			doc := strings.HasPrefix(e.Msg, "invalid JSON") || strings.HasPrefix(e.Msg, "expected object, got ")
			if !doc || len(errs) != 1 {
				t.Errorf("document-level error %q among %q", e.Msg, errLines(errs))
			}
			continue
		}
		if !wellFormedPath(e.Path) {
			t.Errorf("malformed path %q in %q", e.Path, e)
		}
	}
}

// wellFormedPath accepts paths such as name, services[1].limits.memory_max
// and services[0].env["A=B"]: an identifier or quoted key first, then
// .identifier, [index] or ["key"] steps. A quoted key must need quoting.
func wellFormedPath(p string) bool {
	for first := true; p != ""; first = false {
		switch {
		case strings.HasPrefix(p, `["`):
			q, err := strconv.QuotedPrefix(p[1:])
			if err != nil {
				return false
			}
			key, _ := strconv.Unquote(q)
			rest := p[1+len(q):]
			if isIdent(key) || !strings.HasPrefix(rest, "]") {
				return false
			}
			p = rest[1:]
		case strings.HasPrefix(p, "["):
			if first {
				return false
			}
			end := strings.IndexByte(p, ']')
			if end < 2 {
				return false
			}
			if _, err := strconv.Atoi(p[1:end]); err != nil || p[1] == '-' || (p[1] == '0' && end > 2) {
				return false
			}
			p = p[end+1:]
		default:
			if !first {
				if p[0] != '.' {
					return false
				}
				p = p[1:]
			}
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			if !isIdent(p[:end]) {
				return false
			}
			p = p[end:]
		}
	}
	return true
}

func checkVM(t *testing.T, vm *VM) {
	if vm == nil {
		t.Fatal("no VM and no errors")
	}
	if !nameRE.MatchString(vm.Name) || !filepath.IsAbs(vm.RuntimeDir) || vm.RuntimeDir == "/" {
		t.Errorf("bad VM name %q or runtime dir %q", vm.Name, vm.RuntimeDir)
	}
	if vm.ShutdownTimeout <= 0 || vm.Landlock == "" || vm.Mount.Propagation == "" {
		t.Errorf("defaults missing: %+v", vm)
	}
	if len(vm.Services) == 0 {
		t.Fatal("accepted a VM without services")
	}
	names := map[string]bool{}
	vmms := 0
	for _, s := range vm.Services {
		if !nameRE.MatchString(s.Name) || names[s.Name] {
			t.Errorf("bad or duplicate service name %q", s.Name)
		}
		names[s.Name] = true
		if len(s.Argv) == 0 || s.Argv[0] == "" {
			t.Errorf("service %s: argv %q", s.Name, s.Argv)
		}
		if s.OnExit == "" || s.StopSignal == 0 {
			t.Errorf("service %s: defaults missing", s.Name)
		}
		fds := map[int]bool{}
		for _, fd := range serviceFDs(s) {
			if fd < 3 || fd > 1023 || fds[fd] {
				t.Errorf("service %s: bad or duplicate fd %d", s.Name, fd)
			}
			fds[fd] = true
		}
		if s.VMM != nil {
			vmms++
		}
	}
	if vmms > 1 {
		t.Errorf("%d services have vmm", vmms)
	}
	for _, s := range vm.Services {
		for _, a := range s.After {
			if !names[a] || a == s.Name {
				t.Errorf("service %s: after %q", s.Name, a)
			}
		}
	}
}

// serviceFDs lists every fd number the service is given.
func serviceFDs(s Service) []int {
	var fds []int
	for _, k := range s.Sockets {
		fds = append(fds, k.FD)
	}
	for _, d := range s.Devices {
		fds = append(fds, d.FD)
	}
	if s.Ready.NotifyFD != 0 {
		fds = append(fds, s.Ready.NotifyFD)
	}
	return fds
}

func TestWellFormedPath(t *testing.T) {
	for p, want := range map[string]bool{
		"name":                          true,
		"services[1].limits.memory_max": true,
		`services[0].env["A=B"]`:        true,
		`services[0].env[""]`:           true,
		`["9p"]`:                        true,
		"services[0].env.FOO":           true,
		"":                              true, // the document; checkErrors limits where it may appear
		"services[]":                    false,
		"services[01]":                  false,
		"services[-1]":                  false,
		"[0]":                           false,
		".name":                         false,
		"name.":                         false,
		"services[0]name":               false,
		`env["FOO"]`:                    false, // needs no quotes
		`env["A]`:                       false,
		"a b":                           false,
	} {
		if got := wellFormedPath(p); got != want {
			t.Errorf("wellFormedPath(%q) = %v", p, got)
		}
	}
}
