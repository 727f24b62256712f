package supervisor

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vmsup/config"
	"vmsup/services"
)

// controlTimeout bounds a power-off request on a VMM's control socket
// (QMP, the Cloud Hypervisor API), from connecting to its answer, within
// shutdown_timeout: a VMM that does not answer gets its stop_signal.
const controlTimeout = 10 * time.Second

// powerOff asks the guest to shut down the way the VMM understands:
// QMP system_powerdown (QEMU), PUT /api/v1/vm.power-button (Cloud
// Hypervisor), or a signal. It returns once the request is accepted; the
// VMM's exit is what ends the wait.
//
// The socket is reached only as services.Dial allows: the one vmsup
// bound for the VMM, or one owned by the VMM's uid (owner) reached
// without following a link, so that no other service can redirect the
// request to another VM's VMM.
func powerOff(how config.VMM, pid int, owner uint32, timeout time.Duration) error {
	switch {
	case how.QMP != "":
		return qmpPowerdown(how.QMP, owner, min(timeout, controlTimeout))
	case how.CloudHypervisor != "":
		return chPowerButton(how.CloudHypervisor, owner, min(timeout, controlTimeout))
	default:
		return unix.Kill(pid, how.Signal)
	}
}

// qmpPowerdown speaks just enough QMP: read the greeting, negotiate
// capabilities, send system_powerdown, and check each answer, skipping
// asynchronous events.
func qmpPowerdown(sock string, owner uint32, timeout time.Duration) error {
	c, err := dialUnix(sock, owner, timeout)
	if err != nil {
		return fmt.Errorf("qmp: %w", err)
	}
	defer c.Close()
	dec := json.NewDecoder(bufio.NewReader(c))
	var greeting map[string]json.RawMessage
	if err := dec.Decode(&greeting); err != nil {
		return fmt.Errorf("qmp greeting: %w", err)
	}
	if _, ok := greeting["QMP"]; !ok {
		return fmt.Errorf("qmp: %s does not speak QMP", sock)
	}
	for _, cmd := range []string{"qmp_capabilities", "system_powerdown"} {
		if _, err := fmt.Fprintf(c, `{"execute":%q}`+"\n", cmd); err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		for {
			var msg struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Class string `json:"class"`
					Desc  string `json:"desc"`
				} `json:"error"`
				Event string `json:"event"`
			}
			if err := dec.Decode(&msg); err != nil {
				return fmt.Errorf("qmp %s: %w", cmd, err)
			}
			if msg.Error != nil {
				return fmt.Errorf("qmp %s: %s: %s", cmd, msg.Error.Class, msg.Error.Desc)
			}
			if msg.Return != nil {
				break
			}
		}
	}
	return nil
}

// chPowerButton presses the virtual power button through Cloud
// Hypervisor's REST API on its UNIX socket. One fixed request does not
// justify net/http, whose TLS dependencies would enlarge the binary and
// slow vmsup's start, which happens twice per VM (run, then its PID 1).
func chPowerButton(sock string, owner uint32, timeout time.Duration) error {
	c, err := dialUnix(sock, owner, timeout)
	if err != nil {
		return fmt.Errorf("cloud-hypervisor api: %w", err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "PUT /api/v1/vm.power-button HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"); err != nil {
		return fmt.Errorf("cloud-hypervisor api: %w", err)
	}
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("cloud-hypervisor api: %w", err)
	}
	// "HTTP/1.1 204 No Content"
	if f := strings.Fields(status); len(f) < 2 || !strings.HasPrefix(f[1], "2") {
		return fmt.Errorf("cloud-hypervisor api: vm.power-button: %s", strings.TrimSpace(status))
	}
	return nil
}

// dialUnix connects to a UNIX stream socket and returns it as a file
// whose reads and writes fail after timeout. The descriptor is the one
// services.Dial checked (its owner, no link followed); an *os.File of it
// gets deadlines from the runtime poller without the duplicate
// descriptor net.FileConn would make.
func dialUnix(path string, owner uint32, timeout time.Duration) (*os.File, error) {
	fd, err := services.Dial(path, owner)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", path, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	if err := f.SetDeadline(time.Now().Add(timeout)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// greets says whether the service's ready socket is a QMP socket vmsup
// bound for it: the kernel accepts connections to it before QEMU runs,
// so readiness waits for QEMU's greeting.
func greets(s *config.Service) bool {
	if s.VMM == nil || s.VMM.QMP != s.Ready.Socket {
		return false
	}
	for _, so := range s.Sockets {
		if so.Path == s.Ready.Socket {
			return true
		}
	}
	return false
}

// endNote says what a service's end means, for its exit-log line, so that
// the ends a VM normally has read as what they are: the VMM exiting 0
// when vmsup did not end the VM (no stop request, no failure: stopping is
// false) is the guest's own power-off, and a service that
// exits non-zero once vmsup has signalled it is stopping as asked (the
// Rust virtiofsd's SIGTERM handler exits 1).
func endNote(ws unix.WaitStatus, sent uint64, isVMM, stopping bool) string {
	switch {
	case isVMM && ws.Exited() && ws.ExitStatus() == 0 && !stopping:
		return ": the guest powered off"
	case ws.Exited() && ws.ExitStatus() != 0 && sent != 0:
		var names []string
		for sig := 1; sig < 64; sig++ {
			if sent&(1<<uint(sig)) != 0 {
				names = append(names, unix.SignalName(syscall.Signal(sig)))
			}
		}
		return " on " + strings.Join(names, ", ") + ": stopped as asked"
	}
	return ""
}

// poweroffNote is the log line for a power-off request that failed. A
// QMP or API socket that is gone or refuses connections means the VMM is
// already ending (the guest powered off and a helper's exit started the
// stop): that is no error.
func poweroffNote(name string, err error, sig syscall.Signal) string {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Sprintf("%s: its control socket is closed: the VMM is ending by itself; sending %s to be sure", name, unix.SignalName(sig))
	}
	return fmt.Sprintf("%s: could not ask the guest to power off: %v; sending %s", name, err, unix.SignalName(sig))
}
