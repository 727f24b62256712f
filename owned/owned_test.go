package owned

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// RemoveDir on the real kernel (root, a tmpfs of the test's own): links
// are removed and not followed, a bind mount of the same file system
// (same st_dev, which a device check would miss) and a mounted file are
// left and named, an unmarked or foreign-marked directory is not touched.
func TestRemoveDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (trusted.* extended attributes, mounts)")
	}
	base := t.TempDir()
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(base, unix.MNT_DETACH) })
	dir, out := filepath.Join(base, "vm"), filepath.Join(base, "outside")
	for _, d := range []string{dir + "/a/b", dir + "/bound", dir + "/fileparent", out} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(out+"/keep", []byte("keep"), 0o644))
	must(t, os.WriteFile(dir+"/a/b/f", nil, 0o644))
	must(t, os.WriteFile(dir+"/fileparent/target", nil, 0o644))
	must(t, os.Symlink(out, dir+"/a/link-dir"))
	must(t, os.Symlink(out+"/keep", dir+"/link-file"))
	must(t, unix.Mount(out, dir+"/bound", "", unix.MS_BIND, ""))
	t.Cleanup(func() { unix.Unmount(dir+"/bound", unix.MNT_DETACH) })
	must(t, unix.Mount(out+"/keep", dir+"/fileparent/target", "", unix.MS_BIND, ""))
	t.Cleanup(func() { unix.Unmount(dir+"/fileparent/target", unix.MNT_DETACH) })

	if err := RemoveDir(dir, "vm"); !errors.Is(err, ErrForeign) {
		t.Fatalf("unmarked: %v, want ErrForeign", err)
	}
	must(t, Mark(dir, "other"))
	if err := RemoveDir(dir, "vm"); !errors.Is(err, ErrForeign) {
		t.Fatalf("marked for another VM: %v, want ErrForeign", err)
	}
	if _, err := os.Stat(dir + "/a/b/f"); err != nil {
		t.Fatalf("a foreign directory was touched: %v", err)
	}
	must(t, Mark(dir, "vm"))
	err := RemoveDir(dir, "vm")
	want := "left in place: " + dir + "/bound: a mount point; " + dir + "/fileparent/target: device or resource busy"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if b, err := os.ReadFile(out + "/keep"); err != nil || string(b) != "keep" {
		t.Fatalf("a link or mount was followed: %q %v", b, err)
	}
	for _, gone := range []string{dir + "/a", dir + "/link-file"} {
		if _, err := os.Lstat(gone); err == nil {
			t.Errorf("%s survived", gone)
		}
	}
	if _, err := os.Stat(dir + "/bound/keep"); err != nil {
		t.Errorf("the bind mount's content is gone: %v", err)
	}
	if ok, err := Check(dir, "vm"); !ok || err != nil {
		t.Errorf("the directory holding what was left must stay, marked: %v %v", ok, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
