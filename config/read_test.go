package config

import (
	"bytes"
	"strings"
	"testing"
)

// The reader's caps: a document nested 200,000 deep and one larger than
// the size cap are refused with one error, in time and memory linear in
// the input (BenchmarkReadCaps prints the figures).
func TestReadCaps(t *testing.T) {
	deep := bytes.Repeat([]byte("["), 200000)
	if _, errs := Parse(deep); len(errs) != 1 || errs[0].Error() != "invalid JSON: nested deeper than 32 levels at byte 33" {
		t.Errorf("200,000 '[': %q", errLines(errs))
	}
	big := append([]byte(`{"name":"`), bytes.Repeat([]byte("a"), maxConfigSize)...)
	_, err := Read(bytes.NewReader(big), "big.json")
	if err == nil || err.Error() != "cannot read big.json: larger than 1048576 bytes" {
		t.Errorf("%d bytes: %v", len(big), err)
	}
	if b, err := Read(strings.NewReader("{}"), "small"); err != nil || string(b) != "{}" {
		t.Errorf("small: %q %v", b, err)
	}
}

func BenchmarkReadCaps(b *testing.B) {
	deep := bytes.Repeat([]byte("["), 200000)
	b.Run("deep-200000", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			Parse(deep)
		}
	})
	b.Run("size-cap", func(b *testing.B) {
		big := bytes.Repeat([]byte{0}, 4*maxConfigSize)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			Read(bytes.NewReader(big), "zero")
		}
	})
}
