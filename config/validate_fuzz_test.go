package config

import (
	"bytes"
	"encoding/json"
	"os"
	"sort"
	"testing"
)

// FuzzValidate reaches the validator with every input: it replaces one
// value of a full, valid config (chosen by which, among all its values)
// with val, taken as JSON when it is JSON and as a string otherwise, or
// removes that key when val is empty. The checks are FuzzParse's, and
// the document is always well-formed, so no error may be a syntax error.
func FuzzValidate(f *testing.F) {
	base, err := os.ReadFile("testdata/good/full.json")
	if err != nil {
		f.Fatal(err)
	}
	paths := valuePaths(decodeJSON(f, base), nil)
	for i, v := range []string{`""`, `-1`, `"x"`, `null`, `[]`, `{}`, `1e400`, `"../a"`, `"/"`, ``, `18446744073709551616`, `"SIGKILL"`, `"0777"`} {
		f.Add(uint16(i*7), []byte(v))
	}
	f.Fuzz(func(t *testing.T, which uint16, val []byte) {
		doc := decodeJSON(t, base)
		at := paths[int(which)%len(paths)]
		var v any
		if err := unmarshalNumber(val, &v); err != nil {
			v = string(val)
		}
		doc = replace(doc, at, v, len(val) == 0)
		data, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		vm, errs := Parse(data)
		if len(errs) == 0 {
			checkVM(t, vm)
			return
		}
		for _, e := range errs {
			if bytes.HasPrefix([]byte(e.Msg), []byte("invalid JSON")) {
				t.Fatalf("syntax error for well-formed JSON %s: %v", data, e)
			}
		}
		checkErrors(t, data, vm, errs)
	})
}

func decodeJSON(t testing.TB, b []byte) any {
	var v any
	if err := unmarshalNumber(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// unmarshalNumber decodes keeping number literals as they are.
func unmarshalNumber(b []byte, v *any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return &json.SyntaxError{}
	}
	return nil
}

// valuePaths lists the path of every value below v.
func valuePaths(v any, at []step) [][]step {
	var out [][]step
	add := func(s step, child any) {
		p := append(append([]step(nil), at...), s)
		out = append(out, p)
		out = append(out, valuePaths(child, p)...)
	}
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys) // which must name the same value in every run
		for _, k := range keys {
			add(step{key: k}, v[k])
		}
	case []any:
		for i, c := range v {
			add(step{index: i, isIndex: true}, c)
		}
	}
	return out
}

// replace sets the value at path in doc to v, or removes it (an object
// key) when remove is set, and returns doc.
func replace(doc any, path []step, v any, remove bool) any {
	if len(path) == 0 {
		return v
	}
	s := path[0]
	switch d := doc.(type) {
	case map[string]any:
		if len(path) == 1 && remove {
			delete(d, s.key)
		} else {
			d[s.key] = replace(d[s.key], path[1:], v, remove)
		}
	case []any:
		d[s.index] = replace(d[s.index], path[1:], v, remove)
	}
	return doc
}
