package supervisor_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/internal/vmtest"
	"vmsup/owned"
)

// What vmsup may touch (docs/reference.md): a runtime dir or cgroup that exists
// at start without this VM's mark is refused with 100 and left exactly as
// it was; what a crash of this VM left (marked) is removed, without
// following a link out of it or crossing into a file system mounted in it.

// foreignTree builds, at dir, a directory that is not vmsup's: a file, a
// subdirectory with a tmpfs mounted on it (holding a file), and links
// pointing out of it to a file and a directory outside. It returns the
// outside directory; the test's cleanup unmounts and removes both.
func foreignTree(t *testing.T, dir string) string {
	t.Helper()
	out := vmtest.SharedDir(t)
	must(t, os.WriteFile(filepath.Join(out, "victim"), []byte("keep"), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "mnt"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "file"), []byte("mine"), 0o644))
	must(t, os.Symlink(filepath.Join(out, "victim"), filepath.Join(dir, "link-file")))
	must(t, os.Symlink(out, filepath.Join(dir, "link-dir")))
	must(t, unix.Mount("tmpfs", filepath.Join(dir, "mnt"), "tmpfs", 0, "size=64k"))
	must(t, os.WriteFile(filepath.Join(dir, "mnt", "inside"), []byte("mounted"), 0o644))
	t.Cleanup(func() {
		unix.Unmount(filepath.Join(dir, "mnt"), unix.MNT_DETACH)
		os.RemoveAll(dir)
	})
	return out
}

// listing describes every entry under dir (not following links or
// leaving the file system mounted on mnt, which it lists too).
func listing(t *testing.T, dirs ...string) string {
	var lines []string
	for _, dir := range dirs {
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				lines = append(lines, p+" "+err.Error())
				return nil
			}
			l := p + " " + fi.Mode().String()
			if fi.Mode().IsRegular() {
				b, _ := os.ReadFile(p)
				l += " " + string(b)
			}
			if fi.Mode()&os.ModeSymlink != 0 {
				tgt, _ := os.Readlink(p)
				l += " -> " + tgt
			}
			lines = append(lines, l)
			return nil
		})
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// refused runs c and wants status 100 and exactly the line want.
func refused(t *testing.T, c vmtest.Config, want string) {
	t.Helper()
	vm, st := vmtest.Run(t, c, 20*time.Second)
	out := strings.TrimSpace(vm.Stderr.String())
	if st != 100 || out != want {
		t.Fatalf("status %d, want 100 and\n%s\ngot:\n%s", st, want, out)
	}
}

// A runtime dir that exists and is not this VM's (unmarked, or marked for
// another VM), with a mount in it and links pointing out of it, survives
// intact: status 100, one line, and the VM's cgroup is not created.
func TestForeignRuntimeDirRefused(t *testing.T) {
	for _, markedFor := range []string{"", "other-vm"} {
		t.Run("mark="+markedFor, func(t *testing.T) {
			c := vmtest.NewConfig(t, "foreign-rd", sh("a", "exec sleep 100"))
			rd := c["runtime_dir"].(string)
			out := foreignTree(t, rd)
			if markedFor != "" {
				must(t, owned.Mark(rd, markedFor))
			}
			before := listing(t, rd, out)
			refused(t, c, "vmsup: runtime dir "+rd+" exists and was not made by vmsup for VM foreign-rd: it is left as it is; remove it or choose another runtime_dir")
			if after := listing(t, rd, out); after != before {
				t.Errorf("the foreign runtime dir changed:\n--- before\n%s\n--- after\n%s", before, after)
			}
			if _, err := os.Stat(c["cgroup"].(string)); err == nil {
				t.Error("the VM's cgroup was created")
			}
		})
	}
}

// A cgroup that exists and is not this VM's, with a live process in it,
// survives intact: the process lives on, status 100.
func TestForeignCgroupRefused(t *testing.T) {
	c := vmtest.NewConfig(t, "foreign-cg", sh("a", "exec sleep 100"))
	cg := c["cgroup"].(string)
	must(t, os.MkdirAll(cg, 0o755))
	sleeper := exec.Command("/bin/sleep", "100")
	must(t, sleeper.Start())
	t.Cleanup(func() {
		sleeper.Process.Kill()
		sleeper.Wait()
		os.Remove(cg)
	})
	must(t, os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0))
	refused(t, c, "vmsup: cgroup "+cg+" exists and was not made by vmsup for VM foreign-cg: it is left as it is; remove it or choose another cgroup")
	if err := sleeper.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the foreign cgroup's process is gone: %v", err)
	}
	if procs := readFile(filepath.Join(cg, "cgroup.procs")); procs != strconv.Itoa(sleeper.Process.Pid) {
		t.Errorf("the foreign cgroup's processes are %q", procs)
	}
	if _, err := os.Lstat(c["runtime_dir"].(string)); err == nil {
		t.Error("the VM's runtime dir was created")
	}
}

// What a crash of this VM left (marked for it) is removed at the next
// start, a live process in the cgroup included, but the links in the
// runtime dir are removed without their targets, and a file system
// mounted in it is left with what it holds: the start then fails (111)
// naming it.
func TestStaleStateNotFollowed(t *testing.T) {
	c := vmtest.NewConfig(t, "stale-links", sh("a", "exec sleep 100"))
	rd, cg := c["runtime_dir"].(string), c["cgroup"].(string)
	out := foreignTree(t, rd)
	must(t, owned.Mark(rd, "stale-links"))
	must(t, os.MkdirAll(filepath.Join(cg, "svc.a"), 0o755))
	must(t, owned.Mark(cg, "stale-links"))
	sleeper := exec.Command("/bin/sleep", "100")
	must(t, sleeper.Start())
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	must(t, os.WriteFile(filepath.Join(cg, "svc.a", "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0))
	outBefore := listing(t, out)

	vm, st := vmtest.Run(t, c, 20*time.Second)
	msg := strings.TrimSpace(vm.Stderr.String())
	if st != 111 || !strings.Contains(msg, "stale runtime dir: left in place: "+rd+"/mnt: a mount point") {
		t.Fatalf("status %d, want 111 naming the mount point:\n%s", st, msg)
	}
	if ws, _ := sleeper.Process.Wait(); ws == nil || ws.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the stale cgroup's process was not killed: %v", ws)
	}
	if listing(t, out) != outBefore {
		t.Error("a link out of the stale runtime dir was followed")
	}
	if got := listing(t, rd); got != rd+" "+"drwxr-xr-x\n"+rd+"/mnt dtrwxrwxrwx\n"+rd+"/mnt/inside -rw-r--r-- mounted" {
		t.Errorf("the stale runtime dir holds:\n%s", got)
	}
	if _, err := os.Stat(cg); err == nil {
		t.Error("the stale cgroup is still there")
	}
}
