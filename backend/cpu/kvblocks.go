package cpu

// Attention's loops over runs of whole KV blocks: blocks[i][off:] is the
// first of a block's KVBlockLen rows (stride apart) that a call reads.

// dotBlocksGo sets out[i·KVBlockLen + j] = dot8(q, blocks[i][off+j·stride:])
// for the KVBlockLen rows j of each block: dotRows on each block.
func dotBlocksGo(q []float32, blocks [][]float32, off, stride int, out []float32) {
	for i, blk := range blocks {
		dotRows(q, blk[off:], stride, out[i*KVBlockLen:(i+1)*KVBlockLen])
	}
}

// axpyBlocksGo does axpy(out, blocks[i][off+j·stride:], w[i·KVBlockLen + j])
// for the KVBlockLen rows j of each block i, in order: axpyRows on each
// block.
func axpyBlocksGo(out []float32, blocks [][]float32, off, stride int, w []float32) {
	for i, blk := range blocks {
		axpyRows(out, blk[off:], stride, w[i*KVBlockLen:(i+1)*KVBlockLen])
	}
}
