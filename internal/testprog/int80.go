package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"syscall"

	"golang.org/x/sys/unix"
)

func int80(trap, a1 uintptr) uintptr

// i386Unshare NS: unshare(CLONE_NEWUTS) through the i386 entry (int
// 0x80, call 310), in a process of its own: on a kernel without IA32
// emulation int 0x80 faults, and it exits 3. It exits 0 when the call
// worked and prints the errno otherwise.
func i386Unshare() {
	runtime.LockOSThread()
	debug.SetPanicOnFault(true)
	defer func() {
		if recover() != nil {
			os.Exit(3)
		}
	}()
	if r := int80(310, unix.CLONE_NEWUTS); r != 0 {
		fmt.Println(syscall.Errno(-int32(r)).Error())
		os.Exit(1)
	}
	os.Exit(0)
}

// i386Entry runs i386Unshare and returns nil when it got through.
func i386Entry() error {
	out, err := exec.Command("/proc/self/exe", "i386-unshare").Output()
	if err == nil {
		return nil
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 3 {
		return fmt.Errorf("no i386 entry in this kernel")
	}
	if len(out) > 0 {
		return fmt.Errorf("%s", out[:len(out)-1])
	}
	return err
}
