package cuda

import (
	"fmt"

	"worker-orcd/sample"
)

// Launchers of kernels/sampling.cu.

// The top-k kernels' blocks: a chunk's block (stage 1) and a row's merge
// block (stage 2).
const (
	topkChunkThreads = 256
	topkMergeThreads = 1024
	// topkChunk is the entries of a stage-1 chunk, and topkMaxChunks the
	// most chunks a row is cut into (longer rows get longer chunks).
	topkChunk     = 4096
	topkMaxChunks = 64
)

// topkChunks returns the chunk length and the chunk count of a row of V
// logits: a function of V alone, so a row's selection and log-sum-exp do
// not depend on how many rows a launch takes.
func topkChunks(V int) (chunk, S int) {
	chunk = topkChunk
	if V > topkChunk*topkMaxChunks {
		chunk = (V + topkMaxChunks - 1) / topkMaxChunks
		chunk = (chunk + 255) &^ 255
	}
	return chunk, (V + chunk - 1) / chunk
}

// topkScratchBytes is the stage-1 workspace of one row of V logits for any
// K ≤ sample.MaxTop: MaxTop 8-byte keys and two floats a chunk.
func topkScratchBytes(V int) int64 {
	_, S := topkChunks(V)
	return int64(S) * (8*sample.MaxTop + 8)
}

// allowWords is the 64-bit words of a mask over V ids.
func allowWords(V int) int { return (V + 63) / 64 }

// topK selects, for rows rows of V logits (row r at x + r·xStride floats),
// the K (1 ≤ K ≤ min(V, sample.MaxTop)) largest entries into ids and vals
// (in no order) and the row's log-sum-exp into lse, each row's results
// outStride bytes after the previous row's. scratch holds at least
// rows·topkScratchBytes(V) bytes. With allow set, row r's entries outside
// the bitset at allow + r·allowStride words count as −Inf (a grammar's
// mask; allowStride ≥ allowWords(V)).
//
//	topk_chunk_f32  grid (S, rows), block 256
//	topk_merge_f32  grid rows, block 1024
func (d *Device) topK(x devicePtr, rows, V, K int, ids, vals, lse devicePtr, xStride, outStride int64, scratch, allow devicePtr, allowStride int64) error {
	if K < 1 || K > V || K > sample.MaxTop {
		return fmt.Errorf("%w: top-k: K = %d of %d logits (want 1 … min(V, %d))", ErrLaunch, K, V, sample.MaxTop)
	}
	if rows < 1 || scratch == 0 {
		return fmt.Errorf("%w: top-k: %d rows, scratch %#x", ErrLaunch, rows, scratch)
	}
	if allow != 0 && allowStride < int64(allowWords(V)) {
		return fmt.Errorf("%w: top-k: masks %d words apart (want at least %d for %d ids)", ErrLaunch, allowStride, allowWords(V), V)
	}
	if rows > 1 && (xStride < int64(V) || outStride < 4 || outStride%4 != 0) {
		return fmt.Errorf("%w: top-k: %d rows %d floats apart (want at least V = %d), results %d bytes apart (want a positive multiple of 4)",
			ErrLaunch, rows, xStride, V, outStride)
	}
	chunk, S := topkChunks(V)
	keys := scratch
	stats := scratch + devicePtr(8*int64(rows)*int64(S)*int64(K))
	if err := d.launch("topk_chunk_f32", dims(S, rows, 1), dims(topkChunkThreads, 1, 1), 0,
		newArgs().dev("x", x).i32("V", V).i32("K", K).i32("chunk", chunk).i64("x_stride", xStride).
			ptr("allow", allow).i64("allow_stride", allowStride).dev("keys", keys).dev("stats", stats)); err != nil {
		return err
	}
	return d.launch("topk_merge_f32", dims(rows, 1, 1), dims(topkMergeThreads, 1, 1), 0,
		newArgs().dev("keys", keys).dev("stats", stats).i32("S", S).i32("K", K).
			dev("ids", ids).dev("vals", vals).dev("lse", lse).i64("out_stride", outStride))
}
