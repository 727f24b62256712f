package supervisor

import (
	"bufio"
	"net"
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
		err = chPowerButton(sock, 5*time.Second)
		l.Close()
		if req := <-got; !strings.HasPrefix(req, "PUT /api/v1/vm.power-button HTTP/1.1|Host: localhost|Content-Length: 0") {
			t.Errorf("request %q", req)
		}
		if (err == nil) != c.ok {
			t.Errorf("reply %q: err %v, want ok=%v", c.reply, err, c.ok)
		}
	}
}
