package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// The JSON layer. Parse does not decode into structs: it first builds a small
// tree of the document (keeping key order, positions and duplicate keys) and
// then walks it, so that it can report every unknown field, wrong type and
// bad value in one run, each with its JSON path, in document order.

type kind int

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

var kindNames = [...]string{"null", "boolean", "number", "string", "array", "object"}

// A value is one node of the document.
type value struct {
	kind    kind
	pos     int64    // offset just past the value's first token; orders errors
	text    string   // a string's contents, or a number's literal
	boolean bool     // kindBool
	elems   []*value // kindArray
	members []member // kindObject, in document order, later duplicates dropped
}

type member struct {
	key string
	pos int64 // offset just past the key
	val *value
}

// parser collects errors while the tree is built and walked.
type parser struct {
	errs    []posError
	depth   int       // of the array or object being built
	objects []*fields // walked, for unread
}

// maxDepth caps nesting: a config nests 5 deep, and without a cap a
// document of 200,000 '[' costs seconds and most of a GiB in build's
// recursion. With it, reading stays linear in the input.
const maxDepth = 32

// depthError is nesting beyond maxDepth, at byte offset pos.
type depthError struct{ pos int64 }

func (e *depthError) Error() string {
	return fmt.Sprintf("nested deeper than %d levels at byte %d", maxDepth, e.pos)
}

type posError struct {
	pos int64
	err *Error
}

func (p *parser) errorf(pos int64, path, format string, args ...any) {
	p.errs = append(p.errs, posError{pos, &Error{Path: path, Msg: fmt.Sprintf(format, args...)}})
}

// sorted returns the errors in document order. Cross-field checks run after
// the walk, so the order errors were found in is not the order of the file;
// the stable sort keeps several errors about one value in the order found.
func (p *parser) sorted() []*Error {
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].pos < p.errs[j].pos })
	out := make([]*Error, len(p.errs))
	for i, e := range p.errs {
		out[i] = e.err
	}
	return out
}

// syntaxError turns a decoding failure into the single error about the
// document. It names the innermost value being read where the syntax
// broke (path), or none when that is the document itself.
func syntaxError(path string, err error) *Error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &Error{Path: path, Msg: fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, se.Error())}
	}
	return &Error{Path: path, Msg: "invalid JSON: " + err.Error()}
}

// readTree checks the syntax of data and builds its tree. A syntax error is
// returned as the only error: nothing after it can be trusted.
func (p *parser) readTree(data []byte) (*value, *Error) {
	// Unmarshal into a RawMessage only runs the syntax check, which, unlike
	// Decoder.Token, reports the byte offset of every kind of syntax error
	// (including trailing garbage); the tree's builder says where in the
	// document it was.
	var raw json.RawMessage
	syntaxErr := json.Unmarshal(data, &raw)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keep number literals, to tell 3 from 3.0 and to avoid float rounding
	v, err := p.build(dec, "")
	var at *buildError
	errors.As(err, &at)
	if at != nil && strings.HasPrefix(at.path, "[") && !strings.HasPrefix(at.path, `["`) {
		at.path = "" // a document that is an array has no paths: it is wrong as a whole
	}
	var deep *depthError
	if at != nil && errors.As(at.err, &deep) {
		var se *json.SyntaxError
		if !errors.As(syntaxErr, &se) || se.Offset > deep.pos {
			return nil, &Error{Path: at.path, Msg: "invalid JSON: " + deep.Error()}
		}
	}
	if syntaxErr != nil {
		if at == nil {
			return nil, syntaxError("", syntaxErr)
		}
		return nil, syntaxError(at.path, syntaxErr)
	}
	if err != nil {
		return nil, syntaxError(at.path, at.err)
	}
	return v, nil
}

// buildError is a decoding failure and the path of the value being read.
type buildError struct {
	path string
	err  error
}

func (e *buildError) Error() string { return e.err.Error() }

// build reads one value from dec; path names it in duplicate-key errors
// and in the error it returns.
func (p *parser) build(dec *json.Decoder, path string) (*value, error) {
	fail := func(err error) (*value, error) {
		if _, inner := err.(*buildError); inner {
			return nil, err
		}
		return nil, &buildError{path, err}
	}
	tok, err := dec.Token()
	if err != nil {
		return fail(err)
	}
	v := &value{pos: dec.InputOffset()}
	switch t := tok.(type) {
	case json.Delim:
		if p.depth++; p.depth > maxDepth {
			return fail(&depthError{dec.InputOffset()})
		}
		defer func() { p.depth-- }()
		if t == '[' {
			v.kind = kindArray
			for i := 0; dec.More(); i++ {
				e, err := p.build(dec, index(path, i))
				if err != nil {
					return fail(err)
				}
				v.elems = append(v.elems, e)
			}
		} else {
			v.kind = kindObject
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return fail(err)
				}
				key, ok := kt.(string)
				if !ok {
					return fail(fmt.Errorf("object key is %T", kt))
				}
				kpos := dec.InputOffset()
				nerrs := len(p.errs)
				e, err := p.build(dec, join(path, key))
				if err != nil {
					return fail(err)
				}
				if seen[key] {
					// The duplicate is dropped, and so is what was said
					// about its contents: its path would name the first.
					p.errs = p.errs[:nerrs]
					p.errorf(kpos, join(path, key), "duplicate key")
					continue
				}
				seen[key] = true
				v.members = append(v.members, member{key, kpos, e})
			}
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return fail(err)
		}
	case string:
		v.kind, v.text = kindString, t
	case json.Number:
		v.kind, v.text = kindNumber, string(t)
	case bool:
		v.kind, v.boolean = kindBool, t
	case nil:
		v.kind = kindNull
	default:
		return fail(fmt.Errorf("unexpected token %T", tok))
	}
	return v, nil
}

// Paths look like services[1].limits.memory_max. Keys that are not plain
// identifiers are quoted, services[0].env["A-B"], so that every path can be
// read back unambiguously.

func join(path, key string) string {
	if !isIdent(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		letter := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// fields is an object being walked. It records which of its keys were
// read: the walk reads every key it knows, so the keys left unread are
// the unknown ones (see unread), and no list of allowed keys is kept
// apart from the code that reads them.
type fields struct {
	p    *parser
	obj  *value
	path string
	read []bool // per member of obj
}

// object checks that v is an object, and registers it so that unread
// reports its keys that nothing read. ok is false if v is not an object.
func (p *parser) object(v *value, path string) (f *fields, ok bool) {
	if !p.is(v, path, kindObject, "object") {
		return nil, false
	}
	f = &fields{p: p, obj: v, path: path, read: make([]bool, len(v.members))}
	p.objects = append(p.objects, f)
	return f, true
}

// get returns the value of key (nil when absent) and its path, and
// records that key is known.
func (f *fields) get(key string) (*value, string) {
	path := join(f.path, key)
	for i, mb := range f.obj.members {
		if mb.key == key {
			f.read[i] = true
			return mb.val, path
		}
	}
	return nil, path
}

// required is get, reporting a missing key. The error is placed at the
// start of the object: problems with the object as a whole come before
// those with its contents.
func (f *fields) required(key string) (*value, string) {
	v, path := f.get(key)
	if v == nil {
		f.p.errorf(f.obj.pos, path, "required")
	}
	return v, path
}

// count says how many of keys the object has, without reading them.
func (f *fields) count(keys ...string) int {
	n := 0
	for _, mb := range f.obj.members {
		if slices.Contains(keys, mb.key) {
			n++
		}
	}
	return n
}

// unread reports, once the walk is over, each key of each object walked
// that nothing read. Errors are sorted by position afterwards, so they
// take their place in document order.
func (p *parser) unread() {
	for _, f := range p.objects {
		for i, mb := range f.obj.members {
			if !f.read[i] {
				p.errorf(mb.pos, join(f.path, mb.key), "unknown field")
			}
		}
	}
}

// is reports a type error unless v has kind k; want names what was expected.
func (p *parser) is(v *value, path string, k kind, want string) bool {
	if v.kind != k {
		p.typeError(v, path, want)
		return false
	}
	return true
}

func (p *parser) typeError(v *value, path, want string) {
	p.errorf(v.pos, path, "expected %s, got %s", want, kindNames[v.kind])
}

// array checks that v is an array.
func (p *parser) array(v *value, path string) ([]*value, bool) {
	if !p.is(v, path, kindArray, "array") {
		return nil, false
	}
	return v.elems, true
}

func (p *parser) str(v *value, path string) (string, bool) {
	if !p.is(v, path, kindString, "string") {
		return "", false
	}
	return v.text, true
}

func (p *parser) boolean(v *value, path string) (bool, bool) {
	if !p.is(v, path, kindBool, "boolean") {
		return false, false
	}
	return v.boolean, true
}

// integral reports whether a number literal has no fraction or exponent;
// 3.0 and 3e0 are rejected rather than silently truncated.
func integral(lit string) bool {
	return !strings.ContainsAny(lit, ".eE")
}

// integer checks that v is a JSON integer in [lo, hi].
func (p *parser) integer(v *value, path string, lo, hi int64) (int64, bool) {
	if !p.is(v, path, kindNumber, "integer") {
		return 0, false
	}
	if !integral(v.text) {
		p.errorf(v.pos, path, "must be an integer")
		return 0, false
	}
	n, err := strconv.ParseInt(v.text, 10, 64)
	if err != nil || n < lo || n > hi {
		p.errorf(v.pos, path, "must be between %d and %d", lo, hi)
		return 0, false
	}
	return n, true
}

// enum checks that v is one of the strings in choices. (A function, as
// methods cannot have type parameters.)
func enum[T ~string](p *parser, v *value, path string, choices ...T) (T, bool) {
	s, ok := p.str(v, path)
	if !ok {
		return "", false
	}
	if !slices.Contains(choices, T(s)) {
		p.errorf(v.pos, path, "must be one of %s", quoteList(choices))
		return "", false
	}
	return T(s), true
}

func quoteList[T ~string](list []T) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(string(s))
	}
	return strings.Join(q, ", ")
}
