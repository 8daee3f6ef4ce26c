package engine

import (
	"fmt"
	"log/slog"
	"slices"

	"worker-orcd/backend"
)

// The paged path: on a backend.Pager every sequence's KV cache is a table
// of blocks of one pool (kvTotal blocks of the backend's KVBlockLen
// positions), and the engine decides which block holds what (blocks.go).
//
//   - Admission: the prompt's start is looked up in the prefix cache (the
//     chain of full blocks of its tokens; never its last token, whose row
//     gives the first generated token). Those blocks are shared (held),
//     the rows of a partly matching block after them — a cached block,
//     or a running request's prompt rows (the other choices of n > 1) —
//     are copied into a block of the sequence's own, and the sequence
//     reads its prompt from the first position none of them holds. The
//     rest of the prompt and one more block are fresh blocks; s waits
//     while they are not free or evictable (admitQueue: later requests
//     that fit may start meanwhile, a bounded number of them).
//   - As a sequence's prompt rows complete a block, the block becomes an
//     entry of the cache at once (a concurrent request can share it);
//     when the sequence ends, the partly filled block of its prompt's end
//     too (its prompt rows are copied, never shared, by later requests).
//     Only prompt rows: generated tokens' rows are decode rows, which a
//     backend may compute differently from prompt rows (backend.Seq's
//     Prefill), and a cached row must be bit for bit what a fresh read of
//     the prompt gives. A sequence writes only positions past its shared
//     blocks, so a shared block is never written again.
//   - Growth: one more block when the sequence reaches its table's end;
//     when none is free or evictable the sequence ends alone
//     (KVMemoryError).
//   - Release: every block is given back; entries nobody holds stay
//     cached (least recently used evicted first), the other blocks are
//     free. A sequence that failed leaves nothing more in the cache.

// lockPool takes fwdMu on the paged path, before e.mu, around changes to
// the pool's block tables and copies between its blocks: a BlockPool is
// not safe for concurrent use with a Forward over its caches, and Score's
// forwards run beside the scheduler's goroutine (under fwdMu).
func (e *Engine) lockPool() {
	if e.pool != nil {
		e.fwdMu.Lock()
	}
}

func (e *Engine) unlockPool() {
	if e.pool != nil {
		e.fwdMu.Unlock()
	}
}

// initPaged makes the pool (initKV).
func (e *Engine) initPaged(pager backend.Pager) error {
	pool, err := pager.NewBlockPool(e.kvTotal)
	if err != nil {
		return fmt.Errorf("engine: a pool of %d KV blocks of %d positions: %w", e.kvTotal, e.blockPos, err)
	}
	if pool.BlockLen() != e.blockPos || pool.Blocks() < e.kvTotal {
		pool.Close()
		return fmt.Errorf("engine: the %s backend made a pool of %d blocks of %d positions, asked for %d of %d",
			e.be.Name(), pool.Blocks(), pool.BlockLen(), e.kvTotal, e.blockPos)
	}
	e.pool, e.bc = pool, newBlockCache(e.kvTotal, e.blockPos)
	return nil
}

// closePaged forgets the cache and closes the pool once every sequence
// has ended (the scheduler stops); e.mu is held.
func (e *Engine) closePaged() {
	e.bc.clear()
	if err := e.pool.Close(); err != nil {
		slog.Warn("engine: closing the KV block pool", "err", err)
	}
	e.kvSize.Store(0)
}

// copyRows is a copy of rows into a sequence's own block at admission:
// the first n positions of block src into the block at index j of its
// table.
type copyRows struct {
	j   int
	src int32
	n   int
}

// admitPaged starts queued request s in a free slot if its blocks can be
// had (admitQueue); e.mu is held, and the pool (lockPool).
func (e *Engine) admitPaged(s *seq) admitResult {
	L := e.blockPos
	var sl *slot
	for _, x := range e.slots {
		if x.seq == nil {
			sl = x
			break
		}
	}
	if sl == nil {
		return noSlot
	}
	p := len(s.req.Prompt)
	cache := e.cacheable(s)
	var full []*blockNode
	var part *blockNode
	k := 0
	if cache {
		full, part, k = e.bc.match(s.req.Prompt, p-1)
	}
	m := len(full)
	start := m*L + k
	var copies []copyRows
	if part != nil {
		copies = []copyRows{{m, part.id, k}}
	}
	if donor, n := e.pagedDonor(s); n > start {
		// A running request has read more of this prompt than the
		// cache holds: its rows past the shared blocks are copied.
		part, start, copies = nil, n, copies[:0]
		for j := m; j*L < n; j++ {
			copies = append(copies, copyRows{j, donor.table[j], min(L, n-j*L)})
		}
	}
	want := e.admitBlocks(s)
	keep := append(slices.Clone(full), part)
	if part != nil && e.bc.available(keep...) < want-m {
		// Keeping the cached block to copy from would leave too few:
		// its rows are computed instead.
		part, start, copies, keep = nil, m*L, nil, keep[:m]
	}
	if e.bc.available(keep...) < want-m {
		return noBlocks // s waits for running sequences to give blocks back
	}
	for _, n := range full {
		e.bc.hold(n)
	}
	if part != nil {
		e.bc.hold(part) // not evicted for the fresh blocks
	}
	fresh, _ := e.bc.take(want - m) // available: checked
	table := make([]int32, 0, want)
	for _, n := range full {
		table = append(table, n.id)
	}
	table = append(table, fresh...)
	if sl.pc == nil {
		sl.pc = e.pool.NewCache()
		sl.kv = sl.pc
	}
	err := sl.pc.SetTable(table, start)
	if err == nil {
		for _, c := range copies {
			if err = e.pool.CopyBlock(table[c.j], c.src, c.n); err != nil {
				// Read from the shared blocks on instead.
				slog.Warn("prefix cache: copying a block's rows failed; computing them instead", "positions", c.n, "err", err)
				start, err = m*L, sl.pc.Truncate(m*L)
				break
			}
		}
	}
	if part != nil {
		e.bc.drop([]int32{part.id})
	}
	if err != nil {
		e.bc.drop(table)
		s.finish(StopError, fmt.Errorf("%w: KV cache for %d positions: %w", ErrForward, len(table)*L, err))
		return admitted
	}
	sl.table, sl.reg, sl.cache = table, m, cache
	s.prefilled = start
	e.started(sl, s, cache)

	return admitted
}

// pagedDonor finds the running sequence whose cache holds the longest
// start of s's prompt among the prompt rows its request has read so far
// (what s would compute, bit for bit), and how many of them s can take
// (at most its prompt less the last token); e.mu is held.
func (e *Engine) pagedDonor(s *seq) (donor *slot, n int) {
	if !e.cacheable(s) {
		return nil, 0
	}
	for _, sl := range e.slots {
		o := sl.seq
		if o == nil || !sl.cache {
			continue // an opted-out request's rows are not offered
		}
		limit := min(o.prefilled, len(o.req.Prompt), sl.kv.Len(), len(s.req.Prompt)-1)
		if k := commonPrefix(o.req.Prompt[:limit], s.req.Prompt[:limit]); k > n {
			donor, n = sl, k
		}
	}
	return donor, n
}

// growPaged is grow on the paged path: the blocks that need positions
// span (one more, as a sequence generates), evicting cached blocks where
// no free one does.
func (e *Engine) growPaged(sl *slot, need int) error {
	e.lockPool()
	defer e.unlockPool()
	e.mu.Lock()
	defer e.mu.Unlock()
	blocks := e.blocksFor(need)
	ids, ok := e.bc.take(blocks - len(sl.table))
	if !ok {
		return e.kvError(true, need, blocks)
	}
	table := append(slices.Clone(sl.table), ids...)
	if err := sl.pc.SetTable(table, sl.pc.Len()); err != nil {
		e.bc.drop(ids)
		return fmt.Errorf("%w: KV cache for %d positions: %w", ErrForward, len(table)*e.blockPos, err)
	}
	sl.table = table
	e.noteSize()
	return nil
}

// registerRows makes the blocks that sl's sequence has filled with prompt
// rows since the last call entries of the prefix cache (after each step,
// so that concurrent requests share them); e.mu is held. Where the cache
// holds the same rows in another block already (two requests read the
// same prompt at once), the sequence reads them there and gives its own
// block back (the pool is locked: lockPool), unless it is ending (final:
// its own block is then simply free once it is given back).
func (e *Engine) registerRows(sl *slot, final bool) {
	if !sl.cache {
		return
	}
	s, L := sl.seq, e.blockPos
	rows := min(s.prefilled, sl.pc.Len(), len(s.req.Prompt))
	for ; sl.reg < len(sl.table) && (sl.reg+1)*L <= rows; sl.reg++ {
		j := sl.reg
		parent, ok := e.parentEntry(sl, j)
		if !ok {
			return
		}
		n, dup := e.bc.register(sl.table[j], parent, s.req.Prompt[j*L:(j+1)*L])
		if n != nil {
			continue
		}
		if dup == nil || final {
			return // another chain's hash (this one is cached no further), or the end
		}
		table := slices.Clone(sl.table)
		table[j] = dup.id
		if err := sl.pc.SetTable(table, sl.pc.Len()); err != nil {
			return
		}
		e.bc.hold(dup)
		e.bc.drop(sl.table[j : j+1])
		sl.table = table
	}
}

// parentEntry is the cache entry that block j of sl's table follows (nil
// for the first block); false when block j−1 is no entry (any more).
func (e *Engine) parentEntry(sl *slot, j int) (*blockNode, bool) {
	if j == 0 {
		return nil, true
	}
	n := e.bc.node[sl.table[j-1]]
	return n, n != nil
}

// releasePaged gives back the blocks of sl's sequence (release); e.mu is
// held (the pool's tables are not touched: the slot's cache keeps its
// table until its next sequence sets one). Unless it failed, its prompt
// rows go into the cache first: the full blocks not yet in it and the
// partly filled block at their end.
func (e *Engine) releasePaged(sl *slot, reason StopReason) {
	s := sl.seq
	if reason != StopError && sl.cache {
		e.registerRows(sl, true)
		L := e.blockPos
		rows := min(s.prefilled, sl.pc.Len(), len(s.req.Prompt))
		if j, k := rows/L, rows%L; k > 0 && sl.reg == j && j < len(sl.table) && e.bc.node[sl.table[j]] == nil {
			if parent, ok := e.parentEntry(sl, j); ok {
				e.bc.addPartial(sl.table[j], parent, s.req.Prompt[j*L:j*L+k])
			}
		}
	}
	e.bc.drop(sl.table)
	sl.table, sl.reg, sl.cache = nil, 0, false
}
