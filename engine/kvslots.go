package engine

import (
	"fmt"
	"log/slog"
	"slices"

	"worker-orcd/backend"
)

// The slot path: on a backend that is not a backend.Pager, each slot's
// KV cache is one allocation of its own that grows a block (of
// Options.KVBlock positions, counted against the budget) at a time by
// Reserve, and a free slot keeps the prompt it read last for the next
// request that starts with it (pickSlot); a running slot can give a new
// request its prompt rows by copying them (prefixDonor). A busy slot's
// blocks are used, a free slot's cached (evicted least recently used
// first when blocks are needed).

// admitSlot starts queued request s in a free slot if its blocks can be
// had (admitQueue); e.mu is held.
func (e *Engine) admitSlot(s *seq) admitResult {
	sl, reuse := e.pickSlot(s)
	if sl == nil {
		return noSlot
	}
	donor, shared := e.prefixDonor(s, sl)
	want := e.admitBlocks(s)
	if e.kvLimited && sl.blocks > want && (reuse == 0 || shared > reuse) {
		// The slot's rows are of no use to s and its cache is larger
		// than s needs: give the blocks back rather than hold them.
		e.evict(sl)
	}
	if !e.makeRoom(want-sl.blocks, sl, donor) {
		return noBlocks // s waits for running sequences to give blocks back
	}
	prefix := sl.prefix
	sl.prefix = nil // the slot's cache is about to be written
	// The prompt's blocks and one more (admitBlocks); the cache grows
	// a block at a time as s generates (grow).
	need := min(want*e.blockPos, len(s.req.Prompt)+s.maxTokens)
	if sl.kv == nil {
		kv, err := e.be.NewKVCache(need)
		if err != nil {
			s.finish(StopError, fmt.Errorf("%w: KV cache for %d positions: %w", ErrForward, need, err))
			return admitted
		}
		sl.kv = kv
	} else if err := sl.kv.Reserve(need); err != nil {
		s.finish(StopError, fmt.Errorf("%w: KV cache for %d positions: %w", ErrForward, need, err))
		return admitted
	}
	sl.blocks = e.blocksFor(sl.kv.Cap())
	switch {
	case shared > reuse:
		// A running request's cache holds a longer start of this
		// prompt (its own prompt rows): copied, read from there on. A
		// failed copy may have overwritten the slot's own rows.
		if !e.copyPrefix(sl, donor, shared) {
			sl.kv.Truncate(0)
			break
		}
		s.prefilled = shared
	case reuse > 0 && sl.kv.Len() >= reuse && len(prefix) >= reuse:
		// The first reuse positions hold this prompt's own tokens,
		// computed as prompt rows: read from there on.
		sl.kv.Truncate(reuse)
		s.prefilled = reuse
	default:
		sl.kv.Truncate(0)
	}
	e.started(sl, s, e.cacheable(s))

	return admitted
}

// makeRoom makes n blocks free, evicting free slots' caches (never those
// of keep) where the free blocks do not do: first the caches that hold no
// prompt worth keeping, then the least recently used. It evicts nothing
// and returns false when even evicting every one would not do. Without a
// limit there is always room. e.mu is held.
func (e *Engine) makeRoom(n int, keep ...*slot) bool {
	if !e.kvLimited || n <= 0 {
		return true
	}
	free := e.kvFree()
	if free >= n {
		return true
	}
	var idle []*slot
	evictable := 0
	for _, sl := range e.slots {
		if sl.seq == nil && sl.kv != nil && !slices.Contains(keep, sl) {
			idle = append(idle, sl)
			evictable += sl.blocks
		}
	}
	if free+evictable < n {
		return false
	}
	slices.SortStableFunc(idle, func(a, b *slot) int {
		if (len(a.prefix) == 0) != (len(b.prefix) == 0) {
			if len(a.prefix) == 0 {
				return -1
			}
			return 1
		}
		return int(a.lastUse - b.lastUse)
	})
	for _, sl := range idle {
		if free >= n {
			break
		}
		free += sl.blocks
		e.evict(sl)
	}
	e.noteSize()
	return true
}

// evict frees a free slot's cache and the blocks it held; e.mu is held.
func (e *Engine) evict(sl *slot) {
	e.evictedBlocks += int64(sl.blocks)
	sl.kv.Free()
	sl.kv, sl.prefix, sl.blocks = nil, nil, 0
}

// growSlot is grow on the slot path: the slot's cache is reserved a block
// at a time, within its request's positions.
func (e *Engine) growSlot(sl *slot, need int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := sl.seq
	target := max(min(e.blocksFor(need)*e.blockPos, len(s.req.Prompt)+s.maxTokens), need)
	if extra := e.blocksFor(target) - sl.blocks; !e.makeRoom(extra, sl) {
		return e.kvError(true, need, e.blocksFor(need))
	}
	if err := sl.kv.Reserve(target); err != nil {
		return fmt.Errorf("%w: KV cache for %d positions: %w", ErrForward, target, err)
	}
	sl.blocks = e.blocksFor(sl.kv.Cap())
	e.noteSize()
	return nil
}

// pickSlot chooses the free slot for s: the one whose cached prompt shares
// the longest start with s's prompt (reuse: how many positions to keep; at
// least the prompt's last token is always read again, since its row gives
// the first generated token), else a free slot whose cache holds no prompt,
// else the least recently used (so that the cached prompts kept are the
// most recent). nil when every slot is busy. Which slot a request runs in
// never changes its result. e.mu is held.
func (e *Engine) pickSlot(s *seq) (best *slot, reuse int) {
	for _, sl := range e.slots {
		if sl.seq != nil {
			continue
		}
		if best == nil || len(best.prefix) > 0 && (len(sl.prefix) == 0 || sl.lastUse < best.lastUse) {
			if reuse == 0 {
				best = sl
			}
		}
		if !e.cacheable(s) || sl.kv == nil {
			continue
		}
		n := 0
		limit := min(len(sl.prefix), len(s.req.Prompt)-1)
		for n < limit && sl.prefix[n] == s.req.Prompt[n] {
			n++
		}
		if n > reuse {
			best, reuse = sl, n
		}
	}
	return best, reuse
}

// prefixDonor finds the busy slot (other than dst) whose cache holds the
// longest start of s's prompt among the prompt rows its request has read so
// far (those rows are what s would compute as prompt rows, bit for bit), and
// how many of them s can take (at most its prompt less the last token).
func (e *Engine) prefixDonor(s *seq, dst *slot) (donor *slot, n int) {
	if !e.cacheable(s) {
		return nil, 0
	}
	for _, sl := range e.slots {
		o := sl.seq
		if sl == dst || o == nil || o.pool != "" || o.req.NoPrefixCache {
			continue // an opted-out request's rows are not offered either
		}
		if _, ok := sl.kv.(backend.PrefixCopier); !ok {
			continue // this backend's caches cannot share rows
		}
		limit := min(o.prefilled, len(o.req.Prompt), sl.kv.Len(), len(s.req.Prompt)-1)
		k := 0
		for k < limit && o.req.Prompt[k] == s.req.Prompt[k] {
			k++
		}
		if k > n {
			donor, n = sl, k
		}
	}
	return donor, n
}

// copyPrefix copies donor's first n positions into dst's cache (dst has
// room: admit reserved it). False when the backend cannot or the copy
// failed (the caller then starts dst empty).
func (e *Engine) copyPrefix(dst, donor *slot, n int) bool {
	c, ok := dst.kv.(backend.PrefixCopier)
	if !ok || donor == nil {
		return false
	}
	if err := c.CopyPrefix(donor.kv, n); err != nil {
		slog.Warn("prefix cache: copying positions from another slot failed; computing them instead", "positions", n, "err", err)
		return false
	}
	return true
}

// releaseSlot frees a slot whose sequence ended: the slot remembers the
// prompt rows its cache holds for pickSlot, unless the step failed or the
// request opted out; e.mu is held.
func (e *Engine) releaseSlot(sl *slot, reason StopReason) {
	s := sl.seq
	sl.prefix = nil
	if reason != StopError && !e.opts.NoPrefixCache && !s.req.NoPrefixCache {
		sl.prefix = slices.Clone(s.req.Prompt[:min(s.prefilled, len(s.req.Prompt))])
	}
	e.useClock++
	sl.lastUse = e.useClock
}
