package cgroup

import (
	"strings"
	"testing"
)

// The parser is tested on text too, for what this machine does not show:
// escaped mount points, sub-tree binds listed first, no cgroup2 at all.
func TestParseCgroup2Mount(t *testing.T) {
	const info = `22 1 0:21 / /proc rw,nosuid - proc proc rw
50 22 0:40 /vm /srv/cg\040bind rw - cgroup2 cgroup2 rw
40 30 0:37 / /sys/fs/cgroup/my\040v2\134dir rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
`
	m, err := ParseMountinfo(strings.NewReader(info))
	if err != nil || m.Point != `/sys/fs/cgroup/my v2\dir` || m.Root != "/" {
		t.Errorf("root mount: got %+v, %v", m, err)
	}
	m, err = ParseMountinfo(strings.NewReader(strings.SplitAfter(info, "\n")[1]))
	if err != nil || m.Point != "/srv/cg bind" || m.Root != "/vm" {
		t.Errorf("bind only: got %+v, %v", m, err)
	}
	if _, err := ParseMountinfo(strings.NewReader("22 1 0:21 / /proc rw - proc proc rw\n")); err == nil {
		t.Error("no cgroup2 line: want an error")
	}
	for in, want := range map[string]string{`a\040b`: "a b", `tab\011`: "tab\t", `\1`: `\1`, `x\09`: `x\09`, `plain`: "plain"} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// PID 1 is told the mount (KnownMount) and never reads mountinfo for it;
// "" leaves it to be read from mountinfo.
func TestKnownMount(t *testing.T) {
	saved := mountPoint.Load()
	t.Cleanup(func() { mountPoint.Store(saved) })
	mountPoint.Store(nil)
	KnownMount("")
	if mountPoint.Load() != nil {
		t.Fatal(`KnownMount("") recorded a mount`)
	}
	KnownMount("/told/cgroup2")
	if p, err := Mount(); err != nil || p != "/told/cgroup2" {
		t.Fatalf("Mount() = %q, %v; want the mount it was told", p, err)
	}
}
