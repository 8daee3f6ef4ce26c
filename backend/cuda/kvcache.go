package cuda

import (
	"errors"
	"fmt"
	"unsafe"

	"worker-orcd/backend"
)

// The paged KV cache. A sequence's keys and values live in blocks of
// kvBlockLen positions. Blocks come in segments of S blocks laid out layer
// by layer, [layer][S blocks][K, V][kvBlockLen][kvd] elements of the KV
// type, so that a layer's blocks sit together (attention over a long
// sequence reads one region a layer, not a few rows every S·L blocks). A
// cache is a table of its blocks' layer-0 addresses in position order,
// kept on the device too (tab) after a header entry: the layer stride
// S·2·kvBlockLen·kvd in elements. Kernels reach layer l's key row of
// position p of a row as table[p / kvBlockLen] + l·stride + (p %
// kvBlockLen)·kvd, its value row kvBlockLen·kvd elements further
// (kernels/common.cuh, kv_row).
//
// Two kinds of cache read through tables:
//   - a standalone cache (NewKVCache) owns its blocks: one segment, which
//     Reserve replaces by a larger one (copying the blocks used);
//   - a pool cache (blockPool.NewCache) reads the blocks of a pool the
//     engine hands out by id (SetTable): no copy as it grows, and blocks
//     shared between sequences whose prompts start alike. All of a pool's
//     segments have the same S, so a table's blocks share one stride.

// kvBlockLen is KV_BLOCK of kernels/common.cuh: the positions of a block.
// attention_prompt's tiles of 16 positions aligned at multiples of 16 each
// lie in one block.
const kvBlockLen = 16

// KVBlockLen is the positions of a KV block on this backend (what
// Backend.KVBlockLen returns), for tools that count a budget in blocks
// without a device (doctor).
const KVBlockLen = kvBlockLen

// checkLayer checks the layer a kernel reads.
func checkLayer(kernel string, layer int) error {
	if layer < 0 || layer > 1<<12 {
		return fmt.Errorf("%w: %s: layer %d", ErrLaunch, kernel, layer)
	}
	return nil
}

// kvBlockLayerBytes is the bytes of one layer's keys and values of a block.
func (b *Backend) kvBlockLayerBytes() int64 {
	return int64(2*kvBlockLen) * int64(b.c.KVDim()) * b.kvElem()
}

// kvBlockBytes is the bytes of one block: every layer's keys and values of
// kvBlockLen positions.
func (b *Backend) kvBlockBytes() int64 { return int64(b.c.NLayer) * b.kvBlockLayerBytes() }

// kvElem is the bytes of one KV cache element.
func (b *Backend) kvElem() int64 {
	if b.kvType == "f32" {
		return 4
	}
	return 2
}

// KVType is the KV cache's element type, "f16" or "f32".
func (b *Backend) KVType() string { return b.kvType }

// KVBlockLen is the positions a KV block holds (backend.Pager).
func (b *Backend) KVBlockLen() int { return kvBlockLen }

// kvCache is one sequence's cache: its block table on the host (ptrs) and
// on the device (tab, uploaded by Forward when dirty).
type kvCache struct {
	b     *Backend
	own   *Buffer    // a standalone cache's blocks (nil for a pool cache)
	pool  *blockPool // a pool cache's pool
	ids   []int32    // a pool cache's block ids
	ptrs  []uint64   // each block's layer-0 device address, in position order
	seg   int        // the blocks' segment size S (the layer stride is S blocks)
	tab   *Buffer    // the stride in elements, then ptrs (room for tab.Bytes/8−1 entries)
	host  []uint64   // what queueTab uploads: the header and ptrs
	dirty bool       // ptrs changed since tab was written
	n     int
}

// NewKVCache allocates a standalone device cache for maxLen positions.
func (b *Backend) NewKVCache(maxLen int) (backend.KVCache, error) {
	if maxLen <= 0 {
		return nil, fmt.Errorf("%w: KV cache of %d positions", ErrBadInput, maxLen)
	}
	kv := &kvCache{b: b}
	return kv, kv.Reserve(maxLen)
}

func (kv *kvCache) Len() int { return kv.n }
func (kv *kvCache) Cap() int { return len(kv.ptrs) * kvBlockLen }

// Bytes is the memory the cache's blocks take (a pool cache: its table's
// blocks, some perhaps shared with other caches).
func (kv *kvCache) Bytes() int64 {
	if kv.pool != nil {
		return int64(len(kv.ids)) * kv.b.kvBlockBytes()
	}
	if kv.own == nil {
		return 0
	}
	return kv.own.Bytes
}

// Reserve grows a standalone cache to n positions (whole blocks), keeping
// what it holds. A pool cache grows by SetTable only.
func (kv *kvCache) Reserve(n int) error {
	if n <= kv.Cap() {
		return nil
	}
	if kv.pool != nil {
		return fmt.Errorf("%w: reserve %d KV positions: a pool cache holds the %d positions of its %d blocks and grows by SetTable",
			ErrBadInput, n, kv.Cap(), len(kv.ids))
	}
	b := kv.b
	blocks := (n + kvBlockLen - 1) / kvBlockLen
	lb := b.kvBlockLayerBytes()
	return b.dev.do(func() error {
		nb, err := b.dev.alloc(int64(blocks)*b.kvBlockBytes(), PurposeKVCache)
		if err != nil {
			return err
		}
		if used := (kv.n + kvBlockLen - 1) / kvBlockLen; kv.own != nil && used > 0 {
			for l := range int64(b.c.NLayer) { // each layer's blocks used, into the new layer region
				from, to := kv.own.Ptr+devicePtr(l*int64(kv.seg)*lb), nb.Ptr+devicePtr(l*int64(blocks)*lb)
				if err := check("cuMemcpyDtoDAsync", drv.cuMemcpyDtoDAsync_v2(to, from, uint64(int64(used)*lb), b.dev.stream)); err != nil {
					return errors.Join(err, b.dev.free(nb))
				}
			}
			if err := check("cuStreamSynchronize", drv.cuStreamSynchronize(b.dev.stream)); err != nil {
				return errors.Join(err, b.dev.free(nb))
			}
		}
		ptrs := make([]uint64, blocks)
		for i := range ptrs {
			ptrs[i] = uint64(nb.Ptr) + uint64(int64(i)*lb)
		}
		if err := kv.ensureTab(blocks); err != nil {
			return errors.Join(err, b.dev.free(nb))
		}
		old := kv.own
		kv.own, kv.ptrs, kv.seg, kv.dirty = nb, ptrs, blocks, true
		return b.dev.free(old) // the copy is done: the new blocks stay even if this fails
	})
}

// ensureTab makes the device table hold n entries after its header (the
// old entries are not kept: a dirty table is written whole); call inside
// do.
func (kv *kvCache) ensureTab(n int) error {
	n++ // the header
	if kv.tab != nil && kv.tab.Bytes >= int64(8*n) {
		return nil
	}
	room := max(n, 64)
	if kv.tab != nil {
		room = max(n, int(kv.tab.Bytes/8)*2)
	}
	t, err := kv.b.dev.alloc(int64(8*room), PurposeKVCache)
	if err != nil {
		return err
	}
	old := kv.tab
	kv.tab, kv.dirty = t, true
	return kv.b.dev.free(old)
}

// queueTab queues the upload of a dirty table on the device's stream (the
// Forward's metadata copy that follows waits for it); call inside do. host
// is not changed until the stream has synchronized (only the next
// queueTab does, in a later Forward).
func (kv *kvCache) queueTab() error {
	if !kv.dirty || len(kv.ptrs) == 0 {
		return nil
	}
	kv.host = append(append(kv.host[:0], uint64(kv.seg)*uint64(2*kvBlockLen*kv.b.c.KVDim())), kv.ptrs...)
	if err := check("cuMemcpyHtoDAsync", drv.cuMemcpyHtoDAsync_v2(kv.tab.Ptr, unsafe.Pointer(&kv.host[0]), uint64(8*len(kv.host)), kv.b.dev.stream)); err != nil {
		return err
	}
	kv.dirty = false
	return nil
}

// tabEntries is the device address of the table's entries (after the
// header): what the kernels get a row.
func (kv *kvCache) tabEntries() devicePtr { return kv.tab.Ptr + 8 }

// CopyPrefix makes a standalone cache hold the first n positions of another
// standalone cache of this backend: the whole blocks in one device copy, the
// last partial block's rows layer by layer. Pool caches share blocks
// instead (the engine's prefix cache).
func (kv *kvCache) CopyPrefix(src backend.KVCache, n int) error {
	o, ok := src.(*kvCache)
	if !ok || o.b != kv.b {
		return fmt.Errorf("%w: copy KV prefix: the source is not a cache of this backend (%T)", ErrBadInput, src)
	}
	if kv.pool != nil || o.pool != nil {
		return fmt.Errorf("%w: copy KV prefix: pool caches share blocks (SetTable) rather than copy them", ErrBadInput)
	}
	if n < 0 || n > o.n || n > kv.Cap() {
		return fmt.Errorf("%w: copy %d KV positions: the source holds %d, this cache has room for %d", ErrBadInput, n, o.n, kv.Cap())
	}
	b := kv.b
	lb := b.kvBlockLayerBytes()
	err := b.dev.do(func() error {
		full, rest := n/kvBlockLen, n%kvBlockLen
		if full > 0 {
			for l := range int64(b.c.NLayer) {
				from, to := o.own.Ptr+devicePtr(l*int64(o.seg)*lb), kv.own.Ptr+devicePtr(l*int64(kv.seg)*lb)
				if err := check("cuMemcpyDtoDAsync", drv.cuMemcpyDtoDAsync_v2(to, from, uint64(int64(full)*lb), b.dev.stream)); err != nil {
					return err
				}
			}
		}
		if rest > 0 {
			return b.copyRows(devicePtr(kv.ptrs[full]), int64(kv.seg)*lb, devicePtr(o.ptrs[full]), int64(o.seg)*lb, rest)
		}
		return nil
	})
	if err != nil {
		return err
	}
	kv.n = n
	return nil
}

// copyRows queues the copy of the first n positions of a block at src
// (layer stride srcStride bytes) into the block at dst (dstStride), every
// layer's keys and values; call inside do.
func (b *Backend) copyRows(dst devicePtr, dstStride int64, src devicePtr, srcStride int64, n int) error {
	row := int64(b.c.KVDim()) * b.kvElem()
	for l := range int64(b.c.NLayer) {
		for _, half := range []int64{0, kvBlockLen * row} { // keys, values
			to, from := dst+devicePtr(l*dstStride+half), src+devicePtr(l*srcStride+half)
			if err := check("cuMemcpyDtoDAsync", drv.cuMemcpyDtoDAsync_v2(to, from, uint64(int64(n)*row), b.dev.stream)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Truncate forgets positions from n on.
func (kv *kvCache) Truncate(n int) error {
	if n < 0 || n > kv.n {
		return fmt.Errorf("cuda: truncate KV cache to %d positions: it holds %d", n, kv.n)
	}
	kv.n = n
	return nil
}

// Free releases a standalone cache's device memory, and a pool cache's
// table (its blocks are the engine's to reuse). After the backend's Close
// it only forgets the cache (the memory went with the device's context).
func (kv *kvCache) Free() {
	if kv.b.dev != nil {
		_ = kv.b.dev.do(func() error { // ErrDeviceClosed after Close; a driver error leaves nothing to do
			return errors.Join(kv.b.dev.free(kv.own), kv.b.dev.free(kv.tab))
		})
	}
	kv.own, kv.tab, kv.ptrs, kv.ids, kv.n, kv.dirty = nil, nil, nil, nil, 0, false
}

// Table is a pool cache's block ids (backend.PagedCache).
func (kv *kvCache) Table() []int32 { return kv.ids }

// SetTable makes a pool cache read through table and hold its first n
// positions, taking the memory of blocks never used before
// (backend.PagedCache).
func (kv *kvCache) SetTable(table []int32, n int) error {
	p := kv.pool
	if p == nil {
		return fmt.Errorf("%w: SetTable on a standalone KV cache (Reserve grows it)", ErrBadInput)
	}
	if n < 0 || n > len(table)*kvBlockLen {
		return fmt.Errorf("%w: a KV block table of %d blocks holds %d positions, not %d", ErrBadInput, len(table), len(table)*kvBlockLen, n)
	}
	for _, id := range table {
		if id < 0 || int(id) >= p.blocks {
			return fmt.Errorf("%w: KV block %d: the pool holds blocks 0 … %d", ErrBadInput, id, p.blocks-1)
		}
	}
	if p.closed {
		return fmt.Errorf("%w: SetTable on a cache of a closed KV block pool", ErrBadInput)
	}
	b := kv.b
	ptrs := make([]uint64, len(table))
	err := b.dev.do(func() error {
		for i, id := range table {
			addr, err := p.block(id)
			if err != nil {
				return err
			}
			ptrs[i] = uint64(addr)
		}
		return kv.ensureTab(len(table))
	})
	if err != nil {
		return err
	}
	kv.ids, kv.ptrs, kv.seg, kv.n, kv.dirty = append(kv.ids[:0:0], table...), ptrs, p.segBlocks, n, true
	return nil
}

// blockPool is a backend.BlockPool on the device: blocks numbered 0 …
// blocks−1 in segments of segBlocks consecutive blocks (each of the same
// size, the last one too, so that every block has the same layer stride),
// each segment allocated the first time one of its blocks is used.
type blockPool struct {
	b         *Backend
	blocks    int
	segBlocks int
	segs      []*Buffer // nil: not allocated yet
	used      []bool    // blocks a table has held (CopyBlock's operands)
	closed    bool
}

// kvSegmentBytes is about the memory a pool takes at a time (at least one
// block).
const kvSegmentBytes = 64 << 20

// NewBlockPool makes a pool of up to blocks KV blocks (backend.Pager).
func (b *Backend) NewBlockPool(blocks int) (backend.BlockPool, error) {
	if blocks < 1 || blocks > 1<<30 {
		return nil, fmt.Errorf("%w: a KV block pool of %d blocks (want 1 … %d)", ErrBadInput, blocks, 1<<30)
	}
	per := min(int(max(1, kvSegmentBytes/b.kvBlockBytes())), blocks)
	return &blockPool{b: b, blocks: blocks, segBlocks: per, segs: make([]*Buffer, (blocks+per-1)/per), used: make([]bool, blocks)}, nil
}

func (p *blockPool) Blocks() int   { return p.blocks }
func (p *blockPool) BlockLen() int { return kvBlockLen }

// NewCache returns an empty cache reading through a table of this pool's
// blocks.
func (p *blockPool) NewCache() backend.PagedCache { return &kvCache{b: p.b, pool: p} }

// block returns the device address of block id, allocating its segment on
// first use; call inside do.
func (p *blockPool) block(id int32) (devicePtr, error) {
	s := int(id) / p.segBlocks
	if p.segs[s] == nil {
		buf, err := p.b.dev.alloc(int64(p.segBlocks)*p.b.kvBlockBytes(), PurposeKVCache)
		if err != nil {
			return 0, err
		}
		p.segs[s] = buf
	}
	p.used[id] = true
	return p.segs[s].Ptr + devicePtr(int64(int(id)%p.segBlocks)*p.b.kvBlockLayerBytes()), nil
}

// CopyBlock copies the first n positions of block src into block dst.
func (p *blockPool) CopyBlock(dst, src int32, n int) error {
	if p.closed {
		return fmt.Errorf("%w: CopyBlock on a closed KV block pool", ErrBadInput)
	}
	for _, id := range []int32{dst, src} {
		if id < 0 || int(id) >= p.blocks {
			return fmt.Errorf("%w: KV block %d: the pool holds blocks 0 … %d", ErrBadInput, id, p.blocks-1)
		}
		if !p.used[id] {
			return fmt.Errorf("%w: KV block %d was never used by a cache: nothing to copy from or into", ErrBadInput, id)
		}
	}
	if n < 0 || n > kvBlockLen {
		return fmt.Errorf("%w: copy %d positions of a KV block of %d", ErrBadInput, n, kvBlockLen)
	}
	if n == 0 || dst == src {
		return nil
	}
	return p.b.dev.do(func() error {
		d, _ := p.block(dst)
		s, _ := p.block(src)
		stride := int64(p.segBlocks) * p.b.kvBlockLayerBytes()
		return p.b.copyRows(d, stride, s, stride, n)
	})
}

// Bytes is the memory the pool's allocated segments hold.
func (p *blockPool) Bytes() int64 {
	var n int64
	for _, s := range p.segs {
		if s != nil {
			n += s.Bytes
		}
	}
	return n
}

// Close frees the pool's segments.
func (p *blockPool) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	if p.b.dev == nil {
		return nil
	}
	err := p.b.dev.do(func() error {
		var err error
		for i, s := range p.segs {
			err = errors.Join(err, p.b.dev.free(s))
			p.segs[i] = nil
		}
		return err
	})
	if errors.Is(err, ErrDeviceClosed) {
		return nil // the memory went with the device's context
	}
	return err
}

var (
	_ backend.Pager        = (*Backend)(nil)
	_ backend.PagedCache   = (*kvCache)(nil)
	_ backend.PrefixCopier = (*kvCache)(nil)
)
