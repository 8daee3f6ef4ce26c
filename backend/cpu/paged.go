package cpu

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"worker-orcd/backend"
)

// ErrBadBlocks reports a block pool call with bad arguments: a block id
// outside the pool, a table that names a block twice, a position count
// beyond a table, a block copied before it was ever used, a closed pool.
var ErrBadBlocks = errors.New("cpu: bad KV block request")

// KVBlockLen is the positions a block of this backend holds
// (backend.Pager).
func (b *Backend) KVBlockLen() int { return KVBlockLen }

// NewBlockPool makes a pool of up to blocks KV blocks of KVBlockLen
// positions (backend.Pager). A block takes its memory — every layer's
// keys and values, KVBytesPerPosition·KVBlockLen bytes — the first time a
// cache's table uses it, counted against the backend's KV budget (see
// SetKVBudget); the pool gives it all back when it is closed.
func (b *Backend) NewBlockPool(blocks int) (backend.BlockPool, error) {
	if blocks < 1 || int64(blocks) > math.MaxInt32+1 {
		return nil, fmt.Errorf("%w: a pool of %d KV blocks: want 1 to %d (block ids are int32)", ErrBadBlocks, blocks, int64(math.MaxInt32)+1)
	}
	return &BlockPool{be: b, layers: b.c.NLayer, kvDim: b.c.KVDim(), blocks: blocks}, nil
}

// BlockPool is the CPU backend's pool of KV blocks (backend.BlockPool).
// Each block is one []float32 of [layer][K, V][KVBlockLen][kvDim], made
// the first time a table uses its id and kept until Close. It is not safe
// for concurrent use with Forward over its caches; Bytes may be called
// at any time.
type BlockPool struct {
	be            *Backend
	layers, kvDim int
	blocks        int         // ids 0 … blocks−1
	mem           [][]float32 // by id, nil until first used; grown to the largest id used
	bytes         atomic.Int64
	closed        bool
	sorted        []int32 // SetTable's scratch: the table sorted, to find an id named twice
}

// Blocks is the number of blocks the pool may hold.
func (p *BlockPool) Blocks() int { return p.blocks }

// BlockLen is the positions a block holds (KVBlockLen).
func (p *BlockPool) BlockLen() int { return KVBlockLen }

// Bytes is the memory of the blocks used so far.
func (p *BlockPool) Bytes() int64 { return p.bytes.Load() }

// blockBytes is one block's memory.
func (p *BlockPool) blockBytes() int64 { return kvBytes(p.layers, p.kvDim, KVBlockLen) }

// NewCache returns an empty cache reading through a table of this pool's
// blocks.
func (p *BlockPool) NewCache() backend.PagedCache {
	return &PagedKVCache{kvStore: kvStore{layers: p.layers, kvDim: p.kvDim}, pool: p}
}

// block returns id's memory, nil when the id was never used.
func (p *BlockPool) block(id int32) []float32 {
	if int(id) < len(p.mem) {
		return p.mem[id]
	}
	return nil
}

// checkID reports an id outside the pool.
func (p *BlockPool) checkID(what string, id int32) error {
	if id < 0 || int(id) >= p.blocks {
		return fmt.Errorf("%w: %s is block %d, outside the pool's blocks 0 to %d", ErrBadBlocks, what, id, p.blocks-1)
	}
	return nil
}

// errClosed is the error of a call on a closed pool or on a cache of one.
func errClosed() error {
	return fmt.Errorf("%w: the KV block pool is closed", ErrBadBlocks)
}

// CopyBlock copies the first n positions (every layer's keys and values)
// of block src into block dst. Both must have been used by a cache's
// table before; dst's other positions are left as they are.
func (p *BlockPool) CopyBlock(dst, src int32, n int) error {
	if p.closed {
		return errClosed()
	}
	if err := p.checkID("the destination", dst); err != nil {
		return err
	}
	if err := p.checkID("the source", src); err != nil {
		return err
	}
	if n < 0 || n > KVBlockLen {
		return fmt.Errorf("%w: copy %d positions of block %d to block %d: a block holds 0 to %d", ErrBadBlocks, n, src, dst, KVBlockLen)
	}
	if dst == src {
		return fmt.Errorf("%w: copy block %d onto itself", ErrBadBlocks, src)
	}
	d, s := p.block(dst), p.block(src)
	for _, x := range []struct {
		id  int32
		mem []float32
	}{{src, s}, {dst, d}} {
		if x.mem == nil {
			return fmt.Errorf("%w: copy block %d to block %d: block %d was never used by a cache (SetTable), it holds nothing", ErrBadBlocks, src, dst, x.id)
		}
	}
	w := KVBlockLen * p.kvDim // a layer's key (or value) rows
	m := n * p.kvDim
	for o := 0; o < len(d); o += w { // layer 0's keys, its values, layer 1's keys …
		copy(d[o:o+m], s[o:o+m])
	}
	return nil
}

// Close releases the pool's memory and gives its bytes back to the
// budget. Its caches cannot be used after (Forward refuses them); a second
// Close does nothing.
func (p *BlockPool) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	p.be.kv.give(p.bytes.Swap(0))
	p.mem = nil
	return nil
}

// use gives every id of table that has no memory yet its block, if their
// bytes fit in the budget; table has been checked (ids in the pool, none
// twice).
func (p *BlockPool) use(table []int32) error {
	fresh, top := 0, int32(-1)
	for _, id := range table {
		if p.block(id) == nil {
			fresh++
			top = max(top, id)
		}
	}
	if fresh == 0 {
		return nil
	}
	bytes := int64(fresh) * p.blockBytes()
	if err := p.be.kv.take(bytes, 0, fresh*KVBlockLen); err != nil {
		var ae *AllocationError
		if errors.As(err, &ae) {
			ae.Blocks = fresh
		}
		return err
	}
	p.bytes.Add(bytes)
	if int(top) >= len(p.mem) {
		p.mem = slices.Grow(p.mem, min(max(int(top)+1, 2*len(p.mem)), p.blocks)-len(p.mem))
		p.mem = p.mem[:cap(p.mem)]
	}
	floats := int(p.blockBytes() / 4)
	for _, id := range table {
		if p.mem[id] == nil {
			p.mem[id] = make([]float32, floats)
		}
	}
	return nil
}

// PagedKVCache is one sequence's cache in a BlockPool's blocks
// (backend.PagedCache): position p is row p % KVBlockLen of block
// Table()[p / KVBlockLen].
type PagedKVCache struct {
	kvStore
	pool  *BlockPool
	table []int32
}

// Table is the cache's block ids in position order (not to be changed).
func (c *PagedKVCache) Table() []int32 { return c.table }

// SetTable makes the cache read through (a copy of) table and hold its
// first n positions. Every id must be a block of the pool, none twice. The
// blocks no table used before take their memory now; when that does not
// fit in the backend's KV budget the error is an *AllocationError
// (backend.ErrOutOfMemory) and the cache is unchanged.
func (c *PagedKVCache) SetTable(table []int32, n int) error {
	p := c.pool
	if p.closed {
		return errClosed()
	}
	if n < 0 || n > len(table)*KVBlockLen {
		return fmt.Errorf("%w: a table of %d blocks holds %d positions, not %d", ErrBadBlocks, len(table), len(table)*KVBlockLen, n)
	}
	for i, id := range table {
		if err := p.checkID(fmt.Sprintf("table entry %d", i), id); err != nil {
			return err
		}
	}
	p.sorted = append(p.sorted[:0], table...)
	slices.Sort(p.sorted)
	for i := 1; i < len(p.sorted); i++ {
		if id := p.sorted[i]; id == p.sorted[i-1] {
			first := slices.Index(table, id)
			second := first + 1 + slices.Index(table[first+1:], id)
			return fmt.Errorf("%w: the table names block %d twice (entries %d and %d)", ErrBadBlocks, id, first, second)
		}
	}
	if err := p.use(table); err != nil {
		return err
	}
	c.table = slices.Clone(table)
	c.blocks = c.blocks[:0]
	for _, id := range table {
		c.blocks = append(c.blocks, p.mem[id])
	}
	c.maxLen, c.n = len(table)*KVBlockLen, n
	return nil
}

// Bytes is the memory of the blocks the table names (some of which other
// caches may read too).
func (c *PagedKVCache) Bytes() int64 { return kvBytes(c.layers, c.kvDim, c.maxLen) }

// Reserve succeeds when the table's blocks hold n positions; a paged
// cache grows only by SetTable (the engine hands out the blocks).
func (c *PagedKVCache) Reserve(n int) error {
	if n <= c.maxLen {
		return nil
	}
	return fmt.Errorf("%w: reserve %d positions in a paged KV cache of %d blocks (%d positions): give it more blocks with SetTable",
		ErrBadBlocks, n, len(c.table), c.maxLen)
}

// Free forgets the table (the blocks stay in the pool, for the engine to
// hand out again); the cache is empty after.
func (c *PagedKVCache) Free() {
	c.table, c.blocks = nil, nil
	c.maxLen, c.n = 0, 0
}

// usable reports a cache whose pool is closed.
func (c *PagedKVCache) usable() error {
	if c.pool.closed {
		return errClosed()
	}
	return nil
}

var (
	_ backend.Pager      = (*Backend)(nil)
	_ backend.BlockPool  = (*BlockPool)(nil)
	_ backend.PagedCache = (*PagedKVCache)(nil)
)
