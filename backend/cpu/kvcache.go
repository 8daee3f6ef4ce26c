package cpu

import (
	"fmt"
	"math"

	"worker-orcd/backend"
	"worker-orcd/model"
)

// KVCache holds one sequence's keys and values for every layer, in float32
// (as the reference implementation's F32 cache): K[layer][pos*kvDim + i].
type KVCache struct {
	K, V   [][]float32
	kvDim  int
	maxLen int
	n      int
	budget *kvBudget // the backend's, nil for none
}

// NewKVCache allocates a cache for up to maxLen positions, outside any
// budget (Backend.NewKVCache counts its caches against the backend's).
func NewKVCache(c *model.Config, maxLen int) *KVCache {
	kv := &KVCache{K: make([][]float32, c.NLayer), V: make([][]float32, c.NLayer), kvDim: c.KVDim(), maxLen: maxLen}
	kv.alloc()
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
	kv := &KVCache{K: make([][]float32, c.NLayer), V: make([][]float32, c.NLayer), kvDim: c.KVDim(), maxLen: maxLen, budget: budget}
	kv.alloc()
	return kv, nil
}

// alloc makes the per-layer slices of maxLen positions.
func (kv *KVCache) alloc() {
	for i := range kv.K {
		kv.K[i] = make([]float32, kv.maxLen*kv.kvDim)
		kv.V[i] = make([]float32, kv.maxLen*kv.kvDim)
	}
}

// Len is the number of positions stored.
func (kv *KVCache) Len() int { return kv.n }

// Cap is the number of positions the cache can hold.
func (kv *KVCache) Cap() int { return kv.maxLen }

// Bytes is the memory the cache holds.
func (kv *KVCache) Bytes() int64 { return kvBytes(len(kv.K), kv.kvDim, kv.maxLen) }

// Reserve makes room for n positions in all, keeping what is stored. Beyond
// the backend's budget it fails with an *AllocationError and the cache is
// unchanged.
func (kv *KVCache) Reserve(n int) error {
	if n <= kv.maxLen {
		return nil
	}
	if err := kv.budget.take(kvBytes(len(kv.K), kv.kvDim, n), kv.Bytes(), n); err != nil {
		return err
	}
	for i := range kv.K {
		k := make([]float32, n*kv.kvDim)
		v := make([]float32, n*kv.kvDim)
		copy(k, kv.K[i][:kv.n*kv.kvDim])
		copy(v, kv.V[i][:kv.n*kv.kvDim])
		kv.K[i], kv.V[i] = k, v
	}
	kv.maxLen = n
	return nil
}

// Free drops the cache's memory (the garbage collector reclaims it).
func (kv *KVCache) Free() {
	kv.budget.give(kv.Bytes())
	kv.K, kv.V = nil, nil
	kv.maxLen, kv.n = 0, 0
}

// CopyPrefix makes the cache hold src's first n positions (src: a cache of
// the same model's CPU backend).
func (kv *KVCache) CopyPrefix(src backend.KVCache, n int) error {
	o, ok := src.(*KVCache)
	if !ok || len(o.K) != len(kv.K) || o.kvDim != kv.kvDim {
		return fmt.Errorf("cpu: copy KV prefix: the source is not a cache of this model on the CPU (%T)", src)
	}
	if n < 0 || n > o.n || n > kv.maxLen {
		return fmt.Errorf("cpu: copy %d KV positions: the source holds %d, this cache has room for %d", n, o.n, kv.maxLen)
	}
	for i := range kv.K {
		copy(kv.K[i][:n*kv.kvDim], o.K[i][:n*kv.kvDim])
		copy(kv.V[i][:n*kv.kvDim], o.V[i][:n*kv.kvDim])
	}
	kv.n = n
	return nil
}

// Truncate forgets the positions from n on (to rewind a sequence).
func (kv *KVCache) Truncate(n int) error {
	if n < 0 || n > kv.n {
		return fmt.Errorf("cpu: truncate KV cache to %d positions: it holds %d", n, kv.n)
	}
	kv.n = n
	return nil
}
