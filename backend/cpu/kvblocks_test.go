package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// dotBlocks and axpyBlocks (assembly where the CPU has it) give bit for bit
// what dot8Go and axpyGo give row by row: head dims with and without a
// tail, one to five blocks, rows at an offset in blocks that are separate
// allocations.
func TestKVBlocksMatchGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, portable := range []bool{false, true} {
		for _, hd := range []int{1, 7, 8, 12, 24, 32, 64, 96, 128} {
			for nb := 1; nb <= 5; nb++ {
				t.Run(fmt.Sprintf("portable=%v/hd%d/blocks%d", portable, hd, nb), func(t *testing.T) {
					stride, off := 2*hd+3, hd+1 // a KV width of two heads and more; the second head
					blocks := make([][]float32, nb)
					for i := range blocks {
						blocks[i] = make([]float32, off+(KVBlockLen-1)*stride+hd)
						for j := range blocks[i] {
							blocks[i][j] = float32(rng.NormFloat64())
						}
					}
					q := make([]float32, hd)
					for i := range q {
						q[i] = float32(rng.NormFloat64() * 2)
					}
					w := make([]float32, nb*KVBlockLen)
					for i := range w {
						w[i] = rng.Float32()
					}
					out, want := make([]float32, hd), make([]float32, hd)
					for i := range out {
						out[i] = float32(rng.NormFloat64())
						want[i] = out[i]
					}
					scores := make([]float32, nb*KVBlockLen)
					withPortable(portable, func() {
						dotBlocks(q, blocks, off, stride, scores)
						axpyBlocks(out, blocks, off, stride, w)
					})
					for i := range nb {
						for j := range KVBlockLen {
							row := blocks[i][off+j*stride:]
							if s, e := scores[i*KVBlockLen+j], dot8Go(q, row); math.Float32bits(s) != math.Float32bits(e) {
								t.Fatalf("block %d row %d: score %g, dot8Go %g", i, j, s, e)
							}
							axpyGo(want, row, w[i*KVBlockLen+j])
						}
					}
					for i := range want {
						if math.Float32bits(out[i]) != math.Float32bits(want[i]) {
							t.Fatalf("element %d: %g, axpyGo row by row %g", i, out[i], want[i])
						}
					}
				})
			}
		}
	}
}
