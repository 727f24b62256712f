package guest

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
)

// libraryDirs are where the dynamic loader of a Debian amd64 host finds
// libraries that carry no path (ld.so.conf's multiarch directories, then
// the default ones).
var libraryDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// SharedObjects returns what the host program prog needs to run in a
// guest whose files sit at the same paths: its ELF interpreter (the
// dynamic loader) and every library it needs, directly or through another
// library (DT_NEEDED), each found as the loader finds it on this host. A
// statically linked program needs nothing. The paths are the names the
// loader opens (a symbolic link such as /lib64/ld-linux-x86-64.so.2 is
// given as is; copy the file it points to under that name).
func SharedObjects(prog string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var interpName string // libc names the loader as a library too: it is loaded already
	var visit func(file string, root bool) error
	visit = func(file string, root bool) error {
		ef, err := elf.Open(file)
		if err != nil {
			return fmt.Errorf("shared objects of %s: %w", prog, err)
		}
		defer ef.Close()
		if root {
			for _, p := range ef.Progs {
				if p.Type != elf.PT_INTERP {
					continue
				}
				b := make([]byte, p.Filesz)
				if _, err := p.ReadAt(b, 0); err != nil {
					return fmt.Errorf("shared objects of %s: interpreter: %w", prog, err)
				}
				interp := string(b[:len(b)-1]) // NUL-terminated
				seen[interp] = true
				interpName = filepath.Base(interp)
				out = append(out, interp)
			}
		}
		needed, err := ef.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("shared objects of %s: %s: %w", prog, file, err)
		}
		for _, name := range needed {
			if name == interpName {
				continue
			}
			lib, err := findLibrary(name)
			if err != nil {
				return fmt.Errorf("shared objects of %s: %w", prog, err)
			}
			if seen[lib] {
				continue
			}
			seen[lib] = true
			out = append(out, lib)
			if err := visit(lib, false); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(prog, true); err != nil {
		return nil, err
	}
	return out, nil
}

func findLibrary(name string) (string, error) {
	if filepath.IsAbs(name) {
		return name, nil
	}
	for _, d := range libraryDirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("library %s not found in %v", name, libraryDirs)
}
