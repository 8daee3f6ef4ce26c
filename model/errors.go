package model

import "errors"

// Sentinel errors, matched with errors.Is on an *Error.
var (
	// ErrInvalidModelType: general.architecture names an architecture this
	// worker does not run.
	ErrInvalidModelType = errors.New("invalid model type")
	// ErrMapping: a tensor is missing or has the wrong shape or type.
	ErrMapping = errors.New("weight mapping")
	// ErrUnsupported: the file asks for a variant the worker cannot run
	// correctly (LongRoPE factors, an unsupported quant type, …).
	ErrUnsupported = errors.New("unsupported operation")
	// ErrConfig: a hyperparameter is missing or impossible.
	ErrConfig = errors.New("invalid model config")
)

// Error is a model loading error. Code is the stable name from DESIGN.md §5
// ("InvalidModelType", "WeightMappingError", "UnsupportedOperation",
// "ModelConfigError"); the message says what was expected, what was found
// and what to do.
type Error struct {
	Code string
	Msg  string
	Kind error
	Err  error // underlying error, if any
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// Is matches the sentinel kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }
