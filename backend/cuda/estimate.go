package cuda

import (
	"fmt"

	"worker-orcd/backend"
	"worker-orcd/model"
	"worker-orcd/quant"
)

// EstimateMemory is the device memory the CUDA backend takes for model m
// serving parallel sequences of ctx positions each, prompts read in chunks
// of batch tokens, with a KV cache of kvType ("" or "f16": F16; "f32"),
// by purpose, computed from the same layout the backend allocates:
//
//   - weights: the file's tensor data section, uploaded whole, and the
//     norms, biases and RoPE frequencies;
//   - KV cache: n_layer × 2 (K and V) × n_kv_head·head_dim elements a
//     position, per sequence;
//   - activations: the step's scratch buffer for batch rows and parallel
//     logits rows (scratchLayout);
//   - workspace: what cuBLAS multiplies prompt rows with — F16 copies of
//     the largest quantized matrix (often the LM head) and of an FFN up
//     matrix beside it (F16 weights are used in place), a prompt chunk's F16
//     activations and two groups of float32 result tiles (gemmGroup).
//
// No GPU is needed: the doctor uses it before loading anything.
func EstimateMemory(m *model.Model, ctx, parallel, batch int, kvType string) (backend.Memory, error) {
	c, w := &m.Config, m.Weights
	elem := int64(2)
	switch kvType {
	case "", "f16":
	case "f32":
		elem = 4
	default:
		return backend.Memory{}, fmt.Errorf("%w: KV cache type %q: want f16 or f32", ErrBadInput, kvType)
	}
	var mem backend.Memory
	if f := m.File; f != nil {
		mem.Weights = int64(len(f.Bytes())) - f.DataOffset
	} else {
		mem.Weights = w.Bytes()
	}
	small := 4 * int64(len(w.OutputNorm))
	for i := range w.Layers {
		l := &w.Layers[i]
		small += 4 * int64(len(l.AttnNorm)+len(l.FFNNorm)+len(l.QBias)+len(l.KBias)+len(l.VBias))
	}
	mem.Weights += small + 8*int64(c.RopeDim/2)
	// The resident F16 copies (f16weights.go) when asked for: made by
	// default only where they take at most a quarter of the free memory,
	// which the estimate does not know, so not counted then.
	if mode, _ := f16WeightsWanted(); mode == f16On {
		for _, mm := range append([]*model.Matrix{&w.Output}, layerMatrices(w)...) {
			if mm.Type != quant.F16 {
				mem.Weights += int64(mm.Rows) * int64(mm.Cols) * 2
			}
		}
	}
	mem.KVCache = int64(c.NLayer) * 2 * int64(c.KVDim()) * elem * int64(ctx) * int64(parallel)
	_, mem.Activations = scratchLayout(c, max(batch, parallel), max(parallel, 1))
	// gemmSegment's buffers for a prompt chunk of batch rows: F16 copies of
	// a matrix and of an up matrix (none for F16 weights, used in place),
	// the chunk's F16 activations in whole tiles, and a group of float32
	// result tiles for a matrix and its up.
	var largest, up, cols, res, upRes int64
	copied := func(mm *model.Matrix) int64 {
		if mm.Type == quant.F16 {
			return 0
		}
		return int64(mm.Rows) * int64(mm.Cols) * 2
	}
	results := func(mm *model.Matrix, head bool) int64 {
		tile := gemmTileFor(head)
		return int64(gemmGroup(batch, mm.Rows, tile)*tile) * int64(mm.Rows) * 4
	}
	largest, res = copied(&w.Output), results(&w.Output, true)
	cols = int64(w.Output.Cols)
	for i := range w.Layers {
		l := &w.Layers[i]
		up = max(up, copied(&l.Up))
		upRes = max(upRes, results(&l.Up, false))
		for _, mm := range []*model.Matrix{&l.Q, &l.K, &l.V, &l.O, &l.Gate, &l.Up, &l.Down} {
			largest = max(largest, copied(mm))
			cols = max(cols, int64(mm.Cols))
			res = max(res, results(mm, false))
		}
	}
	mem.Workspace = largest + up + int64(blocks(max(batch, 1), gemmTile)*gemmTile)*cols*2 + res + upRes
	return mem, nil
}

// layerMatrices are every layer's matrices.
func layerMatrices(w *model.Weights) []*model.Matrix {
	var ms []*model.Matrix
	for i := range w.Layers {
		l := &w.Layers[i]
		ms = append(ms, &l.Q, &l.K, &l.V, &l.O, &l.Gate, &l.Up, &l.Down)
	}
	return ms
}
