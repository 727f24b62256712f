package config

import (
	"slices"
	"strings"
)

// svcRefs is what the checks across services need to know about one.
type svcRefs struct {
	path     string
	name     string // as given, even if invalid; "" if missing
	nameVal  *value
	after    []nameRef
	afterVal *value
	vmmVal   *value
	sockets  []nameRef // socket paths
	taps     []nameRef // TAP names
}

// nameRef is a string found at path, kept for a later check.
type nameRef struct {
	s    string
	v    *value
	path string
}

// crossCheck runs the checks that involve several services: unique names,
// unique socket paths, a single vmm, and the "after" graph.
func (p *parser) crossCheck(refs []*svcRefs) {
	byName := map[string]int{} // the first service with each name
	for i, r := range refs {
		if r.nameVal == nil {
			continue
		}
		if first, dup := byName[r.name]; dup {
			p.errorf(r.nameVal.pos, join(r.path, "name"), "duplicate service name %s (also %s)", quote(r.name), refs[first].path)
			continue
		}
		byName[r.name] = i
	}

	p.crossCheckTaps(refs)
	sockets := map[string]string{}
	vmm := ""
	for _, r := range refs {
		for _, s := range r.sockets {
			if first, dup := sockets[s.s]; dup {
				p.errorf(s.v.pos, s.path, "socket path already used by %s", first)
				continue
			}
			sockets[s.s] = s.path
		}
		if r.vmmVal != nil {
			if vmm != "" {
				p.errorf(r.vmmVal.pos, join(r.path, "vmm"), "only one service may have vmm (already %s)", vmm)
			} else {
				vmm = join(r.path, "vmm")
			}
		}
	}

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

// cycles returns one cycle through each strongly connected component of
// more than one node (there are no self-loops), starting at the component's
// lowest node so that the report is stable.
func cycles(edges [][]int) [][]int {
	// Tarjan's algorithm.
	n := len(edges)
	idx, low := make([]int, n), make([]int, n)
	onStack := make([]bool, n)
	comp := make([]int, n) // component id, -1 until assigned
	for i := range idx {
		idx[i], comp[i] = -1, -1
	}
	var stack []int
	counter, ncomp := 0, 0
	var visit func(v int)
	visit = func(v int) {
		idx[v], low[v] = counter, counter
		counter++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range edges[v] {
			if idx[w] < 0 {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], idx[w])
			}
		}
		if low[v] == idx[v] {
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				comp[w] = ncomp
				if w == v {
					break
				}
			}
			ncomp++
		}
	}
	for v := range n {
		if idx[v] < 0 {
			visit(v)
		}
	}

	size := make([]int, ncomp)
	for _, c := range comp {
		size[c]++
	}
	var out [][]int
	done := make([]bool, ncomp)
	for start := range n { // in index order: the first member seen is the lowest
		c := comp[start]
		if size[c] < 2 || done[c] {
			continue
		}
		done[c] = true
		out = append(out, cycleFrom(start, edges, comp))
	}
	return out
}

// cycleFrom finds a shortest path from start back to itself inside start's
// component, by breadth-first search.
func cycleFrom(start int, edges [][]int, comp []int) []int {
	prev := map[int]int{}
	queue := []int{start}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range edges[v] {
			if comp[w] != comp[start] {
				continue
			}
			if w == start {
				// Walk back to start, then put the path in order.
				path := []int{v}
				for v != start {
					v = prev[v]
					path = append(path, v)
				}
				slices.Reverse(path)
				return path
			}
			if _, seen := prev[w]; !seen {
				prev[w] = v
				queue = append(queue, w)
			}
		}
	}
	return []int{start} // unreachable for a component of two or more
}
