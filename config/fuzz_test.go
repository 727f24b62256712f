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

// nameRE is the contract's name rule, as an oracle independent of
// validName.
var nameRE = regexp.MustCompile(namePattern)

// FuzzParse feeds Parse (decoder and validator) arbitrary bytes. It
// checks that Parse never panics, that every error names a well-formed
// path to a value of the document (or a key missing from one of its
// objects), that its output is deterministic, and that whatever it
// accepts satisfies the invariants the supervisor relies on.

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
			checkErrors(t, data, vm, errs)
		} else {
			checkVM(t, vm)
		}
		vm2, errs2 := Parse(data)
		if !reflect.DeepEqual(errLines(errs), errLines(errs2)) || !reflect.DeepEqual(vm, vm2) {
			t.Fatalf("Parse is not deterministic:\n%q\n%q", errLines(errs), errLines(errs2))
		}
	})
}

func checkErrors(t *testing.T, data []byte, vm *VM, errs []*Error) {
	if vm != nil {
		t.Fatalf("VM returned along with %d errors", len(errs))
	}
	syntax := false
	for _, e := range errs {
		if e == nil || e.Msg == "" {
			t.Fatalf("empty error in %q", errLines(errs))
		}
		if r := []rune(e.Msg)[0]; unicode.IsUpper(r) {
			t.Errorf("message not lower-case: %q", e)
		}
		syntax = syntax || strings.HasPrefix(e.Msg, "invalid JSON")
		if syntax && len(errs) != 1 {
			t.Errorf("a syntax error among others: %q", errLines(errs))
		}
		if e.Path == "" {
			// Only a syntax error or a document that is not an object
			// concerns the whole document, and it is then the only error.
			doc := syntax || strings.HasPrefix(e.Msg, "expected object, got ")
			if !doc || len(errs) != 1 {
				t.Errorf("document-level error %q among %q", e.Msg, errLines(errs))
			}
			continue
		}
		if _, ok := pathSteps(e.Path); !ok {
			t.Errorf("malformed path %q in %q", e.Path, e)
		}
	}
	if syntax {
		return // the path names a value that was not read to its end
	}
	// Every path names a value of the document, or a key missing from an
	// object of it.
	root, serr := (&parser{}).readTree(data)
	if serr != nil {
		t.Fatalf("Parse found no syntax error, readTree did: %v", serr)
	}
	for _, e := range errs {
		if e.Path == "" {
			continue
		}
		steps, _ := pathSteps(e.Path)
		if resolve(root, steps) != nil {
			continue
		}
		last := steps[len(steps)-1]
		parent := resolve(root, steps[:len(steps)-1])
		missing := e.Msg == "required" || strings.HasPrefix(e.Msg, "no uid:") || strings.HasPrefix(e.Msg, "no gid:")
		if !missing || parent == nil || parent.kind != kindObject || last.isIndex {
			t.Errorf("%q names nothing in the document", e)
		}
	}
}

// A step of a path: an object key or an array index.
type step struct {
	key     string
	index   int
	isIndex bool
}

// pathSteps splits paths such as name, services[1].limits.memory_max and
// services[0].env["A=B"]: an identifier or quoted key first, then
// .identifier, [index] or ["key"] steps. A quoted key must need quoting.
// ok is false for a malformed path.
func pathSteps(p string) (steps []step, ok bool) {
	for first := true; p != ""; first = false {
		switch {
		case strings.HasPrefix(p, `["`):
			q, err := strconv.QuotedPrefix(p[1:])
			if err != nil {
				return nil, false
			}
			key, _ := strconv.Unquote(q)
			rest := p[1+len(q):]
			if isIdent(key) || !strings.HasPrefix(rest, "]") {
				return nil, false
			}
			steps = append(steps, step{key: key})
			p = rest[1:]
		case strings.HasPrefix(p, "["):
			if first {
				return nil, false
			}
			end := strings.IndexByte(p, ']')
			if end < 2 {
				return nil, false
			}
			i, err := strconv.Atoi(p[1:end])
			if err != nil || p[1] == '-' || (p[1] == '0' && end > 2) {
				return nil, false
			}
			steps = append(steps, step{index: i, isIndex: true})
			p = p[end+1:]
		default:
			if !first {
				if p[0] != '.' {
					return nil, false
				}
				p = p[1:]
			}
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			if !isIdent(p[:end]) {
				return nil, false
			}
			steps = append(steps, step{key: p[:end]})
			p = p[end:]
		}
	}
	return steps, true
}

func wellFormedPath(p string) bool {
	_, ok := pathSteps(p)
	return ok
}

// resolve returns the value steps lead to from v, nil if there is none.
func resolve(v *value, steps []step) *value {
	for _, s := range steps {
		var next *value
		switch {
		case s.isIndex && v.kind == kindArray && s.index < len(v.elems):
			next = v.elems[s.index]
		case !s.isIndex && v.kind == kindObject:
			for _, m := range v.members {
				if m.key == s.key {
					next = m.val
					break
				}
			}
		}
		if next == nil {
			return nil
		}
		v = next
	}
	return v
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
		if d.FD != 0 {
			fds = append(fds, d.FD)
		}
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
