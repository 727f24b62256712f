package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// -update rewrites the .want files from what Parse returns now. Review the
// diff before keeping it: the files are the specification.
var update = flag.Bool("update", false, "rewrite testdata/bad/*.want")

// corpus returns the config files matching pattern under testdata.
func corpus(t testing.TB, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s: %v", pattern, err)
	}
	return files
}

// TestBadCorpus parses each testdata/bad/NAME.json and compares the error
// lines, in order, with NAME.want.
func TestBadCorpus(t *testing.T) {
	for _, file := range corpus(t, "bad/*.json") {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			vm, errs := Load(file)
			if vm != nil || len(errs) == 0 {
				t.Fatalf("accepted")
			}
			got := strings.Join(errLines(errs), "\n") + "\n"
			wantFile := strings.TrimSuffix(file, ".json") + ".want"
			if *update {
				if err := os.WriteFile(wantFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s\n--- got:\n%s--- want:\n%s", wantFile, got, want)
			}
		})
	}
}

// TestGoodCorpus checks that the valid configs under testdata parse.
func TestGoodCorpus(t *testing.T) {
	for _, file := range append(corpus(t, "*.json"), corpus(t, "good/*.json")...) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			if _, errs := Load(file); errs != nil {
				t.Errorf("%s:\n%s", file, strings.Join(errLines(errs), "\n"))
			}
		})
	}
}
