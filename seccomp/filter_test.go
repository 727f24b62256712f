package seccomp

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// Every name of the table is a system call the library knows, so the
// default program assembles; each group lifted removes exactly its
// members.
func TestTableAssembles(t *testing.T) {
	prog, err := Program(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("default filter: %d instructions, %d calls refused", len(prog), len(Refused(nil)))
	seen := map[string]string{}
	for _, g := range Groups {
		if err := Check(g.Name); err != nil {
			t.Error(err)
		}
		for _, s := range g.Syscalls {
			if err := Check(s); err != nil {
				t.Errorf("%s: %v", g.Name, err)
			}
			if o, dup := seen[s]; dup {
				t.Errorf("%s is in %s and %s", s, o, g.Name)
			}
			seen[s] = g.Name
		}
		left := Refused([]string{g.Name})
		for _, s := range g.Syscalls {
			if slices.Contains(left, s) {
				t.Errorf("%s still refused with %s allowed", s, g.Name)
			}
		}
		if len(left)+len(g.Syscalls) != len(Refused(nil)) {
			t.Errorf("allowing %s lifts more than its members", g.Name)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{{"open_by_handle_at", true}, {"read", true}, {"@bpf", true}, {"@nope", false}, {"open_by_handle", false}, {"", false}} {
		if err := Check(c.name); (err == nil) != c.ok {
			t.Errorf("Check(%q) = %v", c.name, err)
		}
	}
	if r := Refused([]string{"keyctl"}); slices.Contains(r, "keyctl") || !slices.Contains(r, "add_key") {
		t.Errorf("allow keyctl: %v", r)
	}
}

// The README lists the groups exactly as the table has them.
func TestREADMEListsGroups(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), Table()) {
		t.Errorf("README.md lacks the current group table; put this in it:\n%s", Table())
	}
}
