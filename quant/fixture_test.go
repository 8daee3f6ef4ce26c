package quant_test

import (
	"math"
	"testing"

	"worker-orcd/gguf"
	"worker-orcd/internal/fixtures"
	"worker-orcd/quant"
)

// Every tensor of every fixture model dequantizes to finite values, and a
// dot product of its first row with a fixed activation vector is finite and
// agrees with the float dot of the dequantized row.
func TestFixtureTensorsDequantizeFinite(t *testing.T) {
	for _, m := range fixtures.Models {
		t.Run(m.Name, func(t *testing.T) {
			f, err := gguf.Open(fixtures.ModelPath(t, m.Name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var buf []float32
			counts := map[quant.Type]int{}
			for i := range f.Tensors {
				ti := &f.Tensors[i]
				if !quant.CanDequantize(ti.Type) {
					t.Errorf("%s: type %s cannot be dequantized", ti.Name, ti.Type)
					continue
				}
				counts[ti.Type]++
				n := int(ti.Elements())
				if cap(buf) < n {
					buf = make([]float32, n)
				}
				out := buf[:n]
				if err := quant.Dequantize(ti.Type, f.TensorData(ti), out); err != nil {
					t.Errorf("%s: %v", ti.Name, err)
					continue
				}
				for j, v := range out {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Errorf("%s (%s): element %d = %g", ti.Name, ti.Type, j, v)
						break
					}
				}
				if !quant.CanVecDot(ti.Type) || len(ti.Dims) < 2 {
					continue
				}
				cols := int(ti.Dims[0])
				rb, err := quant.RowBytes(ti.Type, cols)
				if err != nil {
					t.Errorf("%s: %v", ti.Name, err)
					continue
				}
				x := make([]float32, cols)
				for j := range x {
					x[j] = float32(math.Sin(float64(j)))
				}
				xq := make([]byte, quant.ActivationBytes(ti.Type, cols))
				if err := quant.QuantizeActivations(ti.Type, x, xq); err != nil {
					t.Fatal(err)
				}
				got := quant.VecDot(ti.Type, f.TensorData(ti)[:rb], xq, cols)
				var want, mag float64
				for j := 0; j < cols; j++ {
					want += float64(out[j]) * float64(x[j])
					mag += math.Abs(float64(out[j]) * float64(x[j]))
				}
				if math.Abs(float64(got)-want) > 2e-3*mag+1e-6 {
					t.Errorf("%s (%s): row 0 VecDot %g, float dot %g (Σ|wx| %g)", ti.Name, ti.Type, got, want, mag)
				}
			}
			t.Logf("%d tensors by type: %v", len(f.Tensors), counts)
		})
	}
}
