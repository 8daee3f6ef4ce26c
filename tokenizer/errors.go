package tokenizer

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Error codes of the tokenizer family (DESIGN.md §5). A vocabulary without
// tokenizer data fails with the gguf package's own GGUFError
// (`GGUFError: Metadata key not found: "tokenizer.ggml.tokens"`).
const (
	CodeTokenNotFound = "TokenNotFound"
	CodeIDNotFound    = "IdNotFound"
	CodeInvalidUTF8   = "InvalidUtf8"
	CodeTokenizer     = "TokenizerError" // a vocabulary this package cannot use
)

// Sentinels for errors.Is.
var (
	ErrTokenNotFound = errors.New("token not found")
	ErrIDNotFound    = errors.New("id not found")
	ErrInvalidUTF8   = errors.New("invalid UTF-8")
	ErrTokenizer     = errors.New("unusable tokenizer data")
)

// Error is a tokenizer error. Its message starts with the code.
type Error struct {
	Code      string // CodeTokenNotFound, CodeIDNotFound, CodeInvalidUTF8, CodeTokenizer
	Msg       string
	ID        int32  // the id for IdNotFound, else -1
	VocabSize int    // for IdNotFound
	Token     string // for TokenNotFound
	Offset    int    // byte offset of the first invalid byte for InvalidUtf8
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// Is matches the sentinel of the error's code.
func (e *Error) Is(target error) bool {
	switch e.Code {
	case CodeTokenNotFound:
		return target == ErrTokenNotFound
	case CodeIDNotFound:
		return target == ErrIDNotFound
	case CodeInvalidUTF8:
		return target == ErrInvalidUTF8
	case CodeTokenizer:
		return target == ErrTokenizer
	}
	return false
}

func newError(code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), ID: -1}
}

func idNotFound(id int32, n int) *Error {
	return &Error{Code: CodeIDNotFound, ID: id, VocabSize: n,
		Msg: fmt.Sprintf("token id %d is out of range (vocabulary size %d, valid ids 0..%d)", id, n, n-1)}
}

func invalidUTF8(s string) *Error {
	off := 0
	for off < len(s) {
		r, size := utf8.DecodeRuneInString(s[off:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		off += size
	}
	return &Error{Code: CodeInvalidUTF8, ID: -1, Offset: off,
		Msg: fmt.Sprintf("text is not valid UTF-8: byte 0x%02x at offset %d starts no valid character; send UTF-8 text", s[off], off)}
}
