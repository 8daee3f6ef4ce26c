package engine

import (
	"context"
	"math"

	"worker-orcd/backend"
	"worker-orcd/sample"
)

// Position is the score of one token given the tokens before it.
type Position struct {
	I       int                // index into the ids
	ID      int32              // ids[I]
	Logprob float32            // log p(ids[I] | ids[:I])
	Top     []sample.Candidate // the most likely ids at this position
}

// ScoreResult is a teacher-forced evaluation of a token sequence.
type ScoreResult struct {
	IDs        []int32
	Positions  []Position // for I = 1 … len(ids)-1
	Perplexity float64    // exp(−mean logprob) over Positions
}

// Score computes, for each position i ≥ 1, the log-probability of ids[i]
// given ids[:i] and the topK alternatives there. It runs between the
// scheduler's steps, in chunks of BatchTokens.
func (e *Engine) Score(ctx context.Context, ids []int32, topK int) (*ScoreResult, error) {
	c := e.be.Config()
	switch {
	case len(ids) < 2:
		return nil, invalid("scoring needs at least 2 tokens (the first is only context), got %d", len(ids))
	case len(ids) > e.opts.CtxLen:
		return nil, &ContextLengthError{Length: len(ids), Max: e.opts.CtxLen, PromptTokens: len(ids)}
	case topK < 0 || topK > MaxTopLogprobs:
		return nil, invalid("top_logprobs is %d, want 0 to %d", topK, MaxTopLogprobs)
	}
	for i, id := range ids {
		if id < 0 || int(id) >= c.VocabSize {
			return nil, invalid("token %d is id %d, outside the vocabulary [0, %d)", i, id, c.VocabSize)
		}
	}
	kv, release, err := e.scoreCache(ctx, len(ids))
	if err != nil {
		return nil, err
	}
	defer release()
	res := &ScoreResult{IDs: ids, Positions: make([]Position, 0, len(ids)-1)}
	V := c.VocabSize
	var sum float64
	s := &backend.Seq{KV: kv, AllLogits: true, Prefill: true}
	// The last id is only ever a target, never context.
	for start := 0; start < len(ids)-1; start += e.opts.BatchTokens {
		if err := ctx.Err(); err != nil {
			return nil, ErrCancelled
		}
		end := min(start+e.opts.BatchTokens, len(ids)-1)
		s.Tokens = ids[start:end]
		e.fwdMu.Lock()
		err := e.be.Forward([]*backend.Seq{s})
		e.fwdMu.Unlock()
		if err != nil {
			return nil, err
		}
		for j := range end - start {
			i := start + j + 1
			logits := s.Logits[j*V : (j+1)*V]
			if e.logitsTap != nil {
				e.logitsTap(append([]float32(nil), logits...))
			}
			p := Position{I: i, ID: ids[i]}
			if topK > 0 {
				p.Logprob, p.Top = sample.Logprobs(logits, ids[i], topK, nil)
			} else {
				p.Logprob = sample.Logprob(logits, ids[i])
			}
			sum += float64(p.Logprob)
			res.Positions = append(res.Positions, p)
		}
	}
	res.Perplexity = math.Exp(-sum / float64(len(res.Positions)))
	return res, nil
}

// scoreCache is a KV cache of n positions for Score, within the KV memory
// budget: a table of the pool's blocks on a paged backend, else a cache of
// its own whose blocks are counted. Cached blocks are evicted where the
// free ones do not do; where even that does not, it waits for running
// sequences to give blocks back (without a limit it never waits: a cache
// of its own, uncounted, where the pool has no room). The returned
// function frees the cache and gives the blocks back.
func (e *Engine) scoreCache(ctx context.Context, n int) (backend.KVCache, func(), error) {
	blocks := e.blocksFor(n)
	if e.kvLimited && blocks > e.kvTotal {
		return nil, nil, e.kvError(false, n, blocks)
	}
	var ids []int32 // the pool's blocks it holds
	counted := false
	for {
		e.mu.Lock()
		if e.bc != nil {
			var ok bool
			if ids, ok = e.bc.take(blocks); ok || !e.kvLimited {
				break // e.mu held
			}
		} else if e.makeRoom(blocks) {
			e.scoreBlocks += blocks
			counted = true
			break
		}
		ch := e.freed
		e.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, nil, ErrCancelled
		}
	}
	e.mu.Unlock()
	var kv backend.KVCache
	var err error
	if ids != nil {
		e.lockPool()
		pc := e.pool.NewCache()
		if err = pc.SetTable(ids, 0); err == nil {
			kv = pc
		}
		e.unlockPool()
	} else {
		kv, err = e.be.NewKVCache(n)
	}
	release := func() {
		e.mu.Lock()
		switch {
		case ids != nil:
			e.bc.drop(ids)
		case counted:
			e.scoreBlocks -= blocks
		}
		if kv != nil && ids == nil {
			kv.Free()
		}
		e.blocksFreed()
		e.mu.Unlock()
		e.signal() // a request may wait for these blocks
	}
	if err != nil {
		release()
		return nil, nil, err
	}
	return kv, release, nil
}
