package quant

import (
	"fmt"
	"testing"
)

// BenchmarkMatVec compares, for the weight types of a Qwen2.5-0.5B Q4_K_M
// file and row lengths 896 (its d_model) and 4096, the portable Go dot
// products ("go") with the ones selected for this CPU ("fast", via
// VecDotFunc) and with DotRows ("rows"), over 256 consecutive rows. GMAC/s
// counts multiply-adds.
func BenchmarkMatVec(b *testing.B) {
	const rows = 256
	for _, typ := range []Type{Q8_0, Q5_0, Q4_0, Q4_K, Q6_K, F16} {
		for _, n := range []int{896, 4096} {
			if n%typ.BlockSize() != 0 {
				continue
			}
			rb, _ := RowBytes(typ, n)
			var w []byte
			for r := 0; r < rows; r++ {
				w = append(w, weightRow(b, typ, uint64(r), n)...)
			}
			xq := make([]byte, ActivationBytes(typ, n))
			if err := QuantizeActivations(typ, gaussRow(3, n, 1), xq); err != nil {
				b.Fatal(err)
			}
			out := make([]float32, rows)
			report := func(b *testing.B) {
				b.SetBytes(int64(len(w)))
				b.ReportMetric(float64(n*rows)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
			}
			b.Run(fmt.Sprintf("%s/n=%d/go", typ, n), func(b *testing.B) {
				f := genericDotFuncs[typ]
				for b.Loop() {
					for r := range out {
						out[r] = f(w[r*rb:(r+1)*rb], xq, n)
					}
				}
				report(b)
			})
			b.Run(fmt.Sprintf("%s/n=%d/fast", typ, n), func(b *testing.B) {
				f := VecDotFunc(typ)
				for b.Loop() {
					for r := range out {
						out[r] = f(w[r*rb:(r+1)*rb], xq, n)
					}
				}
				report(b)
			})
			b.Run(fmt.Sprintf("%s/n=%d/rows", typ, n), func(b *testing.B) {
				for b.Loop() {
					DotRows(typ, w, rb, xq, n, out)
				}
				report(b)
			})
		}
	}
}
