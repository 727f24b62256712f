package config

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const (
	namePattern = `^[a-z0-9][a-z0-9_-]{0,63}$`
	maxNameLen  = 64 // namePattern's first character and 63 more
)

// validName reports whether s matches namePattern. Written out rather
// than as a regexp: compiling that one costs about 0.5 ms, paid by
// every vmsup that parses a config (one per VM, and a host starts many
// VMs at once), where this loop costs nanoseconds.
func validName(s string) bool {
	if len(s) == 0 || len(s) > maxNameLen || s[0] == '-' || s[0] == '_' {
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
	sunPathMax = 107        // sizeof(sockaddr_un.sun_path) less the NUL
)

func (p *parser) id(v *value, path string) (uint32, bool) {
	n, ok := p.integer(v, path, 0, maxID)
	return uint32(n), ok
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

// fd checks a file descriptor number the service receives.
func (p *parser) fd(v *value, path string) (int, bool) {
	n, ok := p.integer(v, path, minFD, maxFD)
	return int(n), ok
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

func quote(s string) string { return strconv.Quote(s) }
