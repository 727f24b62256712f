package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// netAttacks is a hostile service reaching for the host's network stack
// (services/hostile_net_test.go): it connects to a TCP listener on the
// host's loopback (tcpAddr), sends a datagram to a UDP echo server there
// (udpAddr) and waits for the echo, then listens on listenAddr (all
// addresses) and binds the abstract socket @abstract, accepting on both
// so that a host process can try to reach it. It prints one
// "attempt NAME: RESULT" line per outbound attempt, "serving" when both
// listeners are up, and greets whoever connects.
//
// With peerAddr it first connects to a sibling service's TCP listener
// too; with READY_FD set it writes a newline there once serving (the
// sibling's ready.notify_fd).
func netAttacks(tcpAddr, udpAddr, listenAddr, abstract, peerAddr string) {
	attempt := func(name string, err error) {
		if err != nil {
			fmt.Printf("attempt %s: blocked (%v)\n", name, err)
		} else {
			fmt.Printf("attempt %s: ESCAPED\n", name)
		}
	}
	c, err := net.DialTimeout("tcp", tcpAddr, 2*time.Second)
	if err == nil {
		c.Close()
	}
	attempt("connect host loopback TCP", err)
	attempt("UDP to host loopback", udpEcho(udpAddr))
	if peerAddr != "" {
		c, err := net.DialTimeout("tcp", peerAddr, 2*time.Second)
		if err == nil {
			c.Close()
		}
		attempt("connect sibling service TCP listener", err)
	}

	tl, err := net.Listen("tcp", listenAddr)
	check(err)
	al, err := net.Listen("unix", "@"+abstract)
	check(err)
	for _, l := range []net.Listener{tl, al} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("hello from the service\n"))
				c.Close()
			}
		}()
	}
	fmt.Println("serving")
	if fd := os.Getenv("READY_FD"); fd != "" {
		n, err := strconv.Atoi(fd)
		check(err)
		f := os.NewFile(uintptr(n), "ready")
		f.Write([]byte("\n"))
		f.Close()
	}
	time.Sleep(time.Hour)
}

// udpEcho sends a datagram to addr and waits a second for it to come
// back: only a reply shows the host was reached.
func udpEcho(addr string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	b := make([]byte, 16)
	n, err := c.Read(b)
	if err != nil {
		return err
	}
	if string(b[:n]) != "ping" {
		return fmt.Errorf("odd reply %q", b[:n])
	}
	return nil
}
