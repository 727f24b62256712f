package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// forkstorm N DONEFILE: start N children (/bin/sleep) as fast as it can,
// keeping them all, then print one line
//
//	forkstorm: started S of N, refused R (first refusal: <error>)
//
// create DONEFILE (a readiness marker) and wait. Under pids.max most
// starts are refused with EAGAIN; the process itself keeps running.
func forkstorm(n int, done string) {
	started, refused := 0, 0
	var first error
	for range n {
		p, err := os.StartProcess("/bin/sleep", []string{"sleep", "3600"}, &os.ProcAttr{})
		if err != nil {
			refused++
			if first == nil {
				first = err
			}
			continue
		}
		started++
		_ = p // kept running: the storm holds what it got
	}
	firstText := "none"
	if first != nil {
		firstText = first.Error()
		if errors.Is(first, syscall.EAGAIN) {
			firstText += " [EAGAIN]"
		}
	}
	fmt.Printf("forkstorm: started %d of %d, refused %d (first refusal: %s)\n", started, n, refused, firstText)
	check(os.WriteFile(done, nil, 0o644))
	for {
		time.Sleep(time.Hour)
	}
}
