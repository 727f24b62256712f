package config

import (
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// optID is a uid or gid as far as the config got. present is true when the
// key was there, even with a bad value, so that no "no uid" error follows
// the error about the value.
type optID struct {
	present, ok bool
	val         uint32
}

func (p *parser) optID(f *fields, key string) optID {
	v, path := f.get(key)
	if v == nil {
		return optID{}
	}
	id, ok := p.id(v, path)
	return optID{present: true, ok: ok, val: id}
}

// fdRef is a file descriptor number a service asks for.
type fdRef struct {
	fd   int
	v    *value
	path string
}

func (p *parser) service(v *value, path string, vmUID, vmGID optID) (Service, *svcRefs) {
	s := Service{OnExit: OnExitShutdown, StopSignal: unix.SIGTERM, Network: NetworkNone}
	refs := &svcRefs{path: path}
	f, ok := p.object(v, path)
	if !ok {
		return s, refs
	}
	if v, path := f.required("name"); v != nil {
		if v.kind == kindString {
			refs.name, refs.nameVal = v.text, v
		}
		s.Name, _ = p.name(v, path)
	}
	if v, path := f.required("argv"); v != nil {
		s.Argv = p.argv(v, path)
	}
	if v, path := f.get("env"); v != nil {
		s.Env = p.env(v, path)
	}
	if v, path := f.get("cwd"); v != nil {
		s.Cwd, _ = p.absPath(v, path)
	}

	// Credentials: the service's own, else the VM's. Root is never a
	// default: it takes an explicit "uid": 0 somewhere.
	uid, gid := p.optID(f, "uid"), p.optID(f, "gid")
	if !uid.present {
		uid = vmUID
	}
	if !gid.present {
		gid = vmGID
	}
	if !uid.present {
		p.errorf(v.pos, join(path, "uid"), `no uid: set it, or a VM-level uid; root requires an explicit "uid": 0`)
	}
	if !gid.present {
		switch {
		case uid.ok && uid.val == 0:
			gid = optID{present: true, ok: true, val: 0}
		case uid.present && !uid.ok:
			// the uid is already reported; whether gid may default is unknown
		default:
			p.errorf(v.pos, join(path, "gid"), "no gid: set it, or a VM-level gid")
		}
	}
	s.UID, s.GID = uid.val, gid.val

	if v, path := f.get("groups"); v != nil {
		s.Groups = p.groups(v, path)
	}
	if v, path := f.get("capabilities"); v != nil {
		s.Capabilities = p.capabilities(v, path)
	}
	if v, path := f.get("private_tmp"); v != nil {
		s.PrivateTmp, _ = p.size(v, path, "")
	}
	if v, path := f.get("private_shm"); v != nil {
		s.PrivateShm, _ = p.size(v, path, "")
	}
	if v, path := f.get("user_namespaces"); v != nil {
		s.UserNamespaces, _ = p.boolean(v, path)
	}
	if v, path := f.get("syscalls"); v != nil {
		s.Syscalls = p.syscalls(v, path)
	}

	var fds []fdRef
	if v, path := f.get("sockets"); v != nil {
		elems, _ := p.array(v, path)
		for i, e := range elems {
			sock, ref, fd := p.socket(e, index(path, i), s.UID, s.GID)
			if ref.v != nil {
				refs.sockets = append(refs.sockets, ref)
			}
			if fd.v != nil {
				fds = append(fds, fd)
			}
			s.Sockets = append(s.Sockets, sock)
		}
	}
	if v, path := f.get("devices"); v != nil {
		elems, _ := p.array(v, path)
		for i, e := range elems {
			df, ok := p.object(e, index(path, i))
			if !ok {
				continue
			}
			var d Device
			if v, path := df.required("path"); v != nil {
				d.Path, _ = p.absPath(v, path)
			}
			// Without fd the node only appears in the service's /dev.
			if v, path := df.get("fd"); v != nil {
				if n, ok := p.fd(v, path); ok {
					d.FD = n
					fds = append(fds, fdRef{n, v, path})
				}
			}
			s.Devices = append(s.Devices, d)
		}
	}
	if v, path := f.get("connect"); v != nil {
		if elems, ok := p.array(v, path); ok {
			for i, e := range elems {
				if c, ok := p.socketPath(e, index(path, i)); ok {
					s.Connect = append(s.Connect, c)
				}
			}
			if s.Connect == nil {
				s.Connect = []string{} // given and empty: connect to none
			}
		}
	}
	if v, path := f.get("network"); v != nil {
		s.Network, _ = enum(p, v, path, NetworkNone, NetworkHost)
	}
	if v, path := f.get("taps"); v != nil {
		s.Taps = p.taps(v, path, refs, &fds)
	}
	if v, path := f.get("landlock_paths"); v != nil {
		s.Landlock = p.landlockPaths(v, path)
	}
	if v, path := f.get("limits"); v != nil {
		p.limits(v, path, &s.Limits)
	}
	if v, path := f.get("rlimits"); v != nil {
		s.Rlimits = p.rlimits(v, path)
	}
	if v, path := f.get("after"); v != nil {
		if elems, ok := p.array(v, path); ok {
			refs.afterVal = v
			for i, e := range elems {
				if name, ok := p.str(e, index(path, i)); ok {
					s.After = append(s.After, name)
					refs.after = append(refs.after, nameRef{name, e, index(path, i)})
				}
			}
		}
	}
	if v, path := f.get("ready"); v != nil {
		if fd := p.ready(v, path, &s.Ready); fd.v != nil {
			fds = append(fds, fd)
		}
	}
	if v, path := f.get("on_exit"); v != nil {
		s.OnExit, _ = enum(p, v, path, OnExitShutdown, OnExitRestart, OnExitIgnore)
	}
	if v, path := f.get("stop_signal"); v != nil {
		s.StopSignal, _ = p.signal(v, path)
	}
	if v, path := f.get("vmm"); v != nil {
		refs.vmmVal = v
		s.VMM = p.vmm(v, path)
	}

	// Each fd number can be handed over once. The later one in the file
	// is the one reported.
	sort.SliceStable(fds, func(i, j int) bool { return fds[i].v.pos < fds[j].v.pos })
	used := map[int]string{}
	for _, r := range fds {
		if first, dup := used[r.fd]; dup {
			p.errorf(r.v.pos, r.path, "fd %d already used by %s", r.fd, first)
			continue
		}
		used[r.fd] = r.path
	}
	return s, refs
}

func (p *parser) argv(v *value, path string) []string {
	elems, ok := p.array(v, path)
	if !ok {
		return nil
	}
	if len(elems) == 0 {
		p.errorf(v.pos, path, "must not be empty")
		return nil
	}
	argv := make([]string, 0, len(elems))
	for i, e := range elems {
		epath := index(path, i)
		a, ok := p.str(e, epath)
		if !ok {
			continue
		}
		switch {
		case strings.IndexByte(a, 0) >= 0:
			p.errorf(e.pos, epath, "must not contain NUL")
		case i == 0 && a == "":
			p.errorf(e.pos, epath, "must not be empty")
		case i == 0 && !filepath.IsAbs(a) && strings.Contains(a, "/"):
			// A relative path would depend on the working directory;
			// the contract allows an absolute path or a name looked up in PATH.
			p.errorf(e.pos, epath, "must be an absolute path or a command name without '/'")
		}
		argv = append(argv, a)
	}
	return argv
}

func (p *parser) env(v *value, path string) map[string]string {
	if !p.is(v, path, kindObject, "object") {
		return nil
	}
	env := make(map[string]string, len(v.members))
	for _, mb := range v.members {
		kpath := join(path, mb.key)
		switch {
		case mb.key == "":
			p.errorf(mb.pos, kpath, "variable name must not be empty")
			continue
		case strings.ContainsRune(mb.key, '='):
			p.errorf(mb.pos, kpath, "variable name must not contain '='")
			continue
		case strings.IndexByte(mb.key, 0) >= 0:
			p.errorf(mb.pos, kpath, "variable name must not contain NUL")
			continue
		}
		val, ok := p.str(mb.val, kpath)
		if !ok {
			continue
		}
		if strings.IndexByte(val, 0) >= 0 {
			p.errorf(mb.val.pos, kpath, "must not contain NUL")
			continue
		}
		env[mb.key] = val
	}
	return env
}

func (p *parser) groups(v *value, path string) []uint32 {
	elems, ok := p.array(v, path)
	if !ok {
		return nil
	}
	var out []uint32
	seen := map[uint32]bool{}
	for i, e := range elems {
		g, ok := p.id(e, index(path, i))
		if !ok {
			continue
		}
		if seen[g] {
			p.errorf(e.pos, index(path, i), "duplicate group %d", g)
			continue
		}
		seen[g] = true
		out = append(out, g)
	}
	return out
}

func (p *parser) capabilities(v *value, path string) []Capability {
	elems, ok := p.array(v, path)
	if !ok {
		return nil
	}
	var out []Capability
	seen := map[string]bool{}
	for i, e := range elems {
		epath := index(path, i)
		name, ok := p.str(e, epath)
		if !ok {
			continue
		}
		n, known := capabilities[name]
		switch {
		case !known:
			hint := ""
			guess := strings.ToUpper(name)
			if !strings.HasPrefix(guess, "CAP_") {
				guess = "CAP_" + guess
			}
			if _, ok := capabilities[guess]; ok {
				hint = ", did you mean " + quote(guess) + "?"
			}
			p.errorf(e.pos, epath, "unknown capability %s%s", quote(name), hint)
		case seen[name]:
			p.errorf(e.pos, epath, "duplicate capability %s", name)
		default:
			seen[name] = true
			out = append(out, Capability{Name: name, Value: n})
		}
	}
	return out
}

const (
	defaultSocketMode = 0o600 // a socket's "mode" unless given
	permBits          = 0o777 // what "mode" may set: no setuid, setgid or sticky bit
)

func (p *parser) socket(v *value, path string, uid, gid uint32) (Socket, nameRef, fdRef) {
	sock := Socket{Mode: defaultSocketMode, UID: uid, GID: gid}
	var ref nameRef
	var fd fdRef
	f, ok := p.object(v, path)
	if !ok {
		return sock, ref, fd
	}
	if v, path := f.required("path"); v != nil {
		if s, ok := p.socketPath(v, path); ok {
			sock.Path = s
			ref = nameRef{s, v, path}
		}
	}
	if v, path := f.required("fd"); v != nil {
		if n, ok := p.fd(v, path); ok {
			sock.FD = n
			fd = fdRef{n, v, path}
		}
	}
	if v, path := f.get("mode"); v != nil {
		if v.kind != kindString {
			// A number is refused: 600 and 0600 would be easy to confuse.
			p.typeError(v, path, `octal string like "0600"`)
		} else if m, err := strconv.ParseUint(v.text, 8, 32); err != nil || m > permBits {
			p.errorf(v.pos, path, `must be octal permission bits 0000 to 0777, like "0600"`)
		} else {
			sock.Mode = uint32(m)
		}
	}
	if v, path := f.get("uid"); v != nil {
		sock.UID, _ = p.id(v, path)
	}
	if v, path := f.get("gid"); v != nil {
		sock.GID, _ = p.id(v, path)
	}
	return sock, ref, fd
}

func (p *parser) landlockPaths(v *value, path string) *LandlockPaths {
	f, ok := p.object(v, path)
	if !ok {
		return nil
	}
	lp := &LandlockPaths{}
	if v, path := f.get("read"); v != nil {
		lp.Read = p.pathList(v, path)
	}
	if v, path := f.get("write"); v != nil {
		lp.Write = p.pathList(v, path)
	}
	if v, path := f.get("execute"); v != nil {
		lp.Execute = p.pathList(v, path)
	}
	return lp
}

// ready parses the readiness check; it returns the notify fd, if any, for
// the check that fds are distinct.
func (p *parser) ready(v *value, path string, r *Ready) fdRef {
	var fd fdRef
	f, ok := p.object(v, path)
	if !ok {
		return fd
	}
	r.Timeout = DefaultReadyTimeout
	if tv, tpath := f.get("timeout"); tv != nil {
		if s, ok := p.str(tv, tpath); ok {
			d, err := time.ParseDuration(s)
			switch {
			case err != nil:
				p.errorf(tv.pos, tpath, `invalid duration %s (want e.g. "60s", or "0" for none)`, quote(s))
			case d < 0:
				p.errorf(tv.pos, tpath, "must not be negative")
			default:
				r.Timeout = d
			}
		}
	}
	if rules := []string{"socket", "exists", "notify_fd"}; f.count(rules...) != 1 {
		p.errorf(v.pos, path, "must set exactly one of %s", quoteList(rules))
	}
	if v, path := f.get("socket"); v != nil {
		r.Socket, _ = p.socketPath(v, path)
	}
	if v, path := f.get("exists"); v != nil {
		r.Exists, _ = p.absPath(v, path)
	}
	if v, path := f.get("notify_fd"); v != nil {
		if n, ok := p.fd(v, path); ok {
			r.NotifyFD = n
			fd = fdRef{n, v, path}
		}
	}
	return fd
}

func (p *parser) vmm(v *value, path string) *VMM {
	f, ok := p.object(v, path)
	if !ok {
		return nil
	}
	if ways := []string{"qmp", "cloud_hypervisor", "signal"}; f.count(ways...) != 1 {
		p.errorf(v.pos, path, "must set exactly one of %s", quoteList(ways))
	}
	m := &VMM{}
	if v, path := f.get("qmp"); v != nil {
		m.QMP, _ = p.socketPath(v, path)
	}
	if v, path := f.get("cloud_hypervisor"); v != nil {
		m.CloudHypervisor, _ = p.socketPath(v, path)
	}
	if v, path := f.get("signal"); v != nil {
		m.Signal, _ = p.signal(v, path)
	}
	return m
}
