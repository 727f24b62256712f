package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// linger DELAY [NOTIFY_FD GATE]: a service that takes its time to stop,
// like a VMM whose guest is powering off or a daemon flushing its state.
// It prints "up" once it handles SIGTERM; SIGTERM makes it wait DELAY
// and exit 0. With NOTIFY_FD and GATE it reports readiness (a newline on
// NOTIFY_FD) once the file GATE exists, so a test decides when it is
// ready, and it is never ready before it handles SIGTERM.
func linger(delay time.Duration, args []string) {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	fmt.Println("up")
	if len(args) == 2 {
		fd, err := strconv.Atoi(args[0])
		check(err)
		go func() {
			for { // a test program: polling is fine here
				if _, err := os.Stat(args[1]); err == nil {
					break
				}
				time.Sleep(time.Millisecond)
			}
			_, err := os.NewFile(uintptr(fd), "notify").Write([]byte("\n"))
			check(err)
		}()
	}
	<-term
	fmt.Println("stopping")
	time.Sleep(delay)
	os.Exit(0)
}
