package supervisor

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The Cloud Hypervisor request on the wire: the API's documented
// PUT /api/v1/vm.power-button (204 No Content on success), and a
// refusal reported as an error. There is no Cloud Hypervisor on the
// project's machines, so this checks the protocol, not a guest.
func TestCloudHypervisorPowerButton(t *testing.T) {
	for _, c := range []struct {
		reply string
		ok    bool
	}{
		{"HTTP/1.1 204 No Content\r\n\r\n", true},
		{"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", false},
	} {
		sock := filepath.Join(t.TempDir(), "api.sock")
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			var req []string
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
				req = append(req, strings.TrimRight(line, "\r\n"))
			}
			got <- strings.Join(req, "|")
			conn.Write([]byte(c.reply))
		}()
		err = chPowerButton(sock, 0, 5*time.Second)
		l.Close()
		if req := <-got; !strings.HasPrefix(req, "PUT /api/v1/vm.power-button HTTP/1.1|Host: localhost|Content-Length: 0") {
			t.Errorf("request %q", req)
		}
		if (err == nil) != c.ok {
			t.Errorf("reply %q: err %v, want ok=%v", c.reply, err, c.ok)
		}
	}
}

// The power-off request reaches only a socket of the VMM's own: not one
// a service reached through a symbolic link it planted (to another VM's
// QMP socket, say), nor a socket owned by another uid. The control dial
// shows that a plain connect would have reached the other VM.
func TestPowerOffReachesOnlyTheVMMsSocket(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other-vm-qmp.sock")
	l, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	reached := make(chan bool, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			reached <- true
			c.Write([]byte(`{"QMP": {}}` + "\n"))
			c.Close()
		}
	}()
	planted := filepath.Join(dir, "qmp.sock")
	if err := os.Symlink(other, planted); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("unix", planted); err != nil {
		t.Fatalf("control: a plain connect through the link fails: %v", err)
	} else {
		c.Close()
		<-reached
	}
	for _, c := range []struct {
		sock  string
		owner uint32
		want  string
	}{
		{planted, 0, "is not a socket"},
		{other, 2002, "belongs to uid 0, not to its service's 2002"},
	} {
		err := qmpPowerdown(c.sock, c.owner, time.Second)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("power-off through %s as uid %d: %v, want %q", filepath.Base(c.sock), c.owner, err, c.want)
		}
	}
	select {
	case <-reached:
		t.Error("the power-off request reached the other VM's socket")
	case <-time.After(100 * time.Millisecond):
	}
}
