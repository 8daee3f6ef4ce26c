package cpu

import (
	"fmt"

	"worker-orcd/model"
)

// KVCache holds one sequence's keys and values for every layer, in float32
// (as the reference implementation's F32 cache): K[layer][pos*kvDim + i].
type KVCache struct {
	K, V   [][]float32
	kvDim  int
	maxLen int
	n      int
}

// NewKVCache allocates a cache for up to maxLen positions.
func NewKVCache(c *model.Config, maxLen int) *KVCache {
	kv := &KVCache{K: make([][]float32, c.NLayer), V: make([][]float32, c.NLayer), kvDim: c.KVDim(), maxLen: maxLen}
	for i := range kv.K {
		kv.K[i] = make([]float32, maxLen*kv.kvDim)
		kv.V[i] = make([]float32, maxLen*kv.kvDim)
	}
	return kv
}

// Len is the number of positions stored.
func (kv *KVCache) Len() int { return kv.n }

// Cap is the number of positions the cache can hold.
func (kv *KVCache) Cap() int { return kv.maxLen }

// Bytes is the memory the cache holds.
func (kv *KVCache) Bytes() int64 { return int64(len(kv.K)) * 2 * int64(kv.maxLen*kv.kvDim) * 4 }

// Reserve makes room for n positions in all, keeping what is stored.
func (kv *KVCache) Reserve(n int) error {
	if n <= kv.maxLen {
		return nil
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
	kv.K, kv.V = nil, nil
	kv.maxLen, kv.n = 0, 0
}

// Truncate forgets the positions from n on (to rewind a sequence).
func (kv *KVCache) Truncate(n int) error {
	if n < 0 || n > kv.n {
		return fmt.Errorf("cpu: truncate KV cache to %d positions: it holds %d", n, kv.n)
	}
	kv.n = n
	return nil
}
