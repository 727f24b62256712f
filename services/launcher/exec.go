package launcher

import (
	"runtime"
	"strconv"
	"syscall"

	"vmsup/exit"
)

// Exec is the launcher: it runs in the child forked by Start, already in
// the service's cgroup and its own mount namespace, and turns itself into
// the service. It never returns: on failure it reports on the error pipe
// and exits 127 (exit.Launch), like a shell that cannot run a command.
//
// The order matters:
//  1. descriptors: everything but 0-2 and the service's fds is marked
//     close-on-exec first, so nothing leaks whatever fails;
//     then the service's network namespace is joined (setns), unless
//     it has the host's;
//  2. the view (view.go: a minimal /dev, /sys read-only, the VM's own
//     runtime dir alone), private /tmp and /dev/shm, and the cover that
//     refuses user namespaces, while still root;
//  3. rlimits, while CAP_SYS_RESOURCE may still be held, then the
//     service's umask;
//  4. Landlock: the rules on the new mounts, no_new_privs, then the
//     ruleset the supervisor built is enforced on this thread;
//  5. credentials and capabilities, on this same thread, then a session
//     keyring of the service's own;
//  6. working directory as the service's user, so it must be reachable by it;
//  7. the seccomp filter, last, since it refuses keyctl and friends;
//  8. execve.
//
// Everything from 4 on acts on the calling thread only, which is locked
// and is the thread that calls execve: execve keeps only its state and
// ends the runtime's other threads.
func Exec() {
	runtime.LockOSThread()
	sp, err := decodeSpec()
	if err != nil {
		syscall.Write(2, []byte("vmsup-exec: "+err.Error()+"\n"))
		syscall.Exit(exit.Launch)
	}
	err = run(sp)
	syscall.Write(sp.ErrFD, []byte(err.Error()))
	syscall.Exit(exit.Launch)
}

func run(sp *Spec) error {
	if err := closeOthers(sp.Keep); err != nil {
		return wrap("descriptors", err)
	}
	if err := joinNetNS(sp.NetNS); err != nil {
		return err
	}
	if err := setupView(sp); err != nil {
		return err
	}
	if err := privateTmpfs(sp); err != nil {
		return err
	}
	if !sp.UserNS {
		if err := coverRoot(); err != nil {
			return err
		}
	}
	if err := setRlimits(sp.Rlimits); err != nil {
		return err
	}
	syscall.Umask(sp.Umask)
	if err := restrict(sp); err != nil {
		return err
	}
	if err := setCreds(sp); err != nil {
		return err
	}
	if err := newSessionKeyring(); err != nil {
		return err
	}
	if err := syscall.Chdir(sp.Cwd); err != nil {
		return wrap("cwd "+sp.Cwd, err)
	}
	if err := loadFilter(sp.Filter); err != nil {
		return err
	}
	env := sp.Env
	if sp.Listen > 0 {
		env = append(env, "LISTEN_PID="+strconv.Itoa(syscall.Getpid()))
	}
	err := syscall.Exec(sp.Path, sp.Argv, env)
	if err == syscall.EACCES && sp.HasPaths {
		return &failure{what: "exec " + sp.Path, cause: err, hint: " (do landlock_paths.execute and read cover it?)"}
	}
	return wrap("exec "+sp.Path, err)
}

// failure is an error of the launcher: what it was doing, the cause.
type failure struct {
	what  string
	cause error
	hint  string
}

func (f *failure) Error() string { return f.what + ": " + f.cause.Error() + f.hint }
func (f *failure) Unwrap() error { return f.cause }

func wrap(what string, cause error) error { return &failure{what: what, cause: cause} }
