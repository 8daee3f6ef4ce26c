package cpu

//go:noescape
func dotBlocksAVX(q *float32, blocks *[]float32, nblocks, off, stride, n8 int, out *float32)

//go:noescape
func axpyBlocksAVX(out *float32, blocks *[]float32, nblocks, off, stride int, w *float32, n8 int)

// dotBlocks sets out[i·KVBlockLen + j] = dot8(q, blocks[i][off+j·stride:])
// for the KVBlockLen rows j of each block: the scores of whole blocks'
// rows in one call (dotBlocksAVX where len(q) is a multiple of 8), each
// bit-identical to dot8's.
func dotBlocks(q []float32, blocks [][]float32, off, stride int, out []float32) {
	nb := len(blocks)
	if nb == 0 || len(q) == 0 {
		return
	}
	out = out[:nb*KVBlockLen]
	end := off + (KVBlockLen-1)*stride + len(q)
	for _, blk := range blocks {
		_ = blk[end-1] // every row in range
	}
	if !useAVX || len(q)%8 != 0 {
		dotBlocksGo(q, blocks, off, stride, out)
		return
	}
	dotBlocksAVX(&q[0], &blocks[0], nb, 4*off, 4*stride, len(q)/8, &out[0])
}

// axpyBlocks does axpy(out, blocks[i][off+j·stride:], w[i·KVBlockLen + j])
// for the KVBlockLen rows j of each block i, in order, in one call
// (axpyBlocksAVX where len(out) is a multiple of 8): each element sees the
// operations of that sequence of axpy calls.
func axpyBlocks(out []float32, blocks [][]float32, off, stride int, w []float32) {
	nb := len(blocks)
	if nb == 0 || len(out) == 0 {
		return
	}
	w = w[:nb*KVBlockLen]
	end := off + (KVBlockLen-1)*stride + len(out)
	for _, blk := range blocks {
		_ = blk[end-1] // every row in range
	}
	if !useAVX || len(out)%8 != 0 {
		axpyBlocksGo(out, blocks, off, stride, w)
		return
	}
	axpyBlocksAVX(&out[0], &blocks[0], nb, 4*off, 4*stride, &w[0], len(out)/8)
}
