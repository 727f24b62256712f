package explain

import (
	"fmt"
	"strings"

	"vmsup/config"
	"vmsup/landlock"
)

// network is its network namespace and the TAPs it is handed.
func network(s *config.Service, abi int) []string {
	var out []string
	if s.Network == config.NetworkHost {
		abstract := "abstract UNIX sockets of the host's namespace reachable (Landlock cannot scope them)"
		if abi >= landlock.ScopeABI {
			abstract = "abstract UNIX sockets confined to its own Landlock domain"
		}
		out = append(out, "host: the host's network namespace: every interface, the host's and its siblings' TCP and UDP listeners; "+abstract)
	} else {
		out = append(out, "none: a network namespace of its own with only loopback, up: no TCP or UDP to the host or to its siblings (each has its own), and abstract UNIX sockets it binds are out of the host's and its siblings' reach")
	}
	for _, t := range s.Taps {
		fds := fmt.Sprint("fd ", t.FD)
		if t.Queues > 1 {
			fds = fmt.Sprintf("fds %d-%d", t.FD, t.FD+t.Queues-1)
		}
		on := fmt.Sprintf("on no bridge: the frames reach the host's stack through %s (whatever addresses and forwarding the host gives it)", t.Name)
		if t.Bridge != "" {
			on = fmt.Sprintf("on bridge %s: the frames reach every port of %s and the host's stack through it", t.Bridge, t.Bridge)
		}
		out = append(out, fmt.Sprintf("TAP %s in vmsup's (the host's) network namespace (%d %s as %s, owner uid %d, group %d): it sends and receives raw Ethernet frames on %s, with any source address; %s",
			t.Name, t.Queues, plural(t.Queues, "queue"), fds, s.UID, s.GID, t.Name, on))
	}
	return out
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// netBarrier is the network namespace barrier: enforced with "none".
func netBarrier(s *config.Service) (detail string, enforced bool) {
	if s.Network == config.NetworkHost {
		return `"network": "host": shares the host's network stack`, false
	}
	taps := ""
	if len(s.Taps) > 0 {
		var names []string
		for _, t := range s.Taps {
			names = append(names, t.Name)
		}
		taps = "; the TAPs it is handed (" + strings.Join(names, ", ") + ") are the host's"
	}
	return "its own, only loopback" + taps, true
}
