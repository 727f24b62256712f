package services_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsup/internal/vmtest"
)

// The network half of the hostile suite: a service reaches for the
// host's network stack (its loopback TCP and UDP, a listener the host
// connects to, an abstract socket it binds that a host process then
// connects to) and for a sibling service's TCP listener. With the
// default network "none" (a namespace of each service's own) every
// attempt fails; the control, "network": "host" for both services,
// shows each attempt is real. With "none" the attacker also runs with
// the credentials users give (the README's virtiofsd set as uid 0,
// CAP_DAC_READ_SEARCH alone, uid 0 without capabilities, and a network
// backend's CAP_NET_ADMIN and CAP_NET_RAW as uid 0): none of them leaves
// its namespace. The whole VM runs in a network namespace this test
// makes (vmtest.NetNS), standing in for the host.
func TestHostileNetwork(t *testing.T) {
	plain := viewAttacker{name: "uid-1000", uid: 1000}
	for _, a := range append([]viewAttacker{plain}, viewAttackers[0], viewAttackers[1], viewAttackers[2],
		viewAttacker{name: "net-admin", uid: 0, caps: []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}}) {
		t.Run("none/"+a.name, func(t *testing.T) { hostileNetwork(t, "none", a) })
	}
	t.Run("host/"+plain.name, func(t *testing.T) { hostileNetwork(t, "host", plain) })
}

func hostileNetwork(t *testing.T, mode string, a viewAttacker) {
	vmtest.NetNS(t)
	prog := vmtest.Bin(t, "testprog")
	// The "host": a TCP listener and a UDP echo server on its loopback.
	// The namespace is this test's own, so fixed ports are free.
	tl, err := net.Listen("tcp", "127.0.0.1:41001")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ul, err := net.ListenPacket("udp", "127.0.0.1:41002")
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	go func() {
		b := make([]byte, 64)
		for {
			n, from, err := ul.ReadFrom(b)
			if err != nil {
				return
			}
			ul.WriteTo(b[:n], from)
		}
	}()
	abstract := fmt.Sprintf("vmsup-test-net-%d-%s-%s", os.Getpid(), mode, a.name)
	svc := func(name, listen, peer string) map[string]any {
		return map[string]any{
			"name": name, "uid": 1000, "gid": 1000, "network": mode,
			"argv": []string{prog, "net", "127.0.0.1:41001", "127.0.0.1:41002", listen, abstract + "-" + name, peer},
		}
	}
	peer := svc("peer", "0.0.0.0:41010", "")
	peer["env"] = map[string]string{"READY_FD": "3"}
	peer["ready"] = map[string]any{"notify_fd": 3}
	red := svc("red", "0.0.0.0:41011", "127.0.0.1:41010")
	red["after"] = []string{"peer"}
	red["uid"], red["gid"] = a.uid, a.uid
	if a.caps != nil {
		red["capabilities"] = a.caps
	}
	vm := vmtest.Start(t, vmtest.NewConfig(t, "hostile-net-"+mode+"-"+a.name, peer, red), vmtest.Options{})
	vm.PID1()
	waitOrExit(t, vm, "red: serving", 30*time.Second)

	res := map[string]string{}
	for _, line := range strings.Split(vm.Stderr.String(), "\n") {
		if a, ok := strings.CutPrefix(line, "red: attempt "); ok {
			name, r, _ := strings.Cut(a, ": ")
			res[name] = r
		}
	}
	// What the host does to the service.
	greeted := func(network, addr string) string {
		c, err := net.DialTimeout(network, addr, 2*time.Second)
		if err != nil {
			return fmt.Sprintf("blocked (%v)", err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b, _ := io.ReadAll(c)
		if string(b) != "hello from the service\n" {
			return fmt.Sprintf("blocked (read %q)", b)
		}
		return "ESCAPED"
	}
	res["host connects to the service's TCP listener"] = greeted("tcp", "127.0.0.1:41011")
	res["host connects to the service's abstract socket"] = greeted("unix", "@"+abstract+"-red")

	names := []string{"connect host loopback TCP", "UDP to host loopback", "connect sibling service TCP listener",
		"host connects to the service's TCP listener", "host connects to the service's abstract socket"}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			got, ok := res[name]
			switch {
			case !ok:
				t.Fatalf("no attempt:\n%s", vm.Stderr.String())
			case mode == "none" && got == "ESCAPED":
				t.Errorf("ESCAPED although the service has a network namespace of its own")
			case mode == "host" && got != "ESCAPED":
				t.Errorf("control: %s, but with the host's network it should get through: is the attack real?", got)
			default:
				t.Log(got)
			}
		})
	}
	vm.Signal(syscall.SIGTERM)
	if st := vm.Wait(10 * time.Second); st != 0 {
		t.Fatalf("status %d", st)
	}
	vm.AssertClean(time.Second)
}
