package guest

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Console collects a guest's serial output line by line and lets a test
// wait for marker lines.
type Console struct {
	mu    sync.Mutex
	cond  *sync.Cond
	lines []string
	done  bool
	err   error
	tee   io.Writer
}

// NewConsole starts reading r (QEMU's stdout with -serial stdio) until EOF.
// Every line is also written to tee when tee is not nil.
func NewConsole(r io.Reader, tee io.Writer) *Console {
	c := &Console{tee: tee}
	c.cond = sync.NewCond(&c.mu)
	go c.read(r)
	return c
}

func (c *Console) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			line = strings.TrimRight(line, "\r\n")
			if c.tee != nil {
				fmt.Fprintln(c.tee, line)
			}
			c.mu.Lock()
			c.lines = append(c.lines, line)
			c.cond.Broadcast()
			c.mu.Unlock()
		}
		if err != nil {
			c.mu.Lock()
			c.done = true
			if err != io.EOF {
				c.err = err
			}
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
	}
}

// WaitFor waits until a line containing marker appears, the output ends, a
// line containing MarkerFail appears, or timeout passes. It returns the
// matching line.
func (c *Console) WaitFor(marker string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	next := 0
	for {
		for ; next < len(c.lines); next++ {
			l := c.lines[next]
			if strings.Contains(l, marker) {
				return l, nil
			}
			if strings.Contains(l, MarkerFail) {
				return l, fmt.Errorf("guest failed while waiting for %q: %s", marker, l)
			}
		}
		if c.done {
			return "", fmt.Errorf("console closed before %q (read error: %v)", marker, c.err)
		}
		if !time.Now().Before(deadline) {
			return "", fmt.Errorf("no %q on the console within %v", marker, timeout)
		}
		c.cond.Wait()
	}
}

// Contains reports whether any line so far contains s.
func (c *Console) Contains(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// Wait blocks until the output ends (QEMU closed its stdout).
func (c *Console) Wait() {
	c.mu.Lock()
	for !c.done {
		c.cond.Wait()
	}
	c.mu.Unlock()
}

// String returns everything read so far.
func (c *Console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}
