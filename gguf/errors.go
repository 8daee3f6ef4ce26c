package gguf

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is on an *Error.
var (
	// ErrBadMagic: the file does not start with "GGUF".
	ErrBadMagic = errors.New("bad magic")
	// ErrVersion: a GGUF version this reader does not support.
	ErrVersion = errors.New("unsupported version")
	// ErrTruncated: the file ends before a structure it declares.
	ErrTruncated = errors.New("truncated")
	// ErrInvalid: a structure is present but its contents are impossible
	// (unknown type, zero dimension, misaligned or overlapping data, …).
	ErrInvalid = errors.New("invalid")
	// ErrKeyNotFound: a metadata key is absent.
	ErrKeyNotFound = errors.New("metadata key not found")
	// ErrWrongType: a metadata key holds a value of another type.
	ErrWrongType = errors.New("metadata value has the wrong type")
	// ErrTensorNotFound: no tensor has the requested name.
	ErrTensorNotFound = errors.New("tensor not found")
	// ErrIO: the file could not be opened or mapped.
	ErrIO = errors.New("i/o error")
)

// Error is the GGUFError family of DESIGN.md §5: one line saying what was
// expected, what was found and, for problems inside the file, at which byte
// offset.
type Error struct {
	Offset int64 // byte offset in the file the problem was found at; -1 when none applies
	Msg    string
	Kind   error // one of the sentinels above
	Err    error // underlying error (an *os.PathError, …), or nil
}

func (e *Error) Error() string {
	s := "GGUFError: " + e.Msg
	if e.Offset >= 0 {
		s += fmt.Sprintf(" (at offset %d)", e.Offset)
	}
	return s
}

// Is matches the sentinel kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func errAt(kind error, off int64, format string, args ...any) *Error {
	return &Error{Offset: off, Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func errNoOffset(kind error, format string, args ...any) *Error {
	return errAt(kind, -1, format, args...)
}
