package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"worker-orcd/backend"
)

// Pooling says how Embed turns the final hidden states of a text's tokens
// into one vector.
type Pooling string

// Poolings.
const (
	PoolMean Pooling = "mean" // the mean over every token (BOS included, as llama.cpp does)
	PoolLast Pooling = "last" // the last token's (for models trained so, e.g. decoder embedders)
)

// ParsePooling reads a pooling name ("" is PoolMean).
func ParsePooling(s string) (Pooling, error) {
	switch Pooling(s) {
	case "", PoolMean:
		return PoolMean, nil
	case PoolLast:
		return PoolLast, nil
	}
	return "", fmt.Errorf("pooling %q: want mean or last", s)
}

// ErrUnsupported is matched by the errors of operations the backend cannot
// do (UnsupportedOperation): embeddings on a backend without
// backend.Embedder.
var ErrUnsupported = errors.New("UnsupportedOperation")

// UnsupportedError names the backend and the operation it lacks.
type UnsupportedError struct {
	Backend   string // "cuda:0"
	Operation string // "embeddings"
	Hint      string // what to do
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("UnsupportedOperation: the %s backend does not compute %s; %s", e.Backend, e.Operation, e.Hint)
}

// Is matches ErrUnsupported.
func (e *UnsupportedError) Is(target error) bool { return target == ErrUnsupported }

// CanEmbed reports whether the backend computes embeddings; the error
// says why not.
func (e *Engine) CanEmbed() error {
	if _, ok := e.be.(backend.Embedder); !ok {
		return &UnsupportedError{Backend: e.be.Name(), Operation: "embeddings (final hidden states)",
			Hint: "run the worker with --device cpu to serve embeddings"}
	}
	return nil
}

// Embed runs ids through the model like a prompt, batched with whatever
// else the engine runs, and returns the Result with Embedding set: the
// final hidden states (the output norm's result) pooled as pool says and
// L2-normalised. The same ids give the same vector, alone or beside other
// requests. Cancelling ctx stops it (ErrCancelled).
func (e *Engine) Embed(ctx context.Context, ids []int32, pool Pooling) (*Result, error) {
	if err := e.CanEmbed(); err != nil {
		return nil, err
	}
	vocab := e.be.Config().VocabSize
	switch {
	case pool != PoolMean && pool != PoolLast:
		return nil, invalid("pooling %q: want mean or last", pool)
	case len(ids) == 0:
		return nil, invalid("the input is empty: give at least one token")
	case len(ids) > e.opts.CtxLen:
		return nil, &ContextLengthError{Length: len(ids), Max: e.opts.CtxLen, PromptTokens: len(ids)}
	}
	for i, id := range ids {
		if id < 0 || int(id) >= vocab {
			return nil, invalid("input token %d is id %d, outside the vocabulary [0, %d)", i, id, vocab)
		}
	}
	s := &seq{req: Request{Prompt: ids}, tok: e.tok, pool: pool,
		notify: make(chan struct{}, 1), submitted: time.Now()}
	s.bseq.Embed = true
	s.result = &Result{PromptTokens: len(ids)}
	if err := e.enqueue(s); err != nil {
		return nil, err
	}
	return e.wait(ctx, s, nil)
}

// addHidden pools the hidden states of one step's n rows (each d values).
func (s *seq) addHidden(h []float32, n, d int) {
	if s.poolSum == nil {
		s.poolSum = make([]float64, d)
	}
	switch s.pool {
	case PoolLast:
		for j, v := range h[(n-1)*d : n*d] {
			s.poolSum[j] = float64(v)
		}
		s.poolN = 1
	default:
		for r := range n {
			for j, v := range h[r*d : (r+1)*d] {
				s.poolSum[j] += float64(v)
			}
		}
		s.poolN += n
	}
}

// embedding is the pooled vector, L2-normalised (a zero vector stays zero).
func (s *seq) embedding() []float32 {
	out := make([]float32, len(s.poolSum))
	var norm float64
	for _, v := range s.poolSum {
		m := v / float64(s.poolN)
		norm += m * m
	}
	norm = math.Sqrt(norm)
	for j, v := range s.poolSum {
		m := v / float64(s.poolN)
		if norm > 0 {
			m /= norm
		}
		out[j] = float32(m)
	}
	return out
}
