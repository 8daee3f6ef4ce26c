package engine

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrContextLength: prompt + max_tokens does not fit the context.
	ErrContextLength = errors.New("context length exceeded")
	// ErrInvalidRequest: a request field is out of range.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrQueueFull: every slot is busy and the queue is full; retry later.
	ErrQueueFull = errors.New("queue full")
	// ErrCancelled: the caller cancelled the request.
	ErrCancelled = errors.New("cancelled")
	// ErrClosed: the engine is shutting down.
	ErrClosed = errors.New("engine closed")
	// ErrForward: the backend failed during a step.
	ErrForward = errors.New("forward pass failed")
	// ErrKVMemory: a sequence does not fit in the KV memory budget
	// (KVMemoryError says how).
	ErrKVMemory = errors.New("KV memory budget exceeded")
)

// ContextLengthError is `ContextLengthExceeded { length: L, max: M }`: the
// request needs L positions (prompt + max_tokens) and the context holds M.
type ContextLengthError struct {
	Length, Max  int
	PromptTokens int
	MaxTokens    int
}

func (e *ContextLengthError) Error() string {
	return fmt.Sprintf("ContextLengthExceeded { length: %d, max: %d }: the prompt has %d tokens and max_tokens is %d; shorten the prompt, lower max_tokens or start the worker with a larger --ctx",
		e.Length, e.Max, e.PromptTokens, e.MaxTokens)
}

// Is matches ErrContextLength.
func (e *ContextLengthError) Is(target error) bool { return target == ErrContextLength }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
}
