package cuda

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// TestGemmQ: prompt rows of every quantized type through gemmq_
// (WORKER_CUDA_GEMMQ=1's path: weight tiles dequantized in shared memory,
// no F16 copy, no cuBLAS), plain with a bias added into existing values
// and glu, over widths with an odd number of units and a partial block of
// rows, T = 2 tiles and 5 rows: within 3e-3 of the float64 reference (F16
// operands, as the cuBLAS path), and every row bit for bit the same
// whatever the calls it is split into (chunked prompts) or the tiles a
// group takes.
func TestGemmQ(t *testing.T) {
	h := newOpHarness(t)
	if h.d.Arch() < 80 {
		t.Skipf("sm_%d: gemmq_ needs mma.m16n8k16 (sm_80+)", h.d.Arch())
	}
	h.b.gemmQ = true
	r := rand.New(rand.NewPCG(19, uint64(os.Getpid())))
	defer func(v int) { gemmGroupBytes = v }(gemmGroupBytes)
	T := 2*gemmTile + 5
	for _, typ := range sortedTypes() {
		sfx := kernelSuffix[typ]
		if !mmqSuffix[sfx] {
			continue
		}
		for _, shape := range []struct{ rows, cols int }{{70, 352}, {96, 512}, {40, 2816}} {
			if shape.cols%typ.BlockSize() != 0 {
				continue
			}
			rows, cols := shape.rows, shape.cols
			w, deq, rb := randQuantMatrix(t, r, typ, rows, cols)
			x, bias, init := randRow(r, T*cols), randRow(r, rows), randRow(r, T*rows)
			y := matVec64(deq, x, rows, cols, T)
			wantAcc, wantGLU := make([]float64, T*rows), make([]float64, T*rows)
			for i, v := range y {
				wantAcc[i] = float64(init[i]) + v + float64(bias[i%rows])
				wantGLU[i] = v / (1 + math.Exp(-v)) * v
			}
			wb, xb, bb := h.upload(w), h.uploadF32(x), h.uploadF32(bias)
			m := dmat{ptr: wb.Ptr, rows: rows, cols: cols, rowBytes: int64(rb), suffix: sfx}
			// run computes rows [c0, c1) of each split in one call each.
			run := func(splits ...int) (acc, glu []float32) {
				return h.promptSplits(&m, xb.Ptr, bb.Ptr, init, T, splits...)
			}
			var refAcc, refGLU []float32
			for _, c := range []struct {
				tiles  int // a group's tiles
				splits []int
			}{{1, []int{0, T}}, {2, []int{0, T}}, {2, []int{0, 1, 7, gemmTile + 9, T - 1, T}}} {
				gemmGroupBytes = c.tiles * gemmTile * rows * 4
				acc, glu := run(c.splits...)
				if e := relErr(acc, wantAcc); e > 3e-3 {
					t.Errorf("gemmq_%s %dx%d bias+accumulate, calls %v: relative error %.3g > 3e-3", sfx, rows, cols, c.splits, e)
				}
				if e := relErr(glu, wantGLU); e > 3e-3 {
					t.Errorf("gemmq_%s %dx%d glu, calls %v: relative error %.3g > 3e-3", sfx, rows, cols, c.splits, e)
				}
				if refAcc == nil {
					refAcc, refGLU = acc, glu
					continue
				}
				for i := range acc {
					if math.Float32bits(acc[i]) != math.Float32bits(refAcc[i]) || math.Float32bits(glu[i]) != math.Float32bits(refGLU[i]) {
						t.Fatalf("gemmq_%s %dx%d, groups of %d tiles, calls %v: row %d differs from one call", sfx, rows, cols, c.tiles, c.splits, i/rows)
					}
				}
			}
		}
		h.d.do(func() error {
			regs, local, shared, err := h.d.kernelResources("gemmq_" + sfx)
			if err == nil {
				t.Logf("gemmq_%s: %d registers, %d local bytes a thread, %d shared bytes a block", sfx, regs, local, shared)
			}
			return nil
		})
	}
}
