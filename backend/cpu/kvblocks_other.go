//go:build !amd64

package cpu

func dotBlocks(q []float32, blocks [][]float32, off, stride int, out []float32) {
	dotBlocksGo(q, blocks, off, stride, out)
}

func axpyBlocks(out []float32, blocks [][]float32, off, stride int, w []float32) {
	axpyBlocksGo(out, blocks, off, stride, w)
}
