package cpu

import (
	"fmt"
	"math"

	"worker-orcd/backend"
	"worker-orcd/model"
)

// KVBlockLen is the positions one KV block holds: position p of a cache is
// row p % KVBlockLen of its block p / KVBlockLen. Every CPU cache reads
// through blocks: a standalone cache (Backend.NewKVCache) owns its blocks,
// a paged one (BlockPool.NewCache) reads a pool's blocks by id.
const KVBlockLen = 16

// kvBlockShift is log2(KVBlockLen).
const kvBlockShift = 4

// kvStore is what attention and the forward's K/V store read and write:
// a cache's blocks, in position order. A block's memory is
// [layer][K, V][rows][kvDim] float32, so that a layer's key rows (and its
// value rows) of a block are contiguous, kvDim apart. rows is KVBlockLen,
// but for the last block of a standalone cache whose capacity is not a
// multiple of it (that block holds what the capacity leaves).
type kvStore struct {
	layers, kvDim int
	blocks        [][]float32 // block i: positions [i·KVBlockLen, (i+1)·KVBlockLen)
	maxLen        int         // positions the blocks hold
	n             int         // positions stored
}

// layerRows returns block i's key and value rows of layer (rows·kvDim
// each, row r at r·kvDim).
func (s *kvStore) layerRows(i, layer int) (k, v []float32) {
	blk := s.blocks[i]
	w := len(blk) / (2 * s.layers) // rows·kvDim
	o := 2 * layer * w
	return blk[o : o+w : o+w], blk[o+w : o+2*w : o+2*w]
}

// Len is the number of positions stored.
func (s *kvStore) Len() int { return s.n }

// Cap is the number of positions the cache can hold.
func (s *kvStore) Cap() int { return s.maxLen }

// Truncate forgets the positions from n on (to rewind a sequence).
func (s *kvStore) Truncate(n int) error {
	if n < 0 || n > s.n {
		return fmt.Errorf("cpu: truncate KV cache to %d positions: it holds %d", n, s.n)
	}
	s.n = n
	return nil
}

// copyRows copies positions [0, n) of src's blocks into s's (same layers,
// width and block length; s has room for n).
func (s *kvStore) copyRows(src *kvStore, n int) {
	for i := 0; i*KVBlockLen < n; i++ {
		w := min(KVBlockLen, n-i*KVBlockLen) * s.kvDim
		for l := range s.layers {
			dk, dv := s.layerRows(i, l)
			sk, sv := src.layerRows(i, l)
			copy(dk[:w], sk[:w])
			copy(dv[:w], sv[:w])
		}
	}
}

// KVCache is one sequence's standalone cache: keys and values for every
// layer in float32 (as the reference implementation's F32 cache), in
// blocks of KVBlockLen positions that it owns. Reserve appends blocks.
type KVCache struct {
	kvStore
	budget *kvBudget // the backend's, nil for none
}

// NewKVCache allocates a cache for up to maxLen positions, outside any
// budget (Backend.NewKVCache counts its caches against the backend's).
func NewKVCache(c *model.Config, maxLen int) *KVCache {
	kv := &KVCache{kvStore: kvStore{layers: c.NLayer, kvDim: c.KVDim()}}
	kv.grow(maxLen)
	return kv
}

// kvBytes is the size of a cache of n positions of layers layers of width
// kvDim (keys and values, float32), saturated at MaxInt64.
func kvBytes(layers, kvDim, n int) int64 {
	perPos := int64(layers) * 2 * int64(kvDim) * 4
	if perPos > 0 && int64(n) > math.MaxInt64/perPos {
		return math.MaxInt64
	}
	return perPos * int64(n)
}

// newBudgetedKVCache allocates a cache of maxLen positions if its bytes fit
// in budget.
func newBudgetedKVCache(c *model.Config, maxLen int, budget *kvBudget) (*KVCache, error) {
	if err := budget.take(kvBytes(c.NLayer, c.KVDim(), maxLen), 0, maxLen); err != nil {
		return nil, err
	}
	kv := &KVCache{kvStore: kvStore{layers: c.NLayer, kvDim: c.KVDim()}, budget: budget}
	kv.grow(maxLen)
	return kv, nil
}

// grow makes the blocks hold n positions (n > maxLen): a last block that
// is not full is replaced by a larger one (its rows copied, fewer than
// KVBlockLen positions), then new blocks are appended. The blocks before
// it stay where they are.
func (kv *KVCache) grow(n int) {
	rowFloats := 2 * kv.layers * kv.kvDim // one position of every layer
	if kv.maxLen%KVBlockLen != 0 {
		i := len(kv.blocks) - 1
		old := kvStore{layers: kv.layers, kvDim: kv.kvDim, blocks: [][]float32{kv.blocks[i]}}
		kv.blocks[i] = make([]float32, min(KVBlockLen, n-i*KVBlockLen)*rowFloats)
		for l := range kv.layers {
			dk, dv := kv.layerRows(i, l)
			sk, sv := old.layerRows(0, l)
			copy(dk, sk)
			copy(dv, sv)
		}
	}
	for p := len(kv.blocks) * KVBlockLen; p < n; p += KVBlockLen {
		kv.blocks = append(kv.blocks, make([]float32, min(KVBlockLen, n-p)*rowFloats))
	}
	kv.maxLen = n
}

// Bytes is the memory the cache holds.
func (kv *KVCache) Bytes() int64 { return kvBytes(kv.layers, kv.kvDim, kv.maxLen) }

// Reserve makes room for n positions in all, keeping what is stored (the
// blocks it holds stay; new ones are appended). Beyond the backend's
// budget it fails with an *AllocationError and the cache is unchanged.
func (kv *KVCache) Reserve(n int) error {
	if n <= kv.maxLen {
		return nil
	}
	if err := kv.budget.take(kvBytes(kv.layers, kv.kvDim, n), kv.Bytes(), n); err != nil {
		return err
	}
	kv.grow(n)
	return nil
}

// Free drops the cache's memory (the garbage collector reclaims it) and
// gives its bytes back to the budget.
func (kv *KVCache) Free() {
	kv.budget.give(kv.Bytes())
	kv.blocks = nil
	kv.maxLen, kv.n = 0, 0
}

// CopyPrefix makes the cache hold src's first n positions (src: a cache of
// the same model's CPU backend, standalone or paged).
func (kv *KVCache) CopyPrefix(src backend.KVCache, n int) error {
	var o *kvStore
	switch s := src.(type) {
	case *KVCache:
		o = &s.kvStore
	case *PagedKVCache:
		if err := s.usable(); err != nil {
			return fmt.Errorf("cpu: copy KV prefix: %w", err)
		}
		o = &s.kvStore
	}
	if o == nil || o.layers != kv.layers || o.kvDim != kv.kvDim {
		return fmt.Errorf("cpu: copy KV prefix: the source is not a cache of this model on the CPU (%T)", src)
	}
	if n < 0 || n > o.n || n > kv.maxLen {
		return fmt.Errorf("cpu: copy %d KV positions: the source holds %d, this cache has room for %d", n, o.n, kv.maxLen)
	}
	kv.copyRows(o, n)
	kv.n = n
	return nil
}

var (
	_ backend.KVCache      = (*KVCache)(nil)
	_ backend.PrefixCopier = (*KVCache)(nil)
)
