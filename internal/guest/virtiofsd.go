package guest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The Rust virtiofsd (Debian trixie's 1.13.x) is what current hosts run;
// scripts/fetch-virtiofsd caches it with the trixie libraries it needs
// (glibc 2.39 or later) in one directory, run through that directory's own
// dynamic loader.

// RustVirtiofsdUID is the uid the contract's example runs virtiofsd as.
const RustVirtiofsdUID = 2001

// RustVirtiofsd runs scripts/fetch-virtiofsd and returns the directory it
// prints (virtiofsd, ld-linux-x86-64.so.2, the libraries). The first call
// downloads about 4 MB; later calls are instant.
func RustVirtiofsd() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "scripts", "fetch-virtiofsd")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(script)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("guest: %s: %v\n%s", script, err, strings.TrimSpace(stderr.String()))
	}
	dir := strings.TrimSpace(stdout.String())
	if _, err := os.Stat(filepath.Join(dir, "virtiofsd")); err != nil {
		return "", fmt.Errorf("guest: %s: %w", script, err)
	}
	return dir, nil
}

// RustVirtiofsdArgv is the command line of the Rust virtiofsd in dir
// serving share on the listening socket it gets as fd 3, as the contract's
// example runs it: no sandbox of its own (vmsup's is the sandbox), inodes
// held as file handles (so it holds a few fds, not one per inode: it needs
// CAP_DAC_READ_SEARCH), and no attempt to raise RLIMIT_NOFILE.
func RustVirtiofsdArgv(dir, share string) []string {
	return []string{filepath.Join(dir, "ld-linux-x86-64.so.2"), "--library-path", dir, filepath.Join(dir, "virtiofsd"),
		"--fd=3", "--shared-dir=" + share, "--sandbox=none", "--inode-file-handles=mandatory", "--rlimit-nofile=0"}
}

// RustVirtiofsdService is the "services" entry of a vmsup config for the
// Rust virtiofsd in dir: uid 2001 with CAP_DAC_READ_SEARCH alone, reading
// and writing only share (which uid 2001 must own), executing only dir,
// its socket pre-bound at sock for the VMM's uid.
func RustVirtiofsdService(dir, share, sock string, vmmUID int) map[string]any {
	return map[string]any{
		"name":         "virtiofsd",
		"argv":         RustVirtiofsdArgv(dir, share),
		"uid":          RustVirtiofsdUID,
		"gid":          RustVirtiofsdUID,
		"capabilities": []string{"CAP_DAC_READ_SEARCH"},
		"private_tmp":  "16M",
		"private_shm":  "16M",
		"sockets":      []map[string]any{{"path": sock, "fd": 3, "mode": "0600", "uid": vmmUID}},
		"landlock_paths": map[string]any{
			"read":    []string{share, dir, "/proc"},
			"write":   []string{share},
			"execute": []string{dir},
		},
		// File handles need open_by_handle_at, which the default
		// seccomp filter refuses.
		"syscalls": map[string]any{"allow": []string{"open_by_handle_at"}},
	}
}
