// Package vmtest runs the real vmsup binary for tests: it builds it once,
// starts VMs from configs, and checks that nothing is left behind.
// Tests that use it need root; without root they fail, they do not skip.
//
// It is test infrastructure: no product package may import it. It must
// remove only what its own test created (names carry VMSUP_TEST_TAG).
package vmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/cgroup"
	"vmsup/status"
	"vmsup/supervisor"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Root returns the module's root directory.
func Root() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		panic(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// Main runs a package's tests and removes the binaries built for them.
// Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func build() {
	// Not under /tmp: services with a private /tmp could not see them.
	buildDir, buildErr = os.MkdirTemp("/var/tmp", "vmsup-test-bin-")
	if buildErr != nil {
		return
	}
	for _, p := range []struct{ out, pkg string }{{"vmsup", "./cmd/vmsup"}, {"vmsup-exec", "./cmd/vmsup-exec"}, {"testprog", "./internal/testprog"}} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, p.out), p.pkg)
		cmd.Dir = Root()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build %s: %v\n%s", p.pkg, err, out)
			return
		}
	}
	// Services run as other users: they must be able to run the binaries.
	os.Chmod(buildDir, 0o755)
}

// BinDirEnv names a directory holding prebuilt vmsup, vmsup-exec and
// testprog. Where there is no Go toolchain (the host-image tier runs
// these tests inside a QEMU guest) Bin takes the binaries from there
// instead of building them.
const BinDirEnv = "VMSUP_TEST_BIN_DIR"

// Bin returns the path of a freshly built binary: "vmsup", "vmsup-exec"
// (built next to each other, as installed) or "testprog"; with
// VMSUP_TEST_BIN_DIR set, the prebuilt one in that directory.
func Bin(t testing.TB, name string) string {
	t.Helper()
	RequireRoot(t)
	if dir := os.Getenv(BinDirEnv); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", BinDirEnv, dir, err)
		}
		return p
	}
	buildOnce.Do(build)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, name)
}

// MustRun runs a command and returns its output (stdout and stderr,
// trimmed); it fails the test, with that output, unless it exits 0.
func MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// RequireRoot fails the test, loudly, when not run as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (real namespaces, cgroups and Landlock): run `go test` as root")
	}
}

// tag keeps test runs from different checkouts on one machine apart:
// VMSUP_TEST_TAG=x puts their cgroups and runtime dirs under names ending
// in "-x".
func tag() string {
	if t := os.Getenv("VMSUP_TEST_TAG"); t != "" {
		return "-" + t
	}
	return ""
}

// CgroupParent is where test VMs put their cgroups.
func CgroupParent(t testing.TB) string {
	mnt, err := cgroup.Mount()
	if err != nil {
		t.Fatalf("cgroup v2: %v", err)
	}
	return filepath.Join(mnt, "vmsup-test"+tag())
}

// RunDir is the directory under which test VMs get their runtime dirs.
func RunDir() string { return "/run/vmsup-test" + tag() }

// StatusDir is where VMs started by Start keep their status records
// (VMSUP_STATUS_DIR), apart from other checkouts' and the host's.
func StatusDir() string { return "/run/vmsup-status-test" + tag() }

// StatusEnv is the environment entry that points vmsup at StatusDir.
func StatusEnv() string { return status.DirEnv + "=" + StatusDir() }

// Config is a VM config as the tests write it.
type Config map[string]any

// NewConfig returns a config named name with its cgroup under the test
// parent, its runtime dir in a temporary directory, uid/gid 65534 and a
// short shutdown timeout.
func NewConfig(t testing.TB, name string, services ...map[string]any) Config {
	t.Helper()
	c := Config{
		"name":             name,
		"cgroup":           filepath.Join(CgroupParent(t), name),
		"runtime_dir":      filepath.Join(RunDir(), name),
		"uid":              65534,
		"gid":              65534,
		"shutdown_timeout": "5s",
		"services":         services,
	}
	// The VM's lock file (vmsup never removes one), once the test's VMs
	// have stopped: cleanups run last registered first.
	t.Cleanup(func() {
		if cg, ok := c["cgroup"].(string); ok {
			os.Remove(supervisor.ClaimPath(name, cg))
		}
	})
	return c
}

// Write writes c to a file in dir and returns its path.
func (c Config) Write(t testing.TB) string {
	t.Helper()
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "vm.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// VM is one running `vmsup run`.
type VM struct {
	t          testing.TB
	Cmd        *exec.Cmd
	Stderr     *Buffer
	Notify     *os.File // read end of --notify-fd, when asked for
	Name       string
	CgroupDir  string
	RuntimeDir string
	StatusDir  string // where its status record lives
	PidNS      string // the VM's PID namespace, once PID 1 is seen
	MntNS      string
	done       chan struct{}
	status     int
	underShell bool
}

// Options for Start.
type Options struct {
	Notify bool     // pass --notify-fd 3 with a pipe
	Args   []string // extra flags before CONFIG
	Env    []string
	// UnderShell starts vmsup from a shell that waits for it and passes
	// its own PID as --parent-pid; VM.Cmd is then that shell.
	UnderShell bool
	// Wrap is a command that sets something up and then execs its
	// arguments (vmsup and its own): vmsup keeps the PID Cmd started.
	Wrap []string
	// Cgroup, a cgroup v2 directory, is where vmsup starts (for
	// measuring the outer stage's CPU time on its own).
	Cgroup *os.File
}

// Start runs `vmsup run` on c.
func Start(t testing.TB, c Config, o Options) *VM {
	t.Helper()
	bin := Bin(t, "vmsup")
	os.MkdirAll(RunDir(), 0o755)
	args := []string{"run"}
	vm := &VM{t: t, Stderr: &Buffer{}, Name: c["name"].(string), done: make(chan struct{}), StatusDir: StatusDir()}
	vm.CgroupDir, _ = c["cgroup"].(string)
	vm.RuntimeDir, _ = c["runtime_dir"].(string)
	cmd := exec.Command(bin)
	if o.Notify && o.UnderShell {
		t.Fatal("vmtest: Notify and UnderShell together are not supported")
	}
	if o.Notify {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.ExtraFiles = []*os.File{w}
		vm.Notify = r
		args = append(args, "--notify-fd", "3")
		defer w.Close()
	}
	args = append(args, o.Args...)
	args = append(args, c.Write(t))
	cmd.Args = append([]string{"vmsup"}, args...)
	if o.UnderShell {
		cmd = exec.Command("/bin/sh", append([]string{"-c", `"$0" run --parent-pid $$ "$@" & wait`, bin}, args[1:]...)...)
	}
	if len(o.Wrap) > 0 {
		if o.UnderShell {
			t.Fatal("vmtest: Wrap and UnderShell together are not supported")
		}
		ew := cmd.ExtraFiles
		cmd = exec.Command(o.Wrap[0], append(append(o.Wrap[1:len(o.Wrap):len(o.Wrap)], bin), args...)...)
		cmd.ExtraFiles = ew
	}
	// As the run script of `vmsup s6-servicedir` starts it.
	cmd.Env = append(append(os.Environ(), StatusEnv(), "GOMAXPROCS=1"), o.Env...)
	if o.Cgroup != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(o.Cgroup.Fd())}
	}
	// Its output through a pipe of our own, read in Go's poller, and its
	// end awaited on a pidfd there too: exec.Cmd would give each VM a
	// copying goroutine and a thread blocked in waitid(2), 1,000 threads
	// for BenchmarkManyVMs' 1,000 VMs, whose costs are not vmsup's (an
	// s6-supervise has one thread).
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		out.Close()
		t.Fatal(err)
	}
	vm.Cmd, vm.underShell = cmd, o.UnderShell
	copied := make(chan struct{})
	go func() { io.Copy(vm.Stderr, out); out.Close(); close(copied) }()
	go func() {
		ws, err := waitExit(cmd.Process.Pid)
		if err != nil {
			panic(fmt.Sprintf("vmtest: waiting for vmsup (pid %d): %v", cmd.Process.Pid, err))
		}
		vm.status = ws.ExitStatus()
		if ws.Signaled() {
			vm.status = 128 + int(ws.Signal())
		}
		<-copied // as exec.Cmd.Wait: the output is whole once vmsup is gone
		close(vm.done)
	}()
	t.Cleanup(func() {
		select {
		case <-vm.done:
		default:
			cmd.Process.Kill()
			<-vm.done
		}
		if t.Failed() {
			t.Logf("vmsup output:\n%s", vm.Stderr.String())
		}
	})
	return vm
}

// waitExit reaps the child pid once its pidfd says it has exited,
// waiting in Go's poller rather than in a thread of its own.
func waitExit(pid int) (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return ws, fmt.Errorf("pidfd_open: %w", err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return ws, err
	}
	var werr error
	err = rc.Read(func(uintptr) bool {
		for {
			got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			werr = err
			return got == pid || err != nil // readable: exited; until then nothing to reap
		}
	})
	if err == nil {
		err = werr
	}
	return ws, err
}

// Attach returns a VM for c that something else (s6) starts, for
// PID1 and the leftover checks.
func Attach(t testing.TB, c Config) *VM {
	vm := &VM{t: t, Stderr: &Buffer{}, Name: c["name"].(string), done: make(chan struct{}), StatusDir: status.DefaultDir}
	vm.CgroupDir, _ = c["cgroup"].(string)
	vm.RuntimeDir, _ = c["runtime_dir"].(string)
	return vm
}

// Run starts c and waits for it to end on its own.
func Run(t testing.TB, c Config, timeout time.Duration) (*VM, int) {
	vm := Start(t, c, Options{})
	return vm, vm.Wait(timeout)
}

// Wait waits for vmsup to exit and returns its status (128+signal when
// killed). It fails the test after timeout.
func (vm *VM) Wait(timeout time.Duration) int {
	vm.t.Helper()
	select {
	case <-vm.done:
		return vm.status
	case <-time.After(timeout):
		vm.t.Fatalf("vmsup did not exit within %v; output:\n%s", timeout, vm.Stderr.String())
		return -1
	}
}

// Done is closed when vmsup has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Signal sends sig to the outer vmsup.
func (vm *VM) Signal(sig syscall.Signal) {
	vm.Cmd.Process.Signal(sig)
}

// WaitFor waits until the output contains s.
func (vm *VM) WaitFor(s string, timeout time.Duration) {
	vm.t.Helper()
	if !vm.Stderr.WaitFor(s, timeout) {
		vm.t.Fatalf("no %q in vmsup's output within %v:\n%s", s, timeout, vm.Stderr.String())
	}
}

// PID1 returns the host PID of the VM's PID 1 (the inner vmsup), and
// records its namespaces for AssertClean.
func (vm *VM) PID1() int {
	vm.t.Helper()
	pid := vm.FindPID1(10*time.Second, 10*time.Millisecond)
	if pid == 0 {
		vm.t.Fatalf("no PID 1 in %s/supervisor", vm.CgroupDir)
	}
	return pid
}

// FindPID1 is PID1 for tests where PID 1 may never appear (vmsup was
// killed early): it looks every pause until timeout and returns 0 if
// there is none. PID 1 is the outer vmsup's child when the test started
// vmsup itself (found even before it is moved into the VM's cgroup),
// else the process in the VM's supervisor cgroup.
func (vm *VM) FindPID1(timeout, pause time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		pids, _ := cgroup.Procs(filepath.Join(vm.CgroupDir, "supervisor"))
		if vm.Cmd != nil && !vm.underShell {
			pids = childrenInNewPidNS(vm.Cmd.Process.Pid)
		}
		if len(pids) == 1 {
			vm.PidNS = vm.holdNS(pids[0], "pid")
			vm.MntNS = vm.holdNS(pids[0], "mnt")
			return pids[0]
		}
		if time.Now().After(deadline) {
			return 0
		}
		time.Sleep(pause)
	}
}

// childrenInNewPidNS lists the child processes of pid (forked by any of
// its threads) that are in another PID namespace: PID 1, not the short
// child Go's os package forks once to probe for pidfd support.
func childrenInNewPidNS(pid int) []int {
	var out []int
	own, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, w := range strings.Fields(string(b)) {
			ns, err := os.Readlink("/proc/" + w + "/ns/pid")
			if c, _ := strconv.Atoi(w); c > 0 && err == nil && ns != own {
				out = append(out, c)
			}
		}
	}
	return out
}

// holdNS returns the name of a namespace of pid ("pid:[4026532177]") and
// keeps it open until the test ends. Namespace inode numbers are reused
// once a namespace is freed, so without the hold a later VM (of a test
// running in parallel) could be taken for this one's leftover.
func (vm *VM) holdNS(pid int, kind string) string {
	p := fmt.Sprintf("/proc/%d/ns/%s", pid, kind)
	name, err := os.Readlink(p)
	if err != nil {
		return ""
	}
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	if n, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd())); n != name {
		f.Close() // pid died and its number was reused meanwhile
		return ""
	}
	vm.t.Cleanup(func() { f.Close() })
	return name
}

// Leftovers lists what the VM left behind: processes in its PID or mount
// namespace, its cgroup, its runtime directory.
func (vm *VM) Leftovers() []string {
	var left []string
	if vm.PidNS != "" || vm.MntNS != "" {
		procs, _ := filepath.Glob("/proc/[0-9]*")
		for _, p := range procs {
			pidns, _ := os.Readlink(p + "/ns/pid")
			mntns, _ := os.Readlink(p + "/ns/mnt")
			if (vm.PidNS != "" && pidns == vm.PidNS) || (vm.MntNS != "" && mntns == vm.MntNS) {
				if reapedOutside(p, vm.PidNS) {
					continue
				}
				comm, _ := os.ReadFile(p + "/comm")
				left = append(left, fmt.Sprintf("process %s (%s)", filepath.Base(p), strings.TrimSpace(string(comm))))
			}
		}
	}
	if vm.CgroupDir != "" {
		if _, err := os.Stat(vm.CgroupDir); err == nil {
			left = append(left, "cgroup "+vm.CgroupDir)
		}
		left = append(left, holders(vm.CgroupDir)...)
		if vm.Name != "" {
			left = append(left, holders(supervisor.ClaimPath(vm.Name, vm.CgroupDir))...)
		}
	}
	if vm.RuntimeDir != "" {
		if _, err := os.Lstat(vm.RuntimeDir); err == nil {
			left = append(left, "runtime dir "+vm.RuntimeDir)
		}
	}
	if vm.StatusDir != "" {
		if _, err := os.Lstat(filepath.Join(vm.StatusDir, vm.Name)); err == nil {
			left = append(left, "status record "+filepath.Join(vm.StatusDir, vm.Name))
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if vm.RuntimeDir != "" && bytes.Contains(mi, []byte(vm.RuntimeDir)) {
		left = append(left, "mount under "+vm.RuntimeDir)
	}
	return left
}

// holders lists the vmsup processes (either stage) that still hold the
// file dir open: both stages keep the VM's lock file open for their
// whole life. This finds them even when their namespaces were never seen
// (vmsup killed while starting) or after PID 1 left the VM's cgroup to
// remove it.
func holders(dir string) []string {
	var left []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		comm, _ := os.ReadFile(p + "/comm")
		if c := strings.TrimSpace(string(comm)); c != "vmsup" && c != "vmsup-pid1" {
			continue
		}
		fds, _ := filepath.Glob(p + "/fd/*") // none for a zombie
		for _, fd := range fds {
			if l, _ := os.Readlink(fd); l == dir || l == dir+" (deleted)" {
				left = append(left, fmt.Sprintf("process %s (%s) holding %s", filepath.Base(p), strings.TrimSpace(string(comm)), dir))
				break
			}
		}
	}
	return left
}

// reapedOutside reports whether the process at p is a zombie whose
// parent is outside the VM: it is dead, holds no mount or memory, and
// only waits for the host's init (or the test) to reap it. A zombie
// whose parent is in the VM is a reaping failure and counts.
func reapedOutside(p, pidns string) bool {
	st, err := os.ReadFile(p + "/stat")
	if err != nil {
		return true // gone meanwhile
	}
	i := bytes.LastIndexByte(st, ')')
	f := strings.Fields(string(st[i+1:]))
	if len(f) < 2 || f[0] != "Z" {
		return false
	}
	ns, _ := os.Readlink("/proc/" + f[1] + "/ns/pid")
	return ns != pidns
}

// SharedDir returns a temporary directory that every user may use, for
// services that run as other users.
func SharedDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/var/tmp", "vmsup-test-shared-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o1777)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// AssertClean fails the test if anything is left within grace.
func (vm *VM) AssertClean(grace time.Duration) {
	vm.t.Helper()
	deadline := time.Now().Add(grace)
	for {
		left := vm.Leftovers()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			vm.t.Fatalf("left behind after %v: %s", grace, strings.Join(left, "; "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Buffer is a goroutine-safe output buffer that can be waited on.
type Buffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// WaitFor reports whether s appeared within timeout.
func (b *Buffer) WaitFor(s string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		b.mu.Lock()
		if strings.Contains(b.b.String(), s) {
			b.mu.Unlock()
			return true
		}
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			return false
		}
	}
}

// StatusCmd runs `vmsup status ARGS` as an operator would, against
// StatusDir, and returns its standard output, standard error and exit
// status.
func StatusCmd(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(Bin(t, "vmsup"), append([]string{"status"}, args...)...)
	cmd.Env = append(os.Environ(), StatusEnv())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}
