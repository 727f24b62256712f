package config

import (
	"slices"
	"strings"
)

// dependencies checks each service's "after" against the names of the
// others (byName: the first service with each name), and reports the
// cycles of the graph it makes.
func (p *parser) dependencies(refs []*svcRefs, byName map[string]int) {
	// Edges of the dependency graph: service i waits for service j.
	edges := make([][]int, len(refs))
	for i, r := range refs {
		seen := map[string]bool{}
		for _, a := range r.after {
			j, known := byName[a.s]
			switch {
			case r.nameVal != nil && a.s == r.name:
				p.errorf(a.v.pos, a.path, "a service cannot come after itself")
			case !known:
				p.errorf(a.v.pos, a.path, "unknown service %s", quote(a.s))
			case seen[a.s]:
				p.errorf(a.v.pos, a.path, "duplicate service %s", quote(a.s))
			default:
				seen[a.s] = true
				edges[i] = append(edges[i], j)
			}
		}
	}
	for _, cycle := range cycles(edges) {
		r := refs[cycle[0]]
		names := make([]string, len(cycle)+1)
		for k, i := range cycle {
			names[k] = refs[i].name
		}
		names[len(cycle)] = r.name
		p.errorf(r.afterVal.pos, join(r.path, "after"), "dependency cycle: %s", strings.Join(names, " -> "))
	}
}

// cycles returns the cycles a depth-first walk finds, from each node in
// order and along each node's edges in order: each time the walk comes
// back to a node on its current path, the nodes from there on are a
// cycle. A cycle that shares a node with one found before is left out:
// they are one knot of services, and the error about the first names
// it; a disjoint cycle needs a fix of its own. Each cycle starts at its
// lowest node, the service first in the file, where it is reported, so
// that the report does not depend on where the walk entered the cycle.
func cycles(edges [][]int) [][]int {
	const (
		unseen = iota
		onPath
		done
	)
	state := make([]int, len(edges))
	at := make([]int, len(edges)) // a node's index in path while it is on it
	var path []int
	// The stretches of path (first and last index, in order) that lie on
	// cycles found: a new cycle shares a node with one of those exactly
	// when it reaches into the last stretch. Kept as stretches, so that
	// the walk stays linear in the size of the graph.
	type stretch struct{ first, last int }
	var found []stretch
	var out [][]int
	var visit func(v int)
	visit = func(v int) {
		state[v], at[v] = onPath, len(path)
		path = append(path, v)
		for _, w := range edges[v] {
			switch state[w] {
			case unseen:
				visit(w)
			case onPath:
				first := at[w]
				if len(found) == 0 || found[len(found)-1].last < first {
					cycle := path[first:]
					low := slices.Index(cycle, slices.Min(cycle))
					out = append(out, append(slices.Clone(cycle[low:]), cycle[:low]...))
				}
				for len(found) > 0 && found[len(found)-1].last >= first {
					first = min(first, found[len(found)-1].first)
					found = found[:len(found)-1]
				}
				found = append(found, stretch{first, len(path) - 1})
			}
		}
		path = path[:len(path)-1]
		state[v] = done
		if n := len(found); n > 0 && found[n-1].last == at[v] {
			if found[n-1].first == at[v] {
				found = found[:n-1]
			} else {
				found[n-1].last--
			}
		}
	}
	for v := range edges {
		if state[v] == unseen {
			visit(v)
		}
	}
	return out
}
