package quant

import "testing"

// benchTypes are all types Dequantize supports.
var benchTypes = []Type{F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K}

// BenchmarkDequantize reports throughput in bytes of quantized input per
// second (MB/s) and output elements per second, for a 64 Ki-element tensor.
func BenchmarkDequantize(b *testing.B) {
	const n = 1 << 16
	for _, typ := range benchTypes {
		b.Run(typ.String(), func(b *testing.B) {
			nb, _ := RowBytes(typ, n)
			src := make([]byte, nb)
			if CanQuantize(typ) {
				if err := Quantize(typ, gaussRow(1, n, 1), src); err != nil {
					b.Fatal(err)
				}
			} else {
				src = weightRow(b, typ, 1, n)
			}
			dst := make([]float32, n)
			b.SetBytes(int64(nb))
			for b.Loop() {
				DequantizeRow(typ, src, dst)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
		})
	}
}

// BenchmarkVecDot reports the throughput of MatVec over 64 rows of 4096
// elements (the activations already quantized), in weight bytes per second
// and multiply-adds per second.
func BenchmarkVecDot(b *testing.B) {
	const n, rows = 4096, 64
	for _, typ := range dotTypes {
		b.Run(typ.String(), func(b *testing.B) {
			var w []byte
			for r := 0; r < rows; r++ {
				w = append(w, weightRow(b, typ, uint64(r), n)...)
			}
			xq := make([]byte, ActivationBytes(typ, n))
			if err := QuantizeActivations(typ, gaussRow(3, n, 1), xq); err != nil {
				b.Fatal(err)
			}
			out := make([]float32, rows)
			b.SetBytes(int64(len(w)))
			for b.Loop() {
				MatVec(typ, w, xq, n, out)
			}
			b.ReportMetric(float64(n*rows)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
		})
	}
}

// BenchmarkQuantizeActivations reports the cost of converting a 4096-element
// activation vector for each vec-dot type.
func BenchmarkQuantizeActivations(b *testing.B) {
	const n = 4096
	x := gaussRow(4, n, 1)
	for _, typ := range []Type{Q8_0, Q8_1, Q8_K, F16} {
		b.Run(typ.String(), func(b *testing.B) {
			dst := make([]byte, ActivationBytes(typ, n))
			b.SetBytes(4 * n)
			for b.Loop() {
				_ = QuantizeActivations(typ, x, dst)
			}
		})
	}
}

// BenchmarkQuantize reports reference quantization speed (test-model
// generation) in float32 input bytes per second.
func BenchmarkQuantize(b *testing.B) {
	const n = 1 << 14
	x := gaussRow(5, n, 1)
	for _, typ := range []Type{Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K} {
		b.Run(typ.String(), func(b *testing.B) {
			nb, _ := RowBytes(typ, n)
			dst := make([]byte, nb)
			b.SetBytes(4 * n)
			for b.Loop() {
				_ = Quantize(typ, x, dst)
			}
		})
	}
}
