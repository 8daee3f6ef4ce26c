package cuda

import (
	"fmt"

	"worker-orcd/backend"
)

// KVMemoryMargin is the device memory the default KV budget leaves free:
// KVMemoryMarginShare of the card, at least KVMemoryMarginMin bytes (for
// the driver, CUDA graphs, cuBLAS and a cache's copy while it grows).
const (
	KVMemoryMarginShare = 0.05
	KVMemoryMarginMin   = int64(512 << 20)
)

// KVBytesPerPosition is the bytes one position of a KV cache takes: every
// layer's key and value rows in the cache's type (backend.KVSizer).
func (b *Backend) KVBytesPerPosition() int64 {
	return int64(b.c.NLayer) * 2 * int64(b.c.KVDim()) * b.kvElem()
}

// DefaultKVMemory is what the KV caches may take when the operator sets no
// budget (backend.KVMemoryAdvisor): the device's free memory now, plus the
// KV caches already held, less the activations and workspace a step of
// batchTokens rows and parallel sequences will still allocate
// (EstimateMemory less what is held), less the margin.
func (b *Backend) DefaultKVMemory(parallel, batchTokens int) (int64, string, error) {
	free, total, err := b.dev.MemInfo()
	if err != nil {
		return 0, "", err
	}
	est, err := EstimateMemory(b.m, 1, parallel, batchTokens, b.kvType)
	if err != nil {
		return 0, "", err
	}
	used := b.dev.Used()
	pending := max(est.Activations-used[PurposeActivations], 0) + max(est.Workspace-used[PurposeWorkspace], 0)
	margin := max(int64(float64(total)*KVMemoryMarginShare), KVMemoryMarginMin)
	n := max(free+used[PurposeKVCache]-pending-margin, 0)
	return n, fmt.Sprintf("GPU %d: %d bytes free of %d, less %d for activations and workspace and a %d-byte margin (%.0f%% of the card, at least %d MiB)",
		b.dev.Index, free, total, pending, margin, KVMemoryMarginShare*100, KVMemoryMarginMin>>20), nil
}

var (
	_ backend.KVSizer         = (*Backend)(nil)
	_ backend.KVMemoryAdvisor = (*Backend)(nil)
)
