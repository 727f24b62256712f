// Command testprog is a service for vmsup's tests: each mode does one
// thing a test needs to observe from inside a VM.
package main

import (
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testprog MODE ARGS...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "listen": // listen PATH DELAY: listen on a UNIX socket after DELAY, accept forever
		time.Sleep(dur(os.Args[3]))
		l, err := net.Listen("unix", os.Args[2])
		check(err)
		for {
			c, err := l.Accept()
			check(err)
			c.Close()
		}
	case "duel": // duel NAME PEER DIR HOSTABSTRACT: see duel.go
		duel(os.Args[2], os.Args[3], os.Args[4], os.Args[5])
	case "serve": // serve FD: see peer.go
		serve(os.Args[2])
	case "dial": // dial PATH: see peer.go
		dial(os.Args[2])
	case "linger": // linger DELAY: see linger.go
		linger(dur(os.Args[2]), os.Args[3:])
	case "fds": // fds: print the open descriptors, then sleep
		fmt.Println("fds", strings.Join(openFDs(), " "))
		fmt.Println("env", strings.Join(os.Environ(), " "))
		time.Sleep(time.Hour)
	}
	fmt.Fprintln(os.Stderr, "testprog: unknown mode", os.Args[1])
	os.Exit(2)
}

// openFDs lists the open descriptors and what they are, leaving out the
// one used to list them. It uses raw syscalls: os.Open would start the
// Go poller (an epoll and an eventfd). Run it with
// GODEBUG=containermaxprocs=0, or the Go runtime itself keeps cgroup cpu
// files open.
func openFDs() []string {
	d, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	check(err)
	buf := make([]byte, 64*1024)
	n, err := syscall.ReadDirent(d, buf)
	check(err)
	_, _, names := syscall.ParseDirent(buf[:n], -1, nil)
	var fds []int
	for _, name := range names {
		if fd, _ := strconv.Atoi(name); fd != d {
			fds = append(fds, fd)
		}
	}
	sort.Ints(fds)
	var out []string
	for _, fd := range fds {
		t, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		out = append(out, fmt.Sprintf("%d=%s", fd, t))
	}
	syscall.Close(d)
	return out
}

func dur(s string) time.Duration {
	d, err := time.ParseDuration(s)
	check(err)
	return d
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "testprog:", err)
		os.Exit(1)
	}
}
