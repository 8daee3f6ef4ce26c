package engine

import (
	"fmt"
	"math"

	"worker-orcd/backend"
)

// The KV memory budget (Options.KVMemory) is counted in blocks of
// positions × the model's bytes a position. On a backend.Pager the blocks
// are the backend's (KVBlockLen positions), and they are the memory
// itself: one pool of the budget's blocks, each sequence's cache a table
// of them, the prefix cache the blocks of prompt rows that ended requests
// left (paged.go, blocks.go). On other backends a block is Options.KVBlock
// positions of accounting, and each slot's cache one allocation charged
// the blocks its capacity spans (kvslots.go). Either way: blocks held by
// running sequences (and Score's caches) are used, those the prefix cache
// keeps are cached (evicted least recently used first when blocks are
// needed), the rest free; admission waits for its prompt's blocks plus
// one, and a sequence that cannot grow ends alone.

// DefaultKVBlock is the positions a block of KV memory counts by default
// on a backend that is not a backend.Pager (a Pager's blocks hold its
// KVBlockLen positions).
const DefaultKVBlock = 256

// initKV settles the block size and the budget (New).
func (e *Engine) initKV() error {
	o := &e.opts
	e.blockPos = o.KVBlock
	pager, paged := e.be.(backend.Pager)
	if paged {
		e.blockPos = pager.KVBlockLen()
		if e.blockPos < 1 {
			return fmt.Errorf("engine: the %s backend's KV blocks hold %d positions", e.be.Name(), e.blockPos)
		}
	}
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
	} else {
		e.kvLimited = true
		e.kvTotal = int(min(budget/e.blockBytes, int64(1)<<40))
		if paged {
			e.kvTotal = min(e.kvTotal, math.MaxInt32) // block ids are int32
		}
		if e.kvTotal < 1 {
			return fmt.Errorf("engine: the KV memory budget of %d bytes (%s) holds no block of %d positions (%d bytes a block for this model): raise --kv-memory (WORKER_KV_MEMORY)",
				budget, source, e.blockPos, e.blockBytes)
		}
	}
	if paged {
		return e.initPaged(pager)
	}
	return nil
}

// blocksFor is the blocks that n positions span.
func (e *Engine) blocksFor(n int) int { return (n + e.blockPos - 1) / e.blockPos }

// kvCounts returns the used and cached blocks; e.mu is held.
func (e *Engine) kvCounts() (used, cached int) {
	if e.bc != nil {
		return e.bc.used, e.bc.cached
	}
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

// noteSize records the bytes the KV caches hold (the pool's, or the
// slots' caches'), for Stats; e.mu is held, on the scheduler's goroutine.
func (e *Engine) noteSize() {
	if e.pool != nil {
		e.kvSize.Store(e.pool.Bytes())
		return
	}
	var size int64
	for _, sl := range e.slots {
		if sl.kv != nil {
			size += sl.kv.Bytes()
		}
	}
	e.kvSize.Store(size)
}

// grow makes room in sl's cache for need positions (see growPaged and
// growSlot); e.mu is taken. Where the budget has no free block and no
// cached one to evict, it returns a *KVMemoryError and the cache is
// unchanged.
func (e *Engine) grow(sl *slot, need int) error {
	if e.bc != nil {
		return e.growPaged(sl, need)
	}
	return e.growSlot(sl, need)
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
