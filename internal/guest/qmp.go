package guest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// QMPExecute connects to QEMU's QMP UNIX socket, negotiates capabilities
// ({"execute":"qmp_capabilities"}) and runs each command (a JSON object such
// as {"execute":"system_powerdown"}) in order, waiting for its reply and
// skipping asynchronous events. It returns the "return" values. The
// connection is retried until timeout while QEMU is still creating the
// socket. timeout bounds the whole exchange.
func QMPExecute(socket string, timeout time.Duration, commands ...string) ([]json.RawMessage, error) {
	deadline := time.Now().Add(timeout)
	var conn net.Conn
	for {
		var err error
		conn, err = net.DialTimeout("unix", socket, time.Until(deadline))
		if err == nil {
			break
		}
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("qmp: connect %s: %w", socket, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	r := bufio.NewReader(conn)

	type reply struct {
		QMP    json.RawMessage `json:"QMP"`
		Return json.RawMessage `json:"return"`
		Error  *struct {
			Class string `json:"class"`
			Desc  string `json:"desc"`
		} `json:"error"`
		Event string `json:"event"`
	}
	read := func() (reply, error) {
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return reply{}, fmt.Errorf("qmp: read: %w", err)
			}
			var m reply
			if err := json.Unmarshal(line, &m); err != nil {
				return reply{}, fmt.Errorf("qmp: bad reply %q: %w", line, err)
			}
			if m.Event != "" {
				continue
			}
			return m, nil
		}
	}
	greeting, err := read()
	if err != nil {
		return nil, err
	}
	if greeting.QMP == nil {
		return nil, errors.New("qmp: no greeting")
	}
	var results []json.RawMessage
	for i, c := range append([]string{`{"execute":"qmp_capabilities"}`}, commands...) {
		if !json.Valid([]byte(c)) {
			return results, fmt.Errorf("qmp: command is not JSON: %s", c)
		}
		if _, err := conn.Write(append([]byte(c), '\n')); err != nil {
			return results, fmt.Errorf("qmp: write: %w", err)
		}
		m, err := read()
		if err != nil {
			return results, err
		}
		if m.Error != nil {
			return results, fmt.Errorf("qmp: %s: %s: %s", c, m.Error.Class, m.Error.Desc)
		}
		if i > 0 {
			results = append(results, m.Return)
		}
	}
	return results, nil
}
