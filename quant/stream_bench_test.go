package quant

import (
	"fmt"
	"sync"
	"testing"
)

// BenchmarkDotRowsStream: DotRows over 256 MiB of Q5_0 / Q8_0 rows of 896
// (too large for any cache: the weights stream from memory as in a decode
// step), on 1 and 2 goroutines. MB/s is weight bytes read per second.
func BenchmarkDotRowsStream(b *testing.B) {
	for _, typ := range []Type{Q5_0, Q8_0} {
		const n = 896
		rb, _ := RowBytes(typ, n)
		rows := (256 << 20) / rb / 128 * 128
		w := make([]byte, rows*rb)
		for i := range w {
			w[i] = byte(i * 7)
		}
		for i := 0; i < len(w); i += typ.TypeSize() {
			w[i], w[i+1] = 0, 0x3c // f16 scale 1
		}
		xq := make([]byte, ActivationBytes(typ, n))
		if err := QuantizeActivations(typ, gaussRow(3, n, 1), xq); err != nil {
			b.Fatal(err)
		}
		out := make([]float32, rows)
		for _, th := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", typ, th), func(b *testing.B) {
				for b.Loop() {
					var wg sync.WaitGroup
					per := rows / th
					for k := range th {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for r := k * per; r < (k+1)*per; r += 64 {
								DotRows(typ, w[r*rb:], rb, xq, n, out[r:r+64])
							}
						}()
					}
					wg.Wait()
				}
				b.SetBytes(int64(len(w)))
			})
		}
	}
}
