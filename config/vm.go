package config

import "time"

const (
	defaultShutdownTimeout = 30 * time.Second
	runtimeDirParent       = "/run/vmsup" // runtime_dir's default is <this>/<name>
)

// Parse parses and validates a JSON config. It returns either the VM, with
// every default filled in, or every problem found, in document order.
func Parse(data []byte) (*VM, []*Error) {
	p := &parser{}
	root, serr := p.readTree(data)
	if serr != nil {
		return nil, []*Error{serr}
	}
	vm := p.vm(root)
	p.unread()
	if len(p.errs) > 0 {
		return nil, p.sorted()
	}
	return vm, nil
}

func (p *parser) vm(v *value) *VM {
	f, ok := p.object(v, "")
	if !ok {
		return nil
	}
	vm := &VM{
		Landlock:        LandlockRequired,
		ShutdownTimeout: defaultShutdownTimeout,
		Mount:           Mount{Propagation: PropagationSlave},
	}
	if v, path := f.required("name"); v != nil {
		if name, ok := p.name(v, path); ok {
			vm.Name = name
			vm.RuntimeDir = runtimeDirParent + "/" + name
		}
	}
	if v, path := f.get("runtime_dir"); v != nil {
		if dir, ok := p.absPath(v, path); ok {
			if dir == "/" {
				p.errorf(v.pos, path, `must not be "/"`)
			}
			vm.RuntimeDir = dir
		}
	}
	if v, path := f.get("cgroup"); v != nil {
		vm.Cgroup, _ = p.absPath(v, path)
	}
	uid, gid := p.optID(f, "uid"), p.optID(f, "gid")
	if uid.ok {
		vm.UID = &uid.val
	}
	if gid.ok {
		vm.GID = &gid.val
	}
	if v, path := f.get("landlock"); v != nil {
		vm.Landlock, _ = enum(p, v, path, LandlockRequired, LandlockBestEffort, LandlockOff)
	}
	if v, path := f.get("shutdown_timeout"); v != nil {
		if s, ok := p.str(v, path); ok {
			d, err := time.ParseDuration(s)
			switch {
			case err != nil:
				p.errorf(v.pos, path, `invalid duration %s (want e.g. "30s")`, quote(s))
			case d <= 0:
				p.errorf(v.pos, path, "must be greater than 0")
			default:
				vm.ShutdownTimeout = d
			}
		}
	}
	if v, path := f.get("mount"); v != nil {
		p.mount(v, path, &vm.Mount)
	}
	if v, path := f.required("services"); v != nil {
		if elems, ok := p.array(v, path); ok {
			if len(elems) == 0 {
				p.errorf(v.pos, path, "must not be empty")
			}
			refs := make([]*svcRefs, len(elems))
			for i, e := range elems {
				var s Service
				s, refs[i] = p.service(e, index(path, i), uid, gid)
				vm.Services = append(vm.Services, s)
			}
			p.crossCheck(refs)
		}
	}
	return vm
}

func (p *parser) mount(v *value, path string, m *Mount) {
	f, ok := p.object(v, path)
	if !ok {
		return
	}
	if v, path := f.get("propagation"); v != nil {
		m.Propagation, _ = enum(p, v, path, PropagationSlave, PropagationPrivate)
	}
	if v, path := f.get("readonly_paths"); v != nil {
		m.ReadonlyPaths = p.pathList(v, path)
	}
	if v, path := f.get("masked_paths"); v != nil {
		m.MaskedPaths = p.pathList(v, path)
	}
	if v, path := f.get("binds"); v != nil {
		elems, _ := p.array(v, path)
		for i, e := range elems {
			bf, ok := p.object(e, index(path, i))
			if !ok {
				continue
			}
			var b Bind
			if v, path := bf.required("source"); v != nil {
				b.Source, _ = p.absPath(v, path)
			}
			if v, path := bf.required("target"); v != nil {
				b.Target, _ = p.absPath(v, path)
			}
			if v, path := bf.get("readonly"); v != nil {
				b.Readonly, _ = p.boolean(v, path)
			}
			m.Binds = append(m.Binds, b)
		}
	}
}

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
	p.dependencies(refs, byName)
}
