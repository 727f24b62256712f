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
