package quant

import (
	"fmt"
	"testing"
)

// BenchmarkMatMul: 256 rows × 64 tokens through MatMul for the Qwen2.5-0.5B
// Q4_K_M types (tile kernels where the CPU has them), one core. GMAC/s
// counts multiply-adds; GMAC/s-cpu divides by the process's CPU time instead
// of the elapsed time (run with -cpu 1: steadier when other work shares the
// core).
func BenchmarkMatMul(b *testing.B) {
	const rows, T = 256, 64
	for _, tc := range []struct {
		typ Type
		n   int
	}{{Q5_0, 896}, {Q8_0, 896}, {Q4_K, 4864}, {Q6_K, 4864}} {
		typ, n := tc.typ, tc.n
		rb, _ := RowBytes(typ, n)
		var w []byte
		for r := 0; r < rows; r++ {
			w = append(w, weightRow(b, typ, uint64(r), n)...)
		}
		ab := ActivationBytes(typ, n)
		xq := make([]byte, T*ab)
		for t := range T {
			if err := QuantizeActivations(typ, gaussRow(uint64(t), n, 1), xq[t*ab:(t+1)*ab]); err != nil {
				b.Fatal(err)
			}
		}
		out := make([]float32, T*rows)
		b.Run(fmt.Sprintf("%s/n=%d", typ, n), func(b *testing.B) {
			c0 := cpuTime()
			for b.Loop() {
				MatMul(typ, w, rb, rows, xq, ab, T, n, out, rows)
			}
			macs := float64(n*rows*T) * float64(b.N)
			b.ReportMetric(macs/b.Elapsed().Seconds()/1e9, "GMAC/s")
			if c := cpuTime() - c0; c > 0 {
				b.ReportMetric(macs/c.Seconds()/1e9, "GMAC/s-cpu")
			}
		})
	}
}
