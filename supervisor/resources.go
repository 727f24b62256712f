package supervisor

// What each service keeps for the VM's life or gets per launch: its
// sockets and devices, its cgroup with its limits, and the pipe its
// output reaches vmsup's stderr through.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"vmsup/cgroup"
	"vmsup/config"
	"vmsup/services"
)

// openFiles binds the service's sockets and opens its devices; they are
// kept for the VM's life, so a restarted service gets the same ones.
func (s *service) openFiles() error {
	for _, so := range s.cfg.Sockets {
		f, err := services.Listen(so)
		if err != nil {
			return err
		}
		s.files[so.FD] = f
	}
	for _, d := range s.cfg.Devices {
		if d.FD == 0 {
			continue // only in its /dev
		}
		f, err := services.OpenDevice(d)
		if err != nil {
			return err
		}
		s.files[d.FD] = f
	}
	return nil
}

// makeCgroup creates the service's cgroup with its limits and keeps it
// open for clone3(CLONE_INTO_CGROUP).
func (s *service) makeCgroup(vmDir string) error {
	dir := filepath.Join(vmDir, "svc."+s.cfg.Name)
	if err := cgroup.Mkdir(dir); err != nil {
		return err
	}
	s.cgroup = dir
	if err := setLimits(dir, s.cfg.Limits); err != nil {
		return err
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	s.cgroupFD = f
	return nil
}

func setLimits(dir string, l config.Limits) error {
	if err := cgroup.SetLimits(dir, l); err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	return nil
}

// logPipe returns the write end of a pipe for one launch's stdout and
// stderr; every line written to it reaches vmsup's stderr prefixed with
// the service's name. A pipe per launch, so that end of file (every
// process of that launch gone) flushes a last line without a newline.
func (v *vm) logPipe(name string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	v.logs.Add(1)
	go func() {
		defer v.logs.Done()
		copyLines(name, r)
		r.Close()
	}()
	return w, nil
}

// logLineMax is the longest output line copyLines passes in one piece;
// a longer one reaches stderr as several lines, each with the name.
const logLineMax = 4096

func copyLines(name string, r io.Reader) {
	br := bufio.NewReaderSize(r, logLineMax)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			out := make([]byte, 0, len(name)+2+len(line)+1)
			out = append(out, name...)
			out = append(out, ": "...)
			out = append(out, line...)
			if out[len(out)-1] != '\n' {
				out = append(out, '\n')
			}
			stderr.Write(out)
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}
