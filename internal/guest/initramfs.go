package guest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Initramfs writes a newc ("070701") cpio archive, the format the Linux
// kernel unpacks into its initial rootfs. Parent directories of every entry
// are emitted automatically (mode 0755) before the entry itself. Names are
// guest paths; a leading "/" is optional.
//
// Each name may be written once; writing a directory that already exists
// (explicitly or implicitly) is a no-op. Close writes the trailer; it does
// not close the underlying writer.
type Initramfs struct {
	w     io.Writer
	ino   uint32
	names map[string]bool
	err   error
}

// NewInitramfs returns an archive writer on w.
func NewInitramfs(w io.Writer) *Initramfs {
	return &Initramfs{w: w, ino: 1, names: make(map[string]bool)}
}

const (
	cpioModeDir  = 0o040000
	cpioModeReg  = 0o100000
	cpioModeLnk  = 0o120000
	cpioModeChr  = 0o020000
	cpioTrailer  = "TRAILER!!!"
	cpioNewcMagc = "070701"
)

func cleanName(name string) (string, error) {
	n := path.Clean("/" + name)
	if n == "/" {
		return "", fmt.Errorf("initramfs: invalid entry name %q", name)
	}
	return strings.TrimPrefix(n, "/"), nil
}

func (a *Initramfs) header(name string, mode uint32, size int, rdevMajor, rdevMinor uint32) error {
	if a.err != nil {
		return a.err
	}
	nlink := uint32(1)
	if mode&0o170000 == cpioModeDir {
		nlink = 2
	}
	var hdr bytes.Buffer
	fmt.Fprintf(&hdr, "%s%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		cpioNewcMagc,
		a.ino, mode, 0, 0, nlink, 0, size,
		0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	a.ino++
	hdr.WriteString(name)
	hdr.WriteByte(0)
	for hdr.Len()%4 != 0 {
		hdr.WriteByte(0)
	}
	_, a.err = a.w.Write(hdr.Bytes())
	return a.err
}

func (a *Initramfs) pad(n int) error {
	if a.err != nil {
		return a.err
	}
	if r := n % 4; r != 0 {
		_, a.err = a.w.Write(make([]byte, 4-r))
	}
	return a.err
}

// parents emits the missing parent directories of name.
func (a *Initramfs) parents(name string) error {
	dir := path.Dir(name)
	if dir == "." || a.names[dir] {
		return nil
	}
	if err := a.parents(dir); err != nil {
		return err
	}
	a.names[dir] = true
	return a.header(dir, cpioModeDir|0o755, 0, 0, 0)
}

func (a *Initramfs) claim(name string) (string, error) {
	n, err := cleanName(name)
	if err != nil {
		return "", err
	}
	if a.names[n] {
		return "", fmt.Errorf("initramfs: duplicate entry %q", n)
	}
	if err := a.parents(n); err != nil {
		return "", err
	}
	a.names[n] = true
	return n, nil
}

// Dir adds a directory.
func (a *Initramfs) Dir(name string, perm os.FileMode) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if a.names[n] {
		return nil
	}
	if err := a.parents(n); err != nil {
		return err
	}
	a.names[n] = true
	return a.header(n, cpioModeDir|uint32(perm.Perm()), 0, 0, 0)
}

// File adds a regular file with the given content and permissions.
func (a *Initramfs) File(name string, perm os.FileMode, data []byte) error {
	n, err := a.claim(name)
	if err != nil {
		return err
	}
	if err := a.header(n, cpioModeReg|uint32(perm&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky)), len(data), 0, 0); err != nil {
		return err
	}
	if _, a.err = a.w.Write(data); a.err != nil {
		return a.err
	}
	return a.pad(len(data))
}

// CopyFile adds the host file src as name. perm 0 keeps the host file's
// permission bits.
func (a *Initramfs) CopyFile(name, src string, perm os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if perm == 0 {
		fi, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		perm = fi.Mode().Perm()
	}
	return a.File(name, perm, data)
}

// Symlink adds a symbolic link name -> target.
func (a *Initramfs) Symlink(name, target string) error {
	n, err := a.claim(name)
	if err != nil {
		return err
	}
	if err := a.header(n, cpioModeLnk|0o777, len(target), 0, 0); err != nil {
		return err
	}
	if _, a.err = io.WriteString(a.w, target); a.err != nil {
		return a.err
	}
	return a.pad(len(target))
}

// CharDev adds a character device node.
func (a *Initramfs) CharDev(name string, perm os.FileMode, major, minor uint32) error {
	n, err := a.claim(name)
	if err != nil {
		return err
	}
	return a.header(n, cpioModeChr|uint32(perm.Perm()), 0, major, minor)
}

// Has reports whether name (or a directory of that name) was written.
func (a *Initramfs) Has(name string) bool {
	n, err := cleanName(name)
	return err == nil && a.names[n]
}

// Close writes the trailer entry.
func (a *Initramfs) Close() error {
	if err := a.header(cpioTrailer, 0, 0, 0, 0); err != nil {
		return err
	}
	return nil
}

// File is an extra file for BuildInitramfs: either the host file Source or
// the literal Content (Content wins when both are set). Mode 0 means 0644
// for Content, and the host file's permissions for Source.
type File struct {
	Source  string
	Content []byte
	Mode    os.FileMode
}

// InitramfsOptions describes a busybox initramfs.
type InitramfsOptions struct {
	// Init is the text of /init (mode 0755), the guest's PID 1; normally a
	// "#!/bin/sh" script. Required.
	Init string
	// KernelDir is the directory returned by Kernel. Required when Modules
	// is not empty.
	KernelDir string
	// Modules are module names ("evdev", "button"; "-" and "_" are
	// equivalent). Each module and everything it depends on according to
	// modules.dep is copied to /lib/modules/<kver>/<path>, decompressed
	// (.ko.xz -> .ko, with the host's xz), and /etc/modules.load lists
	// their guest paths in load order (dependencies first). A reduced
	// modules.dep is written too, so busybox modprobe works. Modules
	// built into the kernel (modules.builtin) are skipped silently.
	//
	// Why decompress: busybox insmod first tries finit_module(fd, 0) on
	// the file, which the kernel rejects for a .ko.xz ("Invalid ELF header
	// magic" on the console), then falls back to decompressing itself; it
	// works but is noisy and depends on busybox's xz support.
	Modules []string
	// Files are extra files by guest path. They replace busybox applet
	// links of the same name.
	Files map[string]File
	// Programs are host programs (absolute paths) copied to the same
	// paths in the guest together with the dynamic loader and the
	// libraries they need (SharedObjects), so that dynamically linked
	// tools such as Debian's s6 run there. Files wins over Programs for a
	// path both name.
	Programs []string
	// Busybox is the static busybox binary to install as /bin/busybox;
	// default /bin/busybox (Debian's busybox-static). Links for every
	// applet it lists (busybox --list-full) are created in the archive.
	Busybox string
	// Gzip compresses the archive. Uncompressed archives boot slightly
	// faster under TCG; gzip is worth it for large payloads.
	Gzip bool
}

// ModulesLoadList is the guest path of the module load list written by
// BuildInitramfs.
const ModulesLoadList = "/etc/modules.load"

// LoadModulesShell is a shell fragment for /init scripts that loads every
// module listed in ModulesLoadList, in order, and exits the script with a
// GUEST-FAIL line if one fails. Modules built into the kernel are absent
// from the list, so it is a no-op for them.
const LoadModulesShell = `if [ -f ` + ModulesLoadList + ` ]; then
	while read -r m; do
		insmod "$m" || fail "insmod $m"
	done < ` + ModulesLoadList + `
fi
`

// BuildInitramfs writes a busybox initramfs to the file out.
func BuildInitramfs(out string, opts InitramfsOptions) (err error) {
	if opts.Init == "" {
		return errors.New("initramfs: Init is empty")
	}
	bb := opts.Busybox
	if bb == "" {
		bb = "/bin/busybox"
	}
	if err := checkStatic(bb); err != nil {
		return err
	}
	applets, err := busyboxApplets(bb)
	if err != nil {
		return err
	}
	type modfile struct{ src, dst string }
	var mods []modfile
	var modDep []string
	var kver string
	if len(opts.Modules) > 0 {
		if opts.KernelDir == "" {
			return errors.New("initramfs: Modules given without KernelDir")
		}
		kver, err = KernelRelease(opts.KernelDir)
		if err != nil {
			return err
		}
		order, deps, err := resolveModules(filepath.Join(opts.KernelDir, "modules"), opts.Modules)
		if err != nil {
			return err
		}
		base := "/lib/modules/" + kver + "/"
		for _, rel := range order {
			var d []string
			for _, x := range deps[rel] {
				d = append(d, uncompressedName(x))
			}
			mods = append(mods, modfile{filepath.Join(opts.KernelDir, "modules", rel), base + uncompressedName(rel)})
			modDep = append(modDep, uncompressedName(rel)+":"+joinPrefixed("", d))
		}
	}

	files, err := withPrograms(opts.Files, opts.Programs)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(out)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	var w io.Writer = bw
	var gz *gzip.Writer
	if opts.Gzip {
		gz, _ = gzip.NewWriterLevel(bw, gzip.BestSpeed)
		w = gz
	}
	a := NewInitramfs(w)

	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "run", "mnt", "root", "var/log", "var/run"} {
		perm := os.FileMode(0o755)
		if d == "tmp" {
			perm = 0o1777
		}
		if err := a.Dir(d, perm); err != nil {
			return err
		}
	}
	// The kernel opens /dev/console for init before anything is mounted.
	if err := a.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := a.CharDev("dev/null", 0o666, 1, 3); err != nil {
		return err
	}
	if err := a.CopyFile("bin/busybox", bb, 0o755); err != nil {
		return err
	}
	if err := a.File("init", 0o755, []byte(opts.Init)); err != nil {
		return err
	}
	extra := make([]string, 0, len(files))
	for name := range files {
		n, err := cleanName(name)
		if err != nil {
			return err
		}
		if n == "init" || n == "bin/busybox" {
			return fmt.Errorf("initramfs: Files may not replace /%s", n)
		}
		extra = append(extra, name)
	}
	sort.Strings(extra)
	for _, name := range extra {
		ef := files[name]
		if ef.Content != nil || ef.Source == "" {
			mode := ef.Mode
			if mode == 0 {
				mode = 0o644
			}
			err = a.File(name, mode, ef.Content)
		} else {
			err = a.CopyFile(name, ef.Source, ef.Mode)
		}
		if err != nil {
			return err
		}
	}
	for _, m := range mods {
		data, err := readModule(m.src)
		if err != nil {
			return err
		}
		if err := a.File(m.dst, 0o644, data); err != nil {
			return err
		}
	}
	if len(mods) > 0 {
		var list strings.Builder
		for _, m := range mods {
			list.WriteString(m.dst + "\n")
		}
		if !a.Has(ModulesLoadList) {
			if err := a.File(ModulesLoadList, 0o644, []byte(list.String())); err != nil {
				return err
			}
		}
		if err := a.File("/lib/modules/"+kver+"/modules.dep", 0o644, []byte(strings.Join(modDep, "\n")+"\n")); err != nil {
			return err
		}
	}
	for _, ap := range applets {
		if a.Has(ap) || ap == "bin/busybox" {
			continue
		}
		if err := a.Symlink(ap, "/bin/busybox"); err != nil {
			return err
		}
	}
	if err := a.Close(); err != nil {
		return err
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// withPrograms returns files plus each program and its shared objects,
// at their host paths.
func withPrograms(files map[string]File, programs []string) (map[string]File, error) {
	all := make(map[string]File, len(files))
	for name, f := range files {
		all[name] = f
	}
	add := func(p string) {
		if _, ok := all[p]; !ok {
			all[p] = File{Source: p}
		}
	}
	for _, p := range programs {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("initramfs: program %q: not an absolute path", p)
		}
		libs, err := SharedObjects(p)
		if err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
		add(p)
		for _, l := range libs {
			add(l)
		}
	}
	return all, nil
}

// uncompressedName maps "x.ko.xz" (or .zst, .gz) to "x.ko".
func uncompressedName(rel string) string {
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(rel, ".ko"+ext) {
			return strings.TrimSuffix(rel, ext)
		}
	}
	return rel
}

// readModule returns the uncompressed content of a kernel module file.
func readModule(src string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(src, ".xz"):
		tool = "xz"
	case strings.HasSuffix(src, ".zst"):
		tool = "zstd"
	case strings.HasSuffix(src, ".gz"):
		tool = "gzip"
	default:
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
		return b, nil
	}
	var stderr bytes.Buffer
	cmd := exec.Command(tool, "-dc", src)
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("initramfs: %s -dc %s: %v %s (install xz-utils/zstd)", tool, src, err, strings.TrimSpace(stderr.String()))
	}
	if !bytes.HasPrefix(b, []byte("\x7fELF")) {
		return nil, fmt.Errorf("initramfs: %s: not an ELF module after decompression", src)
	}
	return b, nil
}

func joinPrefixed(prefix string, xs []string) string {
	var b strings.Builder
	for _, x := range xs {
		b.WriteString(" " + prefix + x)
	}
	return b.String()
}

// checkStatic fails unless bin is a statically linked ELF executable (no
// PT_INTERP): the initramfs carries no dynamic loader.
func checkStatic(bin string) error {
	ef, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("initramfs: busybox %s: %w (install busybox-static)", bin, err)
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("initramfs: %s is dynamically linked (install busybox-static)", bin)
		}
	}
	return nil
}

// busyboxApplets returns the applet paths (relative, "sbin/acpid") that bin
// provides. The busybox given runs on the host as well as in the guest (both
// x86_64), so it can list them itself.
func busyboxApplets(bin string) ([]string, error) {
	out, err := exec.Command(bin, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("initramfs: %s --list-full: %w", bin, err)
	}
	var res []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		n, err := cleanName(l)
		if err != nil {
			continue
		}
		res = append(res, n)
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("initramfs: %s lists no applets", bin)
	}
	return res, nil
}

func normModName(s string) string {
	s = path.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// resolveModules reads modules.dep under moddir and returns the relative
// module paths needed for names, dependencies first, plus each module's
// dependency list. A name that is built into the kernel (listed in
// modules.builtin) is skipped; an unknown name is an error.
func resolveModules(moddir string, names []string) (order []string, deps map[string][]string, err error) {
	depText, err := os.ReadFile(filepath.Join(moddir, "modules.dep"))
	if err != nil {
		return nil, nil, fmt.Errorf("initramfs: %w", err)
	}
	allDeps := make(map[string][]string)
	byName := make(map[string]string)
	for _, line := range strings.Split(string(depText), "\n") {
		mod, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		allDeps[mod] = strings.Fields(rest)
		byName[normModName(mod)] = mod
	}
	builtin := make(map[string]bool)
	if b, err := os.ReadFile(filepath.Join(moddir, "modules.builtin")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				builtin[normModName(l)] = true
			}
		}
	}
	deps = make(map[string][]string)
	seen := make(map[string]bool)
	var visit func(rel string)
	visit = func(rel string) {
		if seen[rel] {
			return
		}
		seen[rel] = true
		// modules.dep lists all (transitive) dependencies, the one
		// needed last first; load them in reverse.
		d := allDeps[rel]
		for i := len(d) - 1; i >= 0; i-- {
			visit(d[i])
		}
		deps[rel] = d
		order = append(order, rel)
	}
	for _, n := range names {
		nn := normModName(n)
		rel, ok := byName[nn]
		if !ok {
			if builtin[nn] {
				continue
			}
			return nil, nil, fmt.Errorf("initramfs: module %q not in %s/modules.dep", n, moddir)
		}
		visit(rel)
	}
	return order, deps, nil
}
