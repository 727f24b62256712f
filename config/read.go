package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// The one config reader stops reading here, so that "vmsup run
// /dev/zero" and "vmsup validate /dev/zero" end at once: a real
// config is a few KiB.
const maxConfigSize = 1 << 20

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
