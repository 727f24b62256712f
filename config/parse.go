package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const namePattern = `^[a-z0-9][a-z0-9_-]{0,63}$`

// validName reports whether s matches [a-z0-9][a-z0-9_-]{0,63}. Written
// out rather than as a regexp: compiling that one costs 1.5 ms at every
// start of vmsup, and vmsup re-executes itself for each service launch.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] == '-' || s[0] == '_' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidName reports whether s is a valid VM or service name.
func ValidName(s string) bool { return validName(s) }

const (
	maxID      = 4294967294 // (uid_t)-1 means "unchanged" to the kernel, so it is no id
	minFD      = 3          // 0, 1 and 2 are the service's stdio
	maxFD      = 1023       // below the default soft RLIMIT_NOFILE
	maxPids    = 4194304    // PID_MAX_LIMIT: pids.max refuses anything larger
	sunPathMax = 107        // sizeof(sockaddr_un.sun_path) less the NUL

	// cpu.max periods the kernel accepts, and its default, in µs.
	minCPUPeriod     = 1000
	maxCPUPeriod     = 1000000
	defaultCPUPeriod = 100000

	defaultShutdownTimeout = 30 * time.Second

	// The one config reader stops reading here, so that "vmsup run
	// /dev/zero" and "vmsup validate /dev/zero" end at once: a real
	// config is a few KiB.
	maxConfigSize = 1 << 20
)

// Load reads and parses the config at path, or standard input when path
// is "-". A read failure is a single error with an empty path.
func Load(path string) (*VM, []*Error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, []*Error{err}
	}
	return Parse(data)
}

// ReadFile reads the config at path ("-": standard input), refusing one
// larger than the size cap. It is the one reader of run, validate and
// PID 1 (which reads its copy with Read).
func ReadFile(path string) ([]byte, *Error) {
	if path == "-" {
		return Read(os.Stdin, "standard input")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, readError(path, err)
	}
	defer f.Close()
	return Read(f, path)
}

// Read reads a config from r (named name in errors), refusing one larger
// than the size cap.
func Read(r io.Reader, name string) ([]byte, *Error) {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigSize+1))
	if err != nil {
		return nil, readError(name, err)
	}
	if len(data) > maxConfigSize {
		return nil, &Error{Msg: fmt.Sprintf("cannot read %s: larger than %d bytes", name, maxConfigSize)}
	}
	return data, nil
}

func readError(name string, err error) *Error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // name already says which file
	}
	return &Error{Msg: fmt.Sprintf("cannot read %s: %v", name, err)}
}

// Parse parses and validates a JSON config. It returns either the VM, with
// every default filled in, or every problem found, in document order.
func Parse(data []byte) (*VM, []*Error) {
	p := &parser{}
	root, serr := p.readTree(data)
	if serr != nil {
		return nil, []*Error{serr}
	}
	vm := p.vm(root)
	if len(p.errs) > 0 {
		return nil, p.sorted()
	}
	return vm, nil
}

// optID is a uid or gid as far as the config got. present is true when the
// key was there, even with a bad value, so that no "no uid" error follows
// the error about the value.
type optID struct {
	present, ok bool
	val         uint32
}

func (p *parser) optID(f fields, key string) optID {
	v, path := f.get(key)
	if v == nil {
		return optID{}
	}
	id, ok := p.id(v, path)
	return optID{present: true, ok: ok, val: id}
}

func (p *parser) id(v *value, path string) (uint32, bool) {
	n, ok := p.integer(v, path, 0, maxID)
	return uint32(n), ok
}

func (p *parser) vm(v *value) *VM {
	f, ok := p.object(v, "", "name", "runtime_dir", "cgroup", "uid", "gid",
		"landlock", "shutdown_timeout", "mount", "services")
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
			vm.RuntimeDir = "/run/vmsup/" + name
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
		vm.Landlock, _ = p.enum(v, path, LandlockRequired, LandlockBestEffort, LandlockOff)
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

func (p *parser) name(v *value, path string) (string, bool) {
	s, ok := p.str(v, path)
	if !ok {
		return "", false
	}
	if !validName(s) {
		p.errorf(v.pos, path, "must match %s", namePattern)
		return "", false
	}
	return s, true
}

// absPath checks for an absolute path in canonical form. Clean is required
// so that paths compare equal as strings (unique socket paths, for one).
func (p *parser) absPath(v *value, path string) (string, bool) {
	s, ok := p.str(v, path)
	if !ok {
		return "", false
	}
	switch {
	case strings.IndexByte(s, 0) >= 0:
		p.errorf(v.pos, path, "must not contain NUL")
	case !filepath.IsAbs(s):
		p.errorf(v.pos, path, "must be an absolute path")
	case filepath.Clean(s) != s:
		p.errorf(v.pos, path, "must be a clean path, like %s", quote(filepath.Clean(s)))
	default:
		return s, true
	}
	return "", false
}

// socketPath is absPath for a path that is bound or connected to as a
// UNIX socket, which the kernel limits in length.
func (p *parser) socketPath(v *value, path string) (string, bool) {
	s, ok := p.absPath(v, path)
	if ok && len(s) > sunPathMax {
		p.errorf(v.pos, path, "too long for a UNIX socket (at most %d bytes)", sunPathMax)
		return "", false
	}
	return s, ok
}

func (p *parser) pathList(v *value, path string) []string {
	elems, ok := p.array(v, path)
	if !ok {
		return nil
	}
	var out []string
	for i, e := range elems {
		if s, ok := p.absPath(e, index(path, i)); ok {
			out = append(out, s)
		}
	}
	return out
}

func (p *parser) mount(v *value, path string, m *Mount) {
	f, ok := p.object(v, path, "propagation", "readonly_paths", "masked_paths", "binds")
	if !ok {
		return
	}
	if v, path := f.get("propagation"); v != nil {
		m.Propagation, _ = p.enum(v, path, PropagationSlave, PropagationPrivate)
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
			bf, ok := p.object(e, index(path, i), "source", "target", "readonly")
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

// fdRef is a file descriptor number a service asks for.
type fdRef struct {
	fd   int
	v    *value
	path string
}

func (p *parser) service(v *value, path string, vmUID, vmGID optID) (Service, *svcRefs) {
	s := Service{OnExit: OnExitShutdown, StopSignal: unix.SIGTERM, Network: NetworkNone}
	refs := &svcRefs{path: path}
	f, ok := p.object(v, path, "name", "argv", "env", "cwd", "uid", "gid", "groups",
		"capabilities", "private_tmp", "private_shm", "sockets", "devices",
		"landlock_paths", "limits", "rlimits", "after", "ready", "on_exit",
		"stop_signal", "vmm", "user_namespaces", "connect", "syscalls",
		"network", "taps")
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
			df, ok := p.object(e, index(path, i), "path", "fd")
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
		s.Network, _ = p.enum(v, path, NetworkNone, NetworkHost)
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
		s.OnExit, _ = p.enum(v, path, OnExitShutdown, OnExitRestart, OnExitIgnore)
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

// fd checks a file descriptor number the service receives.
func (p *parser) fd(v *value, path string) (int, bool) {
	n, ok := p.integer(v, path, minFD, maxFD)
	return int(n), ok
}

func (p *parser) socket(v *value, path string, uid, gid uint32) (Socket, nameRef, fdRef) {
	sock := Socket{Mode: 0o600, UID: uid, GID: gid}
	var ref nameRef
	var fd fdRef
	f, ok := p.object(v, path, "path", "fd", "mode", "uid", "gid")
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
		} else if m, err := strconv.ParseUint(v.text, 8, 32); err != nil || m > 0o777 {
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
	f, ok := p.object(v, path, "read", "write", "execute")
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

// parseSize parses a size string: digits with an optional K, M or G
// suffix, each a power of 1024.
func parseSize(s string) (int64, bool) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, false
	}
	return n * mult, true
}

// size checks a size greater than 0: a JSON integer of bytes, or a string
// for parseSize. keyword, if not "", is also accepted and gives Unlimited.
func (p *parser) size(v *value, path, keyword string) (int64, bool) {
	want := `integer or size string like "64M"`
	if keyword != "" {
		want = fmt.Sprintf(`integer, size string like "64M" or %s`, quote(keyword))
	}
	var n int64
	switch v.kind {
	case kindNumber:
		if !integral(v.text) {
			p.errorf(v.pos, path, "must be an integer")
			return 0, false
		}
		var err error
		if n, err = strconv.ParseInt(v.text, 10, 64); err != nil {
			p.errorf(v.pos, path, "must be between 1 and %d", int64(math.MaxInt64))
			return 0, false
		}
	case kindString:
		if keyword != "" && v.text == keyword {
			return Unlimited, true
		}
		var ok bool
		if n, ok = parseSize(v.text); !ok {
			alt := ""
			if keyword != "" {
				alt = ", or " + quote(keyword)
			}
			p.errorf(v.pos, path, "invalid size %s (want bytes, or a number with K, M or G%s)", quote(v.text), alt)
			return 0, false
		}
	default:
		p.typeError(v, path, want)
		return 0, false
	}
	if n <= 0 {
		p.errorf(v.pos, path, "must be greater than 0")
		return 0, false
	}
	return n, true
}

func (p *parser) limits(v *value, path string, l *Limits) {
	f, ok := p.object(v, path, "memory_max", "memory_high", "pids_max", "cpu_weight", "cpu_max")
	if !ok {
		return
	}
	if v, path := f.get("memory_max"); v != nil {
		l.MemoryMax, _ = p.size(v, path, "max")
	}
	if v, path := f.get("memory_high"); v != nil {
		l.MemoryHigh, _ = p.size(v, path, "max")
	}
	if v, path := f.get("pids_max"); v != nil {
		switch {
		case v.kind == kindNumber:
			l.PidsMax, _ = p.integer(v, path, 1, maxPids)
		case v.kind == kindString && v.text == "max":
			l.PidsMax = Unlimited
		case v.kind == kindString:
			p.errorf(v.pos, path, `must be an integer or "max"`)
		default:
			p.typeError(v, path, `integer or "max"`)
		}
	}
	if v, path := f.get("cpu_weight"); v != nil {
		n, _ := p.integer(v, path, 1, 10000)
		l.CPUWeight = uint64(n)
	}
	if v, path := f.get("cpu_max"); v != nil {
		if s, ok := p.str(v, path); ok {
			if norm, msg := cpuMax(s); msg != "" {
				p.errorf(v.pos, path, "%s", msg)
			} else {
				l.CPUMax = norm
			}
		}
	}
}

// cpuMax normalises "QUOTA [PERIOD]" or "max [PERIOD]" to the two-field
// form cpu.max takes, or returns why it cannot.
func cpuMax(s string) (string, string) {
	const form = `must be "QUOTA [PERIOD]" or "max [PERIOD]" in microseconds`
	parts := strings.Split(s, " ")
	if len(parts) > 2 {
		return "", form
	}
	quota, period := parts[0], strconv.Itoa(defaultCPUPeriod)
	if len(parts) == 2 {
		period = parts[1]
	}
	if quota != "max" {
		q, err := strconv.ParseUint(quota, 10, 63)
		if err != nil {
			return "", form
		}
		// The kernel refuses a quota below 1ms; say so now rather than at start.
		if q < minCPUPeriod {
			return "", fmt.Sprintf("quota must be at least %d", minCPUPeriod)
		}
		quota = strconv.FormatUint(q, 10)
	}
	n, err := strconv.ParseUint(period, 10, 63)
	if err != nil {
		return "", form
	}
	if n < minCPUPeriod || n > maxCPUPeriod {
		return "", fmt.Sprintf("period must be between %d and %d", minCPUPeriod, maxCPUPeriod)
	}
	return quota + " " + strconv.FormatUint(n, 10), ""
}

func (p *parser) rlimits(v *value, path string) []Rlimit {
	if !p.is(v, path, kindObject, "object") {
		return nil
	}
	var out []Rlimit
	for _, mb := range v.members {
		kpath := join(path, mb.key)
		r, known := rlimits[mb.key]
		if !known {
			hint := ""
			guess := strings.ToLower(strings.TrimPrefix(mb.key, "RLIMIT_"))
			if _, ok := rlimits[guess]; ok {
				hint = ", did you mean " + quote(guess) + "?"
			}
			p.errorf(mb.pos, kpath, "unknown rlimit%s", hint)
			continue
		}
		if n, ok := p.rlimitValue(mb.val, kpath, r.sized); ok {
			out = append(out, Rlimit{Name: mb.key, Resource: r.resource, Value: n})
		}
	}
	// Sorted so that the order of the JSON object does not matter.
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (p *parser) rlimitValue(v *value, path string, sized bool) (uint64, bool) {
	want := `non-negative integer or "unlimited"`
	if sized {
		want = `non-negative integer, size string like "64M" or "unlimited"`
	}
	switch v.kind {
	case kindNumber:
		if !integral(v.text) {
			p.errorf(v.pos, path, "must be an integer")
			return 0, false
		}
		n, err := strconv.ParseUint(v.text, 10, 64)
		if err != nil {
			p.errorf(v.pos, path, "must be between 0 and %d", uint64(math.MaxUint64))
			return 0, false
		}
		return n, true
	case kindString:
		if v.text == "unlimited" {
			return unix.RLIM_INFINITY, true
		}
		if sized {
			if n, ok := parseSize(v.text); ok {
				return uint64(n), true
			}
		}
		p.errorf(v.pos, path, "must be a %s", want)
		return 0, false
	}
	p.typeError(v, path, want)
	return 0, false
}

// ready parses the readiness check; it returns the notify fd, if any, for
// the check that fds are distinct.
func (p *parser) ready(v *value, path string, r *Ready) fdRef {
	var fd fdRef
	f, ok := p.object(v, path, "socket", "exists", "notify_fd", "timeout")
	if !ok {
		return fd
	}
	r.Timeout = DefaultReadyTimeout
	rules := len(f.m)
	if tv, tpath := f.get("timeout"); tv != nil {
		rules--
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
	if rules != 1 {
		p.errorf(v.pos, path, `must set exactly one of "socket", "exists", "notify_fd"`)
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

func (p *parser) signal(v *value, path string) (syscall.Signal, bool) {
	s, ok := p.str(v, path)
	if !ok {
		return 0, false
	}
	n, msg := signal(s)
	if msg != "" {
		p.errorf(v.pos, path, "%s", msg)
		return 0, false
	}
	return n, true
}

func (p *parser) vmm(v *value, path string) *VMM {
	f, ok := p.object(v, path, "qmp", "cloud_hypervisor", "signal")
	if !ok {
		return nil
	}
	if len(f.m) != 1 {
		p.errorf(v.pos, path, `must set exactly one of "qmp", "cloud_hypervisor", "signal"`)
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

func quote(s string) string { return strconv.Quote(s) }
