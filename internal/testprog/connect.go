package main

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// connectEach PATH...: connect to each pathname socket and print
// "connect PATH: ok" or "connect PATH: refused (<error>)", then sleep.
func connectEach(paths []string) {
	for _, p := range paths {
		if err := connectUnix(unix.SOCK_STREAM, p); err != nil {
			fmt.Printf("connect %s: refused (%v)\n", p, err)
		} else {
			fmt.Printf("connect %s: ok\n", p)
		}
	}
	fmt.Println("connect done")
	time.Sleep(time.Hour)
}
