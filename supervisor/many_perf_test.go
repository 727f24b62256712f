package supervisor_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// perfEnv names a directory: BenchmarkManyVMs then records every stop
// with perf (the whole machine, call graphs, 499 Hz) into
// DIR/stop-N.data; scripts/perf-stop sorts the samples by who ran
// them and why.
const perfEnv = "VMSUP_BENCH_PERF"

// perfRecording is a perf record of the whole machine.
type perfRecording struct {
	cmd      *exec.Cmd
	ctl, ack *os.File
}

// startPerf starts perf, if perfEnv asks, and returns once it records.
// perf starts disabled and is enabled through its control pipe: before
// it acknowledges, it has described every running process (seconds
// with 5,000 of them), which would otherwise be the stop's first
// seconds missing from the profile.
func startPerf(b *testing.B, name string) *perfRecording {
	dir := os.Getenv(perfEnv)
	if dir == "" {
		return nil
	}
	if _, err := exec.LookPath("perf"); err != nil {
		b.Fatalf("%s is set but perf is not installed: %v", perfEnv, err)
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	ackR, ackW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, name+".data")
	cmd := exec.Command("perf", "record", "-q", "-a", "-g", "-F", "499", "-D", "-1",
		"--control", "fd:3,4", "-o", out)
	cmd.ExtraFiles = []*os.File{ctlR, ackW}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	ctlR.Close()
	ackW.Close()
	p := &perfRecording{cmd: cmd, ctl: ctlW, ack: ackR}
	if _, err := ctlW.WriteString("enable\n"); err != nil {
		b.Fatalf("perf: %v", err)
	}
	if _, err := bufio.NewReader(ackR).ReadString('\n'); err != nil {
		b.Fatalf("perf did not start recording: %v", err)
	}
	return p
}

// stop ends the recording and says where it is.
func (p *perfRecording) stop(b *testing.B) {
	if p == nil {
		return
	}
	// Through the control pipe: perf ended by SIGINT exits by it.
	if _, err := p.ctl.WriteString("stop\n"); err != nil {
		p.cmd.Process.Signal(syscall.SIGINT)
	}
	err := p.cmd.Wait()
	p.ctl.Close()
	p.ack.Close()
	if err != nil {
		b.Fatalf("perf record: %v", err)
	}
	fmt.Printf("perf: %s (scripts/perf-stop %s)\n", p.cmd.Args[len(p.cmd.Args)-1], p.cmd.Args[len(p.cmd.Args)-1])
}
