package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vmsup/internal/vmtest"
)

// withLauncher puts vmsup-exec next to the test binary, as it is
// installed next to vmsup: validate checks for it (supervisor.Problems).
func withLauncher(t *testing.T) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(filepath.Dir(self), "vmsup-exec")
	if _, err := os.Stat(p); err == nil {
		return
	}
	if err := os.Symlink(vmtest.Bin(t, "vmsup-exec"), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(p) })
}

// The CLI table: every usage error says what was wrong in one line, then
// the command's usage, every line prefixed "vmsup: ", status 100; help
// goes to standard output with status 0.
func TestCLI(t *testing.T) {
	withLauncher(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"name":"x","uid":1000,"gid":1000,"services":[{"name":"a","argv":["/bin/true"]}]}`), 0o644)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"name":"X","services":[]}`), 0o644)

	const sdUsage = "vmsup: usage: vmsup s6-servicedir [--config CONFIG] [--config-json JSON] [--execline] [--log LOGDIR] [--s6-log PATH] OUTDIR\n"
	const runUsage = "vmsup: usage: vmsup run [--parent-pid PID] [--notify-fd N] CONFIG\n"
	cases := []struct {
		name   string
		args   []string
		env    []string
		status int
		stdout string // substring; "" means empty
		stderr string // exact
	}{
		{"no command", nil, nil, 100, "", "vmsup: no command\nvmsup: usage: vmsup COMMAND [ARGS] (vmsup help lists the commands)\n"},
		{"unknown command", []string{"frobnicate"}, nil, 100, "", "vmsup: unknown command \"frobnicate\"\nvmsup: usage: vmsup COMMAND [ARGS] (vmsup help lists the commands)\n"},
		{"--help", []string{"--help"}, nil, 0, "usage: vmsup COMMAND [ARGS]\n", ""},
		{"-h", []string{"-h"}, nil, 0, "\nCommands:\n  run            supervise one VM", ""},
		{"help", []string{"help"}, nil, 0, "  status         the state of a running VM", ""},
		{"help run", []string{"help", "run"}, nil, 0, "usage: vmsup run [--parent-pid PID] [--notify-fd N] CONFIG\n\nSupervise one VM", ""},
		{"help unknown", []string{"help", "nope"}, nil, 100, "", "vmsup: help: unknown command \"nope\"\nvmsup: usage: vmsup help [COMMAND]\n"},
		{"help two", []string{"help", "run", "check"}, nil, 100, "", "vmsup: help: at most one COMMAND\nvmsup: usage: vmsup help [COMMAND]\n"},
		{"run --help", []string{"run", "--help"}, nil, 0, "  --parent-pid PID   the s6-supervise that started vmsup", ""},
		{"run -h after CONFIG", []string{"run", good, "-h"}, nil, 0, "usage: vmsup run", ""},
		{"validate --help", []string{"validate", "--help"}, nil, 0, "usage: vmsup validate CONFIG\n", ""},
		{"s6-servicedir --help", []string{"s6-servicedir", "--help"}, nil, 0, "usage: vmsup s6-servicedir [--config CONFIG]", ""},
		{"s6-servicedir no OUTDIR", []string{"s6-servicedir", "--config", good}, nil, 100, "", "vmsup: s6-servicedir: missing OUTDIR\n" + sdUsage},
		{"s6-servicedir two OUTDIRs", []string{"s6-servicedir", "--config", good, dir + "/a", dir + "/b"}, nil, 100, "", "vmsup: s6-servicedir: want one OUTDIR, got 2 operands: " + dir + "/a " + dir + "/b\n" + sdUsage},
		{"s6-servicedir no config", []string{"s6-servicedir", dir + "/a"}, nil, 100, "", "vmsup: s6-servicedir: give one of --config CONFIG and --config-json JSON\n" + sdUsage},
		{"s6-servicedir both configs", []string{"s6-servicedir", "--config", good, "--config-json", "{}", dir + "/a"}, nil, 100, "", "vmsup: s6-servicedir: give one of --config CONFIG and --config-json JSON\n" + sdUsage},
		{"s6-servicedir config stdin", []string{"s6-servicedir", "--config", "-", dir + "/a"}, nil, 100, "", "vmsup: s6-servicedir: --config -: the run script needs a file, not standard input\n" + sdUsage},
		{"s6-servicedir s6-log alone", []string{"s6-servicedir", "--config", good, "--s6-log", "/bin/s6-log", dir + "/a"}, nil, 100, "", "vmsup: s6-servicedir: --s6-log needs --log\n" + sdUsage},
		{"s6-servicedir single dash", []string{"s6-servicedir", "-config", good, dir + "/a"}, nil, 100, "", "vmsup: s6-servicedir: unknown option -config (options are --long, with two dashes)\n" + sdUsage},
		{"s6-servicedir options after OUTDIR", []string{"s6-servicedir", dir + "/ok", "--execline", "--config", good}, nil, 0, "", ""},
		{"s6-servicedir bad config", []string{"s6-servicedir", "--config", bad, dir + "/a"}, nil, 100, "", "vmsup: s6-servicedir: " + bad + ": name: must match ^[a-z0-9][a-z0-9_-]{0,63}$\nvmsup: s6-servicedir: " + bad + ": services: must not be empty\n"},
		{"run no CONFIG", []string{"run"}, nil, 100, "", "vmsup: run: missing CONFIG\n" + runUsage},
		{"run two CONFIGs", []string{"run", good, good}, nil, 100, "", "vmsup: run: want one CONFIG, got 2 operands: " + good + " " + good + "\n" + runUsage},
		{"run unknown option", []string{"run", "--frob", good}, nil, 100, "", "vmsup: run: unknown option --frob\n" + runUsage},
		{"run single-dash option", []string{"run", "-parent-pid", "1", good}, nil, 100, "", "vmsup: run: unknown option -parent-pid (options are --long, with two dashes)\n" + runUsage},
		{"run --parent-pid abc", []string{"run", "--parent-pid", "abc", good}, nil, 100, "", "vmsup: run: --parent-pid \"abc\": not a number\n" + runUsage},
		{"run --parent-pid=abc", []string{"run", "--parent-pid=abc", good}, nil, 100, "", "vmsup: run: --parent-pid \"abc\": not a number\n" + runUsage},
		{"run --parent-pid -3", []string{"run", "--parent-pid", "-3", good}, nil, 100, "", "vmsup: run: --parent-pid -3: not a PID\n" + runUsage},
		{"run --parent-pid without value", []string{"run", good, "--parent-pid"}, nil, 100, "", "vmsup: run: --parent-pid needs a value (PID)\n" + runUsage},
		{"run --notify-fd 1", []string{"run", "--notify-fd", "1", good}, nil, 100, "", "vmsup: run: --notify-fd 1: must be 3 or above\n" + runUsage},
		{"run --notify-fd x", []string{"run", "--notify-fd", "x", good}, nil, 100, "", "vmsup: run: --notify-fd \"x\": not a number\n" + runUsage},
		{"run --notify-fd closed", []string{"run", "--notify-fd", "987", good}, nil, 100, "", "vmsup: run: --notify-fd 987: bad file descriptor\n"},
		{"run bad ABI cap", []string{"run", good}, []string{"VMSUP_LANDLOCK_ABI_MAX=abc"}, 100, "", "vmsup: run: VMSUP_LANDLOCK_ABI_MAX=\"abc\": want a Landlock ABI number (0 or more)\n"},
		{"validate no CONFIG", []string{"validate"}, nil, 100, "", "vmsup: validate: missing CONFIG\nvmsup: usage: vmsup validate CONFIG\n"},
		{"validate ok", []string{"validate", good}, nil, 0, "", ""},
		{"validate bad", []string{"validate", bad}, nil, 100, "name: must match ^[a-z0-9][a-z0-9_-]{0,63}$\nservices: must not be empty\n", ""},
		{"validate --json", []string{"validate", "--json", good}, nil, 100, "", "vmsup: validate: unknown option --json\nvmsup: usage: vmsup validate CONFIG\n"},
		{"check two", []string{"check", good, good}, nil, 100, "", "vmsup: check: at most one CONFIG\nvmsup: usage: vmsup check [--json] [CONFIG]\n"},
		{"check --json=yes", []string{"check", "--json=yes"}, nil, 100, "", "vmsup: check: --json takes no value\nvmsup: usage: vmsup check [--json] [CONFIG]\n"},
		{"check bad ABI cap", []string{"check"}, []string{"VMSUP_LANDLOCK_ABI_MAX=abc"}, 100, "", "vmsup: check: VMSUP_LANDLOCK_ABI_MAX=\"abc\": want a Landlock ABI number (0 or more)\n"},
		{"check bad config", []string{"check", bad}, nil, 100, "", "vmsup: check: " + bad + ": name: must match ^[a-z0-9][a-z0-9_-]{0,63}$\nvmsup: check: " + bad + ": services: must not be empty\n"},
		{"check CONFIG on ABI 5", []string{"check", good}, []string{"VMSUP_LANDLOCK_ABI_MAX=5"}, 111, "cannot scope signals or abstract UNIX sockets (needs ABI 6, Linux 6.12)\nsummary: ", ""},
		{"status two", []string{"status", "a", "b"}, nil, 100, "", "vmsup: status: at most one NAME\nvmsup: usage: vmsup status [--json] [NAME]\n"},
		{"status bad name", []string{"status", "../etc"}, nil, 100, "", "vmsup: status: \"../etc\" is not a VM name\nvmsup: usage: vmsup status [--json] [NAME]\n"},
		{"status not running", []string{"status", "no-such-vm-i14"}, nil, 1, "", "vmsup: status: no-such-vm-i14: no such VM runs\n"},
		{"explain no CONFIG", []string{"explain"}, nil, 100, "", "vmsup: explain: missing CONFIG\nvmsup: usage: vmsup explain [--json] CONFIG\n"},
		{"explain bad config", []string{"explain", bad}, nil, 100, "", "vmsup: explain: " + bad + ": name: must match ^[a-z0-9][a-z0-9_-]{0,63}$\nvmsup: explain: " + bad + ": services: must not be empty\n"},
		{"explain --json", []string{"explain", "--json", good}, nil, 0, "\"same_uid_pairs\": []\n", ""},
		{"explain text", []string{"explain", good}, nil, 0, "\nverdict\n  a: ", ""},
		{"status none runs", []string{"status"}, nil, 0, "", ""},
		{"status --json none runs", []string{"status", "--json"}, nil, 0, "{\n  \"vms\": []\n}\n", ""},
		{"version extra", []string{"version", "x"}, nil, 100, "", "vmsup: version: no operands expected\nvmsup: usage: vmsup version\n"},
		{"version", []string{"version"}, nil, 0, "vmsup ", ""},
		{"--version", []string{"--version"}, nil, 0, "vmsup ", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, e := range c.env {
				k, v, _ := strings.Cut(e, "=")
				t.Setenv(k, v)
			}
			t.Setenv("VMSUP_STATUS_DIR", filepath.Join(dir, "status"))
			var out, errb bytes.Buffer
			st := cli(c.args, ioPair{&out, &errb})
			if st != c.status {
				t.Errorf("status %d, want %d", st, c.status)
			}
			if c.stdout == "" && out.Len() != 0 || !strings.Contains(out.String(), c.stdout) {
				t.Errorf("stdout %q, want it to contain %q", out.String(), c.stdout)
			}
			if errb.String() != c.stderr {
				t.Errorf("stderr:\n%s\nwant:\n%s", errb.String(), c.stderr)
			}
		})
	}
}

// Every command has a one-line description and its own help.
func TestCommandHelp(t *testing.T) {
	for _, c := range commands() {
		if c.desc == "" || strings.Contains(c.desc, "\n") {
			t.Errorf("%s: description %q", c.name, c.desc)
		}
		var out, errb bytes.Buffer
		if st := cli([]string{c.name, "--help"}, ioPair{&out, &errb}); st != 0 || errb.Len() != 0 || !strings.HasPrefix(out.String(), "usage: vmsup "+c.name) {
			t.Errorf("%s --help: %d %q %q", c.name, st, out.String(), errb.String())
		}
	}
}

// version names the revision: from the build's VCS stamp, else from the
// revision the Makefile passes.
func TestVersion(t *testing.T) {
	old := revision
	defer func() { revision = old }()
	revision = "0123abcd-modified"
	if got := versionString(); got != "vmsup dev (revision 0123abcd, modified)" {
		t.Errorf("%q", got)
	}
}

func TestMain(m *testing.M) { vmtest.Main(m) }
