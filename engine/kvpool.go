package engine

import (
	"fmt"
	"slices"

	"worker-orcd/backend"
)

// The KV memory budget (Options.KVMemory) is counted in blocks of
// Options.KVBlock positions × the model's bytes a position. A slot's cache
// is charged the blocks its capacity spans; a busy slot's blocks are
// used, a free slot's are cached (its last prompt, kept for prefix reuse,
// evicted least recently used first when blocks are needed), and what
// neither holds is free. Score's caches are used blocks while it runs.
//
// The caches themselves are still one allocation per sequence that grows
// a block at a time (Reserve); a paged cache will hand out the same blocks
// from a pool without the copy, and the engine's rules — admission waits
// for its prompt's blocks plus one, a sequence that cannot grow ends alone
// — stay as they are.

// DefaultKVBlock is the positions a block of KV memory counts by default.
const DefaultKVBlock = 256

// initKV settles the block size and the budget (New).
func (e *Engine) initKV() error {
	o := &e.opts
	e.blockPos = o.KVBlock
	if sz, ok := e.be.(backend.KVSizer); ok {
		e.posBytes = sz.KVBytesPerPosition()
	} else {
		// Measured on a cache of one block.
		kv, err := e.be.NewKVCache(e.blockPos)
		if err != nil {
			return fmt.Errorf("engine: a KV cache of %d positions, to measure a block: %w", e.blockPos, err)
		}
		e.posBytes = (kv.Bytes() + int64(e.blockPos) - 1) / int64(e.blockPos)
		kv.Free()
	}
	e.posBytes = max(e.posBytes, 1)
	e.blockBytes = e.posBytes * int64(e.blockPos)
	budget, source := o.KVMemory, o.KVMemorySource
	switch {
	case budget > 0:
		if source == "" {
			source = "set by the engine's options"
		}
	case budget < 0:
		budget, source = 0, "no limit (set so)"
	default:
		if adv, ok := e.be.(backend.KVMemoryAdvisor); ok {
			n, src, err := adv.DefaultKVMemory(o.Parallel, o.BatchTokens)
			if err != nil {
				return fmt.Errorf("engine: the KV memory budget: %w", err)
			}
			budget, source = n, "default: "+src
		} else {
			source = "no limit: the backend gives no default"
		}
	}
	if lim, ok := e.be.(backend.KVLimiter); ok {
		lim.SetKVBudget(budget) // one limit: the engine's
	}
	e.kvBudget, e.kvSource = budget, source
	if budget <= 0 {
		// No limit: enough blocks for every slot's whole context, which
		// is as much as the slots can take.
		e.kvTotal = o.Parallel * e.blocksFor(o.CtxLen)
		return nil
	}
	e.kvLimited = true
	e.kvTotal = int(min(budget/e.blockBytes, int64(1)<<40))
	if e.kvTotal < 1 {
		return fmt.Errorf("engine: the KV memory budget of %d bytes (%s) holds no block of %d positions (%d bytes a block for this model): raise --kv-memory (WORKER_KV_MEMORY)",
			budget, source, e.blockPos, e.blockBytes)
	}
	return nil
}

// blocksFor is the blocks that n positions span.
func (e *Engine) blocksFor(n int) int { return (n + e.blockPos - 1) / e.blockPos }

// kvCounts returns the used and cached blocks; e.mu is held.
func (e *Engine) kvCounts() (used, cached int) {
	used = e.scoreBlocks
	for _, sl := range e.slots {
		if sl.seq != nil {
			used += sl.blocks
		} else {
			cached += sl.blocks
		}
	}
	return used, cached
}

// kvFree returns the blocks neither used nor cached; e.mu is held.
func (e *Engine) kvFree() int {
	used, cached := e.kvCounts()
	return max(e.kvTotal-used-cached, 0)
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

// admitBlocks is the blocks s starts with: its prompt's and one more for
// what it generates, no more than it can ever fill nor than the budget.
func (e *Engine) admitBlocks(s *seq) int {
	p := len(s.req.Prompt)
	return min(e.blocksFor(p)+1, e.blocksFor(p+s.maxTokens), e.kvTotal)
}

// fits reports, for submit, a prompt that needs more blocks than the
// whole budget holds: it could never start.
func (e *Engine) fits(s *seq) error {
	if !e.kvLimited {
		return nil
	}
	p := len(s.req.Prompt)
	if n := e.blocksFor(p); n > e.kvTotal {
		return e.kvError(false, p, n)
	}
	return nil
}

// grow makes room in sl's cache for need positions, a block at a time,
// within its request's positions; e.mu is taken. Where the budget has no
// free block and no cached one to evict, it returns a *KVMemoryError and
// the cache is unchanged.
func (e *Engine) grow(sl *slot, need int) error {
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

// noteSize records the bytes the slots' caches hold, for Stats; e.mu is
// held.
func (e *Engine) noteSize() {
	var size int64
	for _, sl := range e.slots {
		if sl.kv != nil {
			size += sl.kv.Bytes()
		}
	}
	e.kvSize.Store(size)
}

// blocksFreed wakes whoever waits for blocks (Score); e.mu is held.
func (e *Engine) blocksFreed() {
	close(e.freed)
	e.freed = make(chan struct{})
}

func (e *Engine) kvError(grow bool, positions, blocks int) *KVMemoryError {
	return &KVMemoryError{Grow: grow, Positions: positions, Blocks: blocks, BlockPositions: e.blockPos,
		BlockBytes: e.blockBytes, TotalBlocks: e.kvTotal, Budget: e.kvBudget, Source: e.kvSource}
}

// KVMemoryError is a sequence that does not fit in the KV memory budget:
// a prompt that needs more blocks than the whole budget holds (Grow
// false: the request could never start; it matches ErrInvalidRequest), or
// a running sequence that needs one more block while other running
// sequences hold them all (Grow true: it ends, the others go on; it
// matches backend.ErrOutOfMemory, so servers answer it as they answer a
// device allocation that fails). Both match ErrKVMemory.
type KVMemoryError struct {
	Grow           bool
	Positions      int   // positions the sequence needs
	Blocks         int   // blocks they span
	BlockPositions int   // positions a block
	BlockBytes     int64 // bytes a block
	TotalBlocks    int   // blocks the budget holds
	Budget         int64 // bytes of the budget
	Source         string
}

func (e *KVMemoryError) Error() string {
	if !e.Grow {
		return fmt.Sprintf("KVMemoryExceeded: the prompt's %d tokens need %d KV blocks of %d positions (%d bytes a block) but the KV memory budget holds %d blocks (%d bytes, %s): shorten the prompt, or start the worker with a larger --kv-memory (WORKER_KV_MEMORY) if the device has the memory",
			e.Positions, e.Blocks, e.BlockPositions, e.BlockBytes, e.TotalBlocks, e.Budget, e.Source)
	}
	return fmt.Sprintf("KVMemoryExceeded: the sequence needs a KV block for position %d (block %d of %d positions, %d bytes) but the other running sequences hold all %d blocks of the KV memory budget (%d bytes, %s): the tokens so far are kept; retry, lower max_tokens, run fewer sequences at once (--parallel) or raise --kv-memory (WORKER_KV_MEMORY)",
		e.Positions-1, e.Blocks, e.BlockPositions, e.BlockBytes, e.TotalBlocks, e.Budget, e.Source)
}

// Is matches ErrKVMemory, and ErrInvalidRequest (a prompt that never
// fits) or backend.ErrOutOfMemory (a sequence that cannot grow).
func (e *KVMemoryError) Is(target error) bool {
	switch target {
	case ErrKVMemory:
		return true
	case ErrInvalidRequest:
		return !e.Grow
	case backend.ErrOutOfMemory:
		return e.Grow
	}
	return false
}
