package cuda

import "fmt"

// Launchers of kernels/sampling.cu.

// topkThreads is TOPK_THREADS of sampling.cu: the block of topk_f32 (its
// shared scan array has one entry a thread).
const topkThreads = 1024

// topK launches topk_f32 over rows rows of V logits (row r at x + r·xStride
// floats): the K (1 ≤ K ≤ V)
// largest entries to ids and vals and the row's log-sum-exp to lse, each
// row's results outStride bytes after the previous row's.
//
//	grid rows, block 1024
func (d *Device) topK(x devicePtr, rows, V, K int, ids, vals, lse devicePtr, xStride, outStride int64) error {
	if K < 1 || K > V {
		return fmt.Errorf("%w: topk_f32: K = %d of %d logits (want 1 … V)", ErrLaunch, K, V)
	}
	return d.launch("topk_f32", dims(rows, 1, 1), dims(topkThreads, 1, 1), 0,
		newArgs().dev("x", x).i32("V", V).i32("K", K).dev("ids", ids).dev("vals", vals).dev("lse", lse).
			i64("x_stride", xStride).i64("out_stride", outStride))
}
