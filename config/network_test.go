package config

import "testing"

func TestNetworkRules(t *testing.T) {
	two := func(a, b string) string {
		return `{"name":"vm","uid":1000,"gid":1000,"services":[` +
			`{"name":"a","argv":["/bin/true"],` + a + `},{"name":"b","argv":["/bin/true"],` + b + `}]}`
	}
	runRules(t, []ruleCase{
		{check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Network, NetworkNone) }},
		{svc: `"network":"host"`, check: func(t *testing.T, vm *VM) { eq(t, svc0(vm).Network, NetworkHost) }},
		{svc: `"network":"bridge"`, want: `services[0].network: must be one of "none", "host"`},
		{svc: `"taps":[{"name":"vm-work0","fd":4}]`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).Taps, []Tap{{Name: "vm-work0", FD: 4, Queues: 1}})
		}},
		{svc: `"taps":[{"name":"vm-work0","fd":4,"bridge":"br0","queues":4}]`, check: func(t *testing.T, vm *VM) {
			eq(t, svc0(vm).Taps, []Tap{{Name: "vm-work0", FD: 4, Bridge: "br0", Queues: 4}})
		}},
		{svc: `"taps":[{"name":"vm-work0"}]`, want: `services[0].taps[0].fd: required`},
		{svc: `"taps":[{"fd":4}]`, want: `services[0].taps[0].name: required`},
		{svc: `"taps":[{"name":"vm-work0","fd":4,"mac":"x"}]`, want: `services[0].taps[0].mac: unknown field`},
		{svc: `"taps":[{"name":"a-name-of-16-byt","fd":4}]`, want: `services[0].taps[0].name: "a-name-of-16-byt": an interface name has at most 15 bytes`},
		{svc: `"taps":[{"name":"","fd":4}]`, want: `services[0].taps[0].name: "": must not be empty`},
		{svc: `"taps":[{"name":"tap%d","fd":4}]`, want: `services[0].taps[0].name: "tap%d": an interface name has no "/", ":", "%" or white space`},
		{svc: `"taps":[{"name":"..","fd":4}]`, want: `services[0].taps[0].name: "..": not an interface name`},
		{svc: `"taps":[{"name":"t0","fd":4,"bridge":"a/b"}]`, want: `services[0].taps[0].bridge: "a/b": an interface name has no "/", ":", "%" or white space`},
		{svc: `"taps":[{"name":"t0","fd":4,"bridge":"t0"}]`, want: `services[0].taps[0].bridge: a TAP cannot be its own bridge`},
		{svc: `"taps":[{"name":"t0","fd":4,"queues":0}]`, want: `services[0].taps[0].queues: must be between 1 and 256`},
		{svc: `"taps":[{"name":"t0","fd":4,"queues":257}]`, want: `services[0].taps[0].queues: must be between 1 and 256`},
		{svc: `"taps":[{"name":"t0","fd":1020,"queues":8}]`, want: `services[0].taps[0].fd: fd 1020 and its 8 queues go past 1023`},
		{svc: `"taps":[{"name":"t0","fd":2}]`, want: `services[0].taps[0].fd: must be between 3 and 1023`},
		{svc: `"taps":[{"name":"t0","fd":4},{"name":"t0","fd":5}]`, want: `services[0].taps[1].name: interface name "t0" already used by services[0].taps[0].name`},
		// Every queue takes a descriptor: fd 4 with 2 queues holds 4 and 5.
		{svc: `"sockets":[{"path":"/run/x.sock","fd":5}],"taps":[{"name":"t0","fd":4,"queues":2}]`,
			want: `services[0].taps[0].fd: fd 5 already used by services[0].sockets[0].fd`},
		{svc: `"taps":[{"name":"t0","fd":3,"queues":2}],"devices":[{"path":"/dev/null","fd":4}]`,
			want: `services[0].devices[0].fd: fd 4 already used by services[0].taps[0].fd`},
	})
	runRules(t, []ruleCase{
		{raw: two(`"taps":[{"name":"t0","fd":4}]`, `"taps":[{"name":"t0","fd":4}]`),
			want: `services[1].taps[0].name: interface name "t0" already used by services[0].taps[0].name`},
		{raw: two(`"taps":[{"name":"t0","fd":4}]`, `"taps":[{"name":"t1","fd":4}]`)},
		{svc: `"taps":[{"name":"t0","fd":3}],"ready":{"notify_fd":3}`, want: `services[0].ready.notify_fd: fd 3 already used by services[0].taps[0].fd`},
	})
}
