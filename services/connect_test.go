package services_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/internal/vmtest"
	"vmsup/landlock"
)

// A service with `connect` reaches the pathname sockets it lists and,
// on Landlock ABI 9 and later (LANDLOCK_ACCESS_FS_RESOLVE_UNIX, Linux
// 7.1), no other: here a socket in a directory every user may enter,
// which neither file modes nor the mount view guard. Controls: a sibling
// without `connect` reaches it on every kernel, and so does the service
// itself on a kernel before ABI 9 (the host's 7, the host image's 6.12),
// where only the mount view applies.
func TestConnectListOnly(t *testing.T) {
	prog := vmtest.Bin(t, "testprog")
	dir := vmtest.SharedDir(t)
	allowed, other := filepath.Join(dir, "allowed.sock"), filepath.Join(dir, "other.sock")
	for _, p := range []string{allowed, other} {
		l, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		os.Chmod(p, 0o777)
	}
	listed := map[string]any{"name": "listed", "argv": []string{prog, "connect-each", allowed, other},
		"connect": []string{allowed}}
	free := map[string]any{"name": "free", "argv": []string{prog, "connect-each", other}}
	vm := vmtest.Start(t, vmtest.NewConfig(t, "connect", listed, free), vmtest.Options{})
	waitOrExit(t, vm, "listed: connect done", 30*time.Second)
	waitOrExit(t, vm, "free: connect done", 30*time.Second)
	out := vm.Stderr.String()
	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(10 * time.Second); st != 0 {
		t.Fatalf("status %d:\n%s", st, out)
	}
	vm.AssertClean(time.Second)

	abi := landlock.ABI()
	want := []string{"listed: connect " + allowed + ": ok", "free: connect " + other + ": ok"}
	if abi >= landlock.ResolveUnixABI {
		want = append(want, "listed: connect "+other+": refused (permission denied)")
	} else {
		want = append(want, "listed: connect "+other+": ok")
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("Landlock ABI %d: no %q in:\n%s", abi, w, out)
		}
	}
	t.Logf("Landlock ABI %d: %s", abi, map[bool]string{true: "the unlisted socket is refused",
		false: "control: before ABI 9 only the mount view guards pathname sockets"}[abi >= landlock.ResolveUnixABI])
}
