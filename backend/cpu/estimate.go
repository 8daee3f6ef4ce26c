package cpu

import (
	"math"
	"runtime"

	"worker-orcd/backend"
	"worker-orcd/model"
	"worker-orcd/quant"
)

// EstimateMemory is what this backend takes for a model with config c and
// weights w (nil: the weights are not counted, nor the quantized
// activations they need) serving parallel sequences of up to ctx positions
// in steps of up to batch tokens, before anything is loaded (the doctor's
// estimate). The same arithmetic as the backend's allocations:
//   - Weights: the matrices (mapped from the file);
//   - KVCache: keys and values in float32, ctx positions a sequence;
//   - Activations: the step's scratch (x, h, q, k, v, attention out, gate,
//     up) for batch rows;
//   - Workspace: the activations quantized for each vec-dot type (sized by
//     the widest matrix of that type), one row of logits a sequence and the
//     attention scores (ctx floats a worker goroutine).
func EstimateMemory(c *model.Config, w *model.Weights, ctx, parallel, batch int) backend.Memory {
	parallel = max(parallel, 1)
	T := int64(max(batch, parallel))
	var mem backend.Memory
	mem.KVCache = kvBytes(c.NLayer, c.KVDim(), ctx)
	if mem.KVCache > math.MaxInt64/int64(parallel) {
		mem.KVCache = math.MaxInt64
	} else {
		mem.KVCache *= int64(parallel)
	}
	mem.Activations = 4 * T * int64(2*c.NEmbd+2*c.QDim()+2*c.KVDim()+2*c.NFF)
	mem.Workspace = 4*int64(c.VocabSize)*int64(parallel) + 4*int64(ctx)*int64(runtime.GOMAXPROCS(0))
	if w == nil {
		return mem
	}
	mem.Weights = w.Bytes()
	widest := map[quant.Type]int64{}
	mats := []*model.Matrix{&w.Output}
	for i := range w.Layers {
		l := &w.Layers[i]
		mats = append(mats, &l.Q, &l.K, &l.V, &l.O, &l.Gate, &l.Up, &l.Down)
	}
	for _, m := range mats {
		if m.Rows == 0 {
			continue
		}
		if ab := int64(quant.ActivationBytes(m.Type, m.Cols)); ab > 0 {
			vt := quant.VecDotType(m.Type)
			widest[vt] = max(widest[vt], ab)
		}
	}
	for _, ab := range widest {
		mem.Workspace += T * ab
	}
	return mem
}
