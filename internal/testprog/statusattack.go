package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// statusAttack tries to read and write the VM's status record
// (DIR/NAME/status.json) every way a service could: directly, through
// PID 1's root, by listing, creating, replacing and removing. With
// "umount" it first unmounts whatever covers DIR (a control: that needs
// CAP_SYS_ADMIN). One line per attempt: "status-attack WHAT: ok" or the
// errno.
func statusAttack(dir, name string, umount bool) {
	report := func(what string, err error) {
		res := "ok"
		if err != nil {
			res = "refused " + errnoName(err)
		}
		fmt.Printf("status-attack %s: %s\n", what, res)
	}
	if umount {
		report("umount", unix.Unmount(dir, unix.MNT_DETACH))
	}
	rec := filepath.Join(dir, name, "status.json")
	_, err := os.ReadFile(rec)
	report("read", err)
	_, err = os.ReadFile("/proc/1/root" + rec)
	report("read via /proc/1/root", err)
	_, err = os.ReadDir(dir)
	report("list", err)
	f, err := os.OpenFile(rec, os.O_WRONLY, 0)
	if err == nil {
		f.Close()
	}
	report("open for writing", err)
	report("create", os.WriteFile(filepath.Join(dir, name, "forged"), []byte("{}"), 0o644))
	report("replace", os.Rename(filepath.Join(dir, name, "forged"), rec))
	report("remove", os.Remove(filepath.Join(dir, name, "lock")))
	fmt.Println("status-attack done")
	os.Exit(0)
}

func errnoName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}
