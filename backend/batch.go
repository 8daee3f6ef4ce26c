package backend

import (
	"errors"
	"fmt"
)

// ErrBadBatch is matched by the errors of CheckBatch.
var ErrBadBatch = errors.New("bad forward batch")

// CheckBatch checks what every backend requires of a forward batch before
// it computes anything: at least one sequence, each with tokens, a KV cache
// with room for them, and ids inside the vocabulary [0, vocab). Backends
// check the concrete type of each KV cache themselves.
func CheckBatch(batch []*Seq, vocab int) error {
	if len(batch) == 0 {
		return fmt.Errorf("%w: empty batch", ErrBadBatch)
	}
	for si, s := range batch {
		switch {
		case s == nil || s.KV == nil:
			return fmt.Errorf("%w: sequence %d has no KV cache", ErrBadBatch, si)
		case len(s.Tokens) == 0:
			return fmt.Errorf("%w: sequence %d of the batch has no tokens", ErrBadBatch, si)
		case s.KV.Len()+len(s.Tokens) > s.KV.Cap():
			return fmt.Errorf("%w: sequence %d needs %d positions, its KV cache holds %d", ErrBadBatch, si, s.KV.Len()+len(s.Tokens), s.KV.Cap())
		}
		for _, id := range s.Tokens {
			if id < 0 || int(id) >= vocab {
				return fmt.Errorf("%w: sequence %d: token id %d out of range [0, %d)", ErrBadBatch, si, id, vocab)
			}
		}
	}
	return nil
}
