package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// serve FD: accept one connection on the listening socket FD (a socket
// vmsup bound), then exit 0 once the peer closes it, as virtiofsd does
// when its VMM goes away.
func serve(fdArg string) {
	fd, err := strconv.Atoi(fdArg)
	check(err)
	l, err := net.FileListener(os.NewFile(uintptr(fd), "listener"))
	check(err)
	c, err := l.Accept()
	check(err)
	fmt.Println("accepted")
	io.Copy(io.Discard, c)
	fmt.Println("peer gone")
	os.Exit(0)
}

// dial PATH: connect to the UNIX socket PATH and hold the connection, as
// a VMM holds its vhost-user connections. SIGUSR1 closes it (the helper
// then sees its VMM go); SIGTERM is a power-off request that this VMM
// takes forever to complete. It exits 1 if the peer closes first.
func dial(path string) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGTERM)
	c, err := net.Dial("unix", path)
	check(err)
	fmt.Println("connected")
	closed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c)
		select {
		case <-closed:
		default:
			fmt.Println("peer gone")
			os.Exit(1)
		}
	}()
	for sig := range sigs {
		if sig == syscall.SIGUSR1 {
			close(closed)
			c.Close()
			fmt.Println("closed")
		} else {
			fmt.Println("powering off")
		}
	}
}
