package launcher

import (
	"reflect"
	"strings"
	"testing"

	"vmsup/landlock/pathrule"
)

func sample() *Spec {
	return &Spec{
		Name: "vmm", Path: "/usr/bin/qemu-system-x86_64",
		Argv: []string{"qemu", "-name", "a:b", "", "7:x", "ünïcode\n\t"},
		Env:  []string{"PATH=/bin", "LISTEN_FDNAMES=qmp:fs", "EMPTY="},
		Cwd:  "/",
		UID:  4294967294, GID: 2002,
		Groups: []uint32{2000, 0},
		Caps:   []uint{10, 21, 40}, LastCap: 40,
		Tmp: 64 << 20, UserNS: true,
		Rlimits: []Rlimit{
			{Name: "memlock", Resource: 8, Value: ^uint64(0)},
			{Name: "nofile", Resource: 7, Value: 1 << 20},
		},
		Ruleset:  -1,
		Rules:    []pathrule.Rule{{Path: "/tmp", Access: 1<<16 - 1}},
		HasPaths: true, TSync: true,
		NetNS:  9,
		Keep:   []int{3, 4, 7},
		Listen: 2, ErrFD: 8, Umask: 0o027,
		Filter: []uint64{0x0020000000000004, 0x0015000100000000 | 0xc000003e, ^uint64(0)},
		View: View{Devices: []Node{{Path: "/dev/kvm", Mode: 0o20660, Rdev: 10<<8 | 232, UID: 0, GID: 108}},
			RunDir: "/run/vmsup/w", HideParent: true, Writable: true, Protect: []string{"/run/vmsup/w/fs.sock"},
			Only: []string{}},
	}
}

// Every field survives the trip through the environment, whatever bytes
// its values hold (the format's separators included) and whatever the
// range of its numbers.
func TestSpecRoundTrip(t *testing.T) {
	for _, sp := range []*Spec{sample(), {Ruleset: 5}} {
		t.Setenv(SpecEnv, sp.Encode())
		got, err := decodeSpec()
		if err != nil {
			t.Fatal(err)
		}
		// Empty and nil lists are the same on the wire.
		want := *sp
		for _, p := range []any{&want.Argv, &want.Env, &want.Groups, &want.Caps, &want.Rlimits, &want.Rules, &want.Keep, &want.Filter, &want.View.Devices, &want.View.Protect} {
			v := reflect.ValueOf(p).Elem()
			if v.Len() == 0 {
				v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			}
		}
		for _, p := range []any{&got.Argv, &got.Env, &got.Groups, &got.Caps, &got.Rlimits, &got.Rules, &got.Keep, &got.Filter} {
			v := reflect.ValueOf(p).Elem()
			if v.Len() == 0 {
				v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			}
		}
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, &want)
		}
	}
}

// A truncated, padded or tampered spec is an error, never a spec with
// fields shifted or silently zeroed.
func TestSpecMalformed(t *testing.T) {
	enc := sample().Encode()
	for name, s := range map[string]string{
		"truncated":      enc[:len(enc)-3],
		"trailing":       enc + "0:",
		"no length":      ":" + enc,
		"length too big": "999:" + enc[4:],
		"negative uid":   strings.Replace(enc, "10:4294967294", "2:-1", 1),
		"uid overflow":   strings.Replace(enc, "10:4294967294", "10:4294967296", 1),
		"huge count":     strings.Replace(enc, "1:32:10", "9:9999999992:10", 1),
	} {
		t.Setenv(SpecEnv, s)
		if sp, err := decodeSpec(); err == nil {
			t.Errorf("%s: decoded %+v", name, sp)
		}
	}
	t.Setenv(SpecEnv, "")
	if _, err := decodeSpec(); err == nil || !strings.Contains(err.Error(), "decode") {
		t.Errorf("empty spec: %v", err)
	}
}
