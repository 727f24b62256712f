package services_test

import (
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/internal/vmtest"
	"vmsup/seccomp"
)

// syscallAttack names one attempt of testprog's syscall-attacks.
var syscallAttacks = []string{
	"open_by_handle_at past a masked path",
	"bpf map create",
	"perf_event_open",
	"userfaultfd",
	"mount tmpfs",
	"unshare",
	"unshare through the i386 entry",
	"clear the user keyring",
}

// i386Entry reports whether this kernel has the i386 system call entry
// (IA32 emulation): the host's has not, the host image's kernels have.
// Without it the i386 attack is refused by the kernel in every run.
func i386Entry(t *testing.T) bool {
	out, err := exec.Command(vmtest.Bin(t, "testprog"), "i386-unshare").CombinedOutput()
	if err == nil {
		return true
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 3 {
		t.Log("this kernel has no i386 entry: the i386 attack is refused by the kernel itself")
		return false
	}
	t.Fatalf("probing the i386 entry as root: %v %s", err, out)
	return false
}

// want is what an attempt must give: blocked with EPERM by the filter,
// or ESCAPED without it; the i386 attempt where the kernel has no i386
// entry is refused by the kernel either way.
func wantAttempt(t *testing.T, attack string, filtered bool) string {
	if attack == "unshare through the i386 entry" && !i386Entry(t) {
		return "blocked (no i386 entry in this kernel)"
	}
	if filtered {
		return "blocked (operation not permitted)"
	}
	return "ESCAPED"
}

// syscallDuel runs an attacker holding the capabilities each attack
// needs (CAP_DAC_READ_SEARCH, CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN) next
// to a keeper of the same uid with a key in their user keyring; allow is
// the attacker's syscalls.allow (nil: the default filter). It returns the
// attacker's outcome per attempt and vmsup's output.
func syscallDuel(t *testing.T, name string, allow []string) (map[string]string, string) {
	prog := vmtest.Bin(t, "testprog")
	dir := vmtest.SharedDir(t)
	// A root-only secret under a masked directory; the attacker gets its
	// handle (which on ext4 is inode and generation, guessable).
	masked := filepath.Join(dir, "masked")
	if err := os.Mkdir(masked, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(masked, "secret")
	if err := os.WriteFile(secret, []byte("masked-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, secret, 0)
	if err != nil {
		t.Fatal(err)
	}
	handle := strconv.Itoa(int(h.Type())) + ":" + hex.EncodeToString(h.Bytes())
	// A uid of this test's own: the user keyring belongs to the uid.
	const uid = 1012
	attacker := map[string]any{
		"name": "attacker", "argv": []string{prog, "syscall-attacks", dir, dir, handle},
		"uid": uid, "gid": uid,
		"capabilities": []string{"CAP_DAC_READ_SEARCH", "CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN"},
	}
	if allow != nil {
		attacker["syscalls"] = map[string]any{"allow": allow}
	}
	keeper := map[string]any{
		"name": "keeper", "argv": []string{prog, "keeper", dir}, "uid": uid, "gid": uid,
		"syscalls": map[string]any{"allow": []string{"@keyring"}},
	}
	c := vmtest.NewConfig(t, name, keeper, attacker)
	c["mount"] = map[string]any{"masked_paths": []string{masked}}
	vm := vmtest.Start(t, c, vmtest.Options{})
	waitOrExit(t, vm, "attacker: own filter:", 60*time.Second)
	waitOrExit(t, vm, "keeper: key", 10*time.Second)
	out := vm.Stderr.String()
	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(10 * time.Second); st != 0 {
		t.Fatalf("status %d:\n%s", st, out)
	}
	vm.AssertClean(time.Second)
	res := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if a, ok := strings.CutPrefix(line, "attacker: attempt "); ok {
			i := strings.Index(a, ": ")
			res[a[:i]] = a[i+2:]
		}
	}
	if len(res) != len(syscallAttacks) {
		t.Fatalf("%d attempts, want %d:\n%s", len(res), len(syscallAttacks), out)
	}
	if !strings.Contains(out, "attacker: own filter: installed and acting") {
		t.Errorf("the service could not install a seccomp filter of its own:\n%s", out)
	}
	return res, out
}

// The default filter refuses every attack with EPERM, although the
// attacker holds the capability each needs: open_by_handle_at past a
// masked directory, bpf, perf_event_open, userfaultfd, mount, unshare
// (also through the i386 entry, which a filter matching only x86_64's
// numbers would let fall to its default, allow) and clearing the user keyring it shares with a service of
// the same uid, whose key stays. The service can still stack a filter
// of its own.
func TestSyscallFilterRefuses(t *testing.T) {
	res, out := syscallDuel(t, "sysfilter", nil)
	for _, a := range syscallAttacks {
		if got, want := res[a], wantAttempt(t, a, true); got != want {
			t.Errorf("%s: %s, want %s", a, got, want)
		}
	}
	if !strings.Contains(out, "keeper: key kept") {
		t.Errorf("the keeper's key is gone:\n%s", out)
	}
}

// Control: with every group lifted (open_by_handle_at by its name, the
// rest as groups) each attack gets through: the masked secret is read by
// handle and the keeper's key is cleared from the shared user keyring.
func TestSyscallFilterAllowLifts(t *testing.T) {
	allow := []string{"open_by_handle_at"}
	for _, g := range seccomp.Groups {
		if g.Name != "@file-handles" {
			allow = append(allow, g.Name)
		}
	}
	res, out := syscallDuel(t, "sysfilter-open", allow)
	for _, a := range syscallAttacks {
		if got, want := res[a], wantAttempt(t, a, false); got != want {
			t.Errorf("%s: %s, want %s with the filter lifted", a, got, want)
		}
	}
	if !strings.Contains(out, `attacker: read by handle: "masked-secret"`) {
		t.Errorf("open_by_handle_at did not read the masked secret:\n%s", out)
	}
	if !strings.Contains(out, "keeper: key gone") {
		t.Errorf("the keeper's key survived a clear of the user keyring:\n%s", out)
	}
}

// syscalls.allow of one name lifts exactly that call: open_by_handle_at
// (what the Rust virtiofsd's --inode-file-handles=mandatory needs) works,
// bpf stays refused.
func TestSyscallFilterAllowOneName(t *testing.T) {
	res, out := syscallDuel(t, "sysfilter-fh", []string{"open_by_handle_at"})
	if got := res["open_by_handle_at past a masked path"]; got != "ESCAPED" {
		t.Errorf("open_by_handle_at: %s, want allowed", got)
	}
	for _, a := range syscallAttacks[1:] {
		if got, want := res[a], wantAttempt(t, a, true); got != want {
			t.Errorf("%s: %s, want %s", a, got, want)
		}
	}
	if !strings.Contains(out, "keeper: key kept") {
		t.Errorf("the keeper's key is gone:\n%s", out)
	}
}
