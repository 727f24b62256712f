package s6_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"vmsup/config"
	"vmsup/s6"
)

var styles = []struct {
	name  string
	style s6.Style
}{{"sh", s6.Sh}, {"execline", s6.Execline}}

func parse(t *testing.T, doc string) *config.VM {
	t.Helper()
	vm, errs := config.Parse([]byte(doc))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return vm
}

const minimal = `{"name": "x", "uid": 0, "services": [{"name": "a", "argv": ["/bin/true"]}]}`

// The run script hands vmsup exactly these arguments, whatever the
// paths contain, and its parent's PID; the finish script's exit status
// is what tells s6 whether to restart.
func TestScripts(t *testing.T) {
	for _, st := range styles {
		t.Run(st.name, func(t *testing.T) {
			odd := "we'ird \"dir\" $x `y` {z}"
			if st.style == s6.Execline {
				odd = "sp ace {z} 'q'"
			}
			dir := filepath.Join(t.TempDir(), odd)
			os.Mkdir(dir, 0o755)
			fake := filepath.Join(dir, "vmsup")
			os.WriteFile(fake, []byte("#!/bin/sh\nfor a; do printf '%s\\n' \"$a\"; done\n"), 0o755)
			cfg := filepath.Join(dir, "vm.json")
			sv := filepath.Join(dir, "sv")
			if err := s6.WriteServiceDirStyle(sv, cfg, fake, parse(t, minimal), st.style); err != nil {
				t.Fatal(err)
			}

			// Started by this process, as by s6-supervise.
			out, err := exec.Command(filepath.Join(sv, "run"), "servicename").CombinedOutput()
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out)
			}
			want := strings.Join([]string{"run", "--parent-pid", strconv.Itoa(os.Getpid()), "--notify-fd", "3", cfg}, "\n") + "\n"
			if string(out) != want {
				t.Fatalf("vmsup got\n%s\nwant\n%s", out, want)
			}

			// A parent PID of 1: the supervisor died before the script
			// started. Here the script's parent is PID 1 of a new PID
			// namespace.
			cmd := exec.Command("unshare", "--fork", "--pid", "/bin/sh", "-c", `"$0"; echo "status $?"`, filepath.Join(sv, "run"))
			out, err = cmd.CombinedOutput()
			if err != nil || string(out) != "status 111\n" {
				t.Fatalf("run under PID 1: %v %q, want status 111 and vmsup not started", err, out)
			}

			for _, c := range []struct {
				args   []string
				status int
				msg    string
			}{
				{[]string{"0", "0", "x"}, 0, "vmsup-finish: run exited 0\n"},
				{[]string{"3", "0", "x"}, 125, "vmsup-finish: run exited 3: not restarting\n"},
				{[]string{"100", "0", "x"}, 125, "vmsup-finish: run exited 100: not restarting\n"},
				{[]string{"1", "0", "x"}, 0, "vmsup-finish: run exited 1\n"},
				{[]string{"111", "0", "x"}, 0, "vmsup-finish: run exited 111\n"},
				{[]string{"256", "9", "x"}, 0, "vmsup-finish: run was killed by signal 9\n"},
			} {
				cmd := exec.Command(filepath.Join(sv, "finish"), c.args...)
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				status := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					status = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if status != c.status || stdout.Len() != 0 || stderr.String() != c.msg {
					t.Errorf("finish %v: status %d, stdout %q, stderr %q; want %d and %q on stderr", c.args, status, stdout.String(), stderr.String(), c.status, c.msg)
				}
			}
		})
	}
}

func TestWriteServiceDir(t *testing.T) {
	vm := parse(t, `{"name": "x", "uid": 0, "shutdown_timeout": "2500ms", "services": [{"name": "a", "argv": ["/bin/true"]}]}`)
	parent := t.TempDir()
	dir := filepath.Join(parent, "sv")
	if err := s6.WriteServiceDir(dir, "/etc/vm.json", "/usr/bin/vmsup", vm); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]struct {
		mode os.FileMode
		data string
	}{
		"notification-fd": {0o644, "3\n"},
		"timeout-kill":    {0o644, "12500\n"},
		"run":             {0o755, ""},
		"finish":          {0o755, ""},
	} {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		if fi.Mode() != want.mode || (want.data != "" && string(b) != want.data) {
			t.Errorf("%s: mode %v, %q; want %v, %q", name, fi.Mode(), b, want.mode, want.data)
		}
	}
	run, _ := os.ReadFile(filepath.Join(dir, "run"))
	if !strings.HasPrefix(string(run), "#!/bin/sh\n") || !strings.Contains(string(run), "\nexec '/usr/bin/vmsup' run --parent-pid \"$PPID\" --notify-fd 3 '/etc/vm.json'\n") {
		t.Errorf("run:\n%s", run)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o755 {
		t.Errorf("directory mode %v, want 0755", fi.Mode())
	}
	// Nothing else was left next to it (the directory is built aside
	// and renamed in).
	if e, _ := os.ReadDir(parent); len(e) != 1 {
		t.Errorf("%s holds %v", parent, e)
	}

	// An existing empty directory is fine; a non-empty one is refused.
	empty := filepath.Join(parent, "empty")
	os.Mkdir(empty, 0o755)
	if err := s6.WriteServiceDir(empty, "/etc/vm.json", "/usr/bin/vmsup", vm); err != nil {
		t.Fatal(err)
	}
	var ue *s6.UsageError
	if err := s6.WriteServiceDir(dir, "/etc/vm.json", "/usr/bin/vmsup", vm); !errors.As(err, &ue) {
		t.Errorf("over a non-empty directory: %v, want a UsageError", err)
	}
	if err := s6.WriteServiceDir(filepath.Join(parent, "rel"), "vm.json", "/usr/bin/vmsup", vm); !errors.As(err, &ue) {
		t.Errorf("relative config path: %v, want a UsageError", err)
	}
	if err := s6.WriteServiceDirStyle(filepath.Join(parent, "el"), "/etc/$PPID.json", "/usr/bin/vmsup", vm, s6.Execline); !errors.As(err, &ue) {
		t.Errorf("execline with a $ in a path: %v, want a UsageError", err)
	}
}

// Run, with options the CLI parsed (cmd/vmsup tests the parsing): its
// messages and statuses, and that a failed run creates nothing.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(minimal), 0o644)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"name": "Bad!", "services": [{"name": "a"}]}`), 0o644)
	os.MkdirAll(filepath.Join(dir, "full", "x"), 0o755)

	self, _ := os.Executable()
	self, _ = filepath.EvalSymlinks(self)

	for _, c := range []struct {
		name   string
		o      s6.MainOptions
		out    string
		status int
		stderr []string // each must appear
	}{
		{"missing config", s6.MainOptions{Config: dir + "/nope.json"}, dir + "/o5", 100, []string{"s6-servicedir: " + dir + "/nope.json: ", "nope.json: cannot read"}},
		{"bad config", s6.MainOptions{Config: bad}, dir + "/o6", 100, []string{"s6-servicedir: " + bad + ": name: ", bad + ": services[0].argv: "}},
		{"bad config-json", s6.MainOptions{ConfigJSON: `{"name": 1}`}, dir + "/o6j", 100, []string{"s6-servicedir: --config-json: name: "}},
		{"not empty", s6.MainOptions{Config: good}, dir + "/full", 100, []string{"not empty"}},
		{"no parent", s6.MainOptions{Config: good}, dir + "/no/such/o7", 111, []string{"no/such"}},
		{"ok", s6.MainOptions{Config: good}, dir + "/o8", 0, nil},
		{"ok, execline", s6.MainOptions{Config: good, Execline: true}, dir + "/o9", 0, nil},
	} {
		var stderr bytes.Buffer
		status := s6.Run(c.o, c.out, func(f string, a ...any) { fmt.Fprintf(&stderr, f+"\n", a...) })
		if status != c.status {
			t.Errorf("%s: status %d, want %d; stderr:\n%s", c.name, status, c.status, stderr.String())
		}
		for _, s := range c.stderr {
			if !strings.Contains(stderr.String(), s) {
				t.Errorf("%s: no %q in stderr:\n%s", c.name, s, stderr.String())
			}
		}
		if status != 0 && c.name != "not empty" {
			if _, err := os.Stat(c.out); err == nil {
				t.Errorf("%s: the directory was created", c.name)
			}
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "o8", "run")); !strings.Contains(string(b), "exec '"+self+"' run --parent-pid \"$PPID\" --notify-fd 3 '"+good+"'\n") {
		t.Errorf("run does not name this executable %s:\n%s", self, b)
	}
	elb, _ := exec.LookPath("execlineb")
	if b, _ := os.ReadFile(filepath.Join(dir, "o9", "run")); !strings.HasPrefix(string(b), "#!"+elb+" -P\n") {
		t.Errorf("--execline run:\n%s", b)
	}

	// A relative config path is made absolute.
	t.Chdir(dir)
	var stderr bytes.Buffer
	if st := s6.Run(s6.MainOptions{Config: "good.json"}, "o10", func(f string, a ...any) { fmt.Fprintf(&stderr, f+"\n", a...) }); st != 0 {
		t.Fatalf("status %d: %s", st, stderr.String())
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "o10", "run")); !strings.Contains(string(b), " '"+good+"'\n") {
		t.Errorf("relative config path not made absolute:\n%s", b)
	}
}
