package launcher

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"

	"vmsup/landlock"
)

// Exec is the launcher: it runs in the child forked by Start, already in
// the service's cgroup and its own mount namespace, and turns itself into
// the service. It never returns: on failure it reports on the error pipe
// and exits 127, like a shell that cannot run a command.
//
// The order matters:
//  1. descriptors: everything but 0-2 and the service's fds is marked
//     close-on-exec first, so nothing leaks whatever fails;
//  2. private /tmp and /dev/shm, while still root;
//  3. rlimits, while CAP_SYS_RESOURCE may still be held;
//  4. Landlock (which also sets no_new_privs), while the rule paths can
//     still be opened as root;
//  5. credentials and capabilities, on this one locked thread, which is
//     the thread that calls execve;
//  6. working directory as the service's user, so it must be reachable by it;
//  7. execve.
func Exec() {
	// Per-thread state (capabilities, bounding set, ambient set) must be
	// set on the thread that execs.
	runtime.LockOSThread()
	sp, err := decodeSpec()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmsup-exec: %v\n", err)
		os.Exit(127)
	}
	errPipe := os.NewFile(uintptr(sp.ErrFD), "error pipe")
	err = run(sp)
	fmt.Fprint(errPipe, err.Error())
	os.Exit(127)
}

func run(sp *Spec) error {
	if err := closeOthers(sp.Keep); err != nil {
		return fmt.Errorf("descriptors: %w", err)
	}
	if err := privateTmpfs(sp); err != nil {
		return err
	}
	if err := setRlimits(sp.Rlimits); err != nil {
		return err
	}
	syscall.Umask(sp.Umask)
	if sp.LandlockABI > 0 {
		if err := landlock.Restrict(sp.LandlockABI, sp.Paths); err != nil {
			return err
		}
	}
	if err := setCreds(sp); err != nil {
		return err
	}
	if err := syscall.Chdir(sp.Cwd); err != nil {
		return fmt.Errorf("cwd %s: %w", sp.Cwd, err)
	}
	env := sp.Env
	if sp.Listen > 0 {
		env = append(env, "LISTEN_PID="+strconv.Itoa(os.Getpid()))
	}
	err := syscall.Exec(sp.Path, sp.Argv, env)
	if err == syscall.EACCES && sp.Paths != nil {
		return fmt.Errorf("exec %s: %w (do landlock_paths.execute and read cover it?)", sp.Path, err)
	}
	return fmt.Errorf("exec %s: %w", sp.Path, err)
}
