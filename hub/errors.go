package hub

import "errors"

// Kinds of failure, for errors.Is.
var (
	ErrBadRef       = errors.New("invalid model reference")
	ErrNotFound     = errors.New("not found on the hub")
	ErrUnauthorized = errors.New("unauthorized")
	ErrChecksum     = errors.New("checksum mismatch")
	ErrOffline      = errors.New("offline and not cached")
	ErrDownload     = errors.New("download failed")
	ErrAmbiguous    = errors.New("reference matches several files")
)

// The codes an Error's message starts with (DESIGN.md §5: a stable code,
// then what was expected, what was found and what to do).
const (
	CodeBadRef       = "InvalidModelRef"
	CodeNotFound     = "ModelNotFound"
	CodeUnauthorized = "Unauthorized"
	CodeChecksum     = "ChecksumMismatch"
	CodeOffline      = "OfflineNotCached"
	CodeDownload     = "DownloadFailed"
	CodeAmbiguous    = "AmbiguousModelRef"
)

// Error is a failure of the hub package: Code names it, Msg says what was
// expected, what was found and what to do, Kind is one of the Err values
// above and Err the underlying error, if any.
type Error struct {
	Code string
	Kind error
	Msg  string
	Err  error
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// Is matches the kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }
