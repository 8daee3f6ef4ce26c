package quant

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// The selected F16 dot product (AVX2+F16C where the CPU has them) is
// bit-identical to dotF16 for every length 0..300 and some long rows, on
// Gaussian halves, on arbitrary bit patterns (subnormals, ±Inf and NaN
// included) and on huge values whose products overflow.
func TestVecDotF16MatchesGeneric(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	fast := VecDotFunc(F16)
	var lengths []int
	for n := 0; n <= 300; n++ {
		lengths = append(lengths, n)
	}
	lengths = append(lengths, 896, 4096, 4099, 8190)
	for _, n := range lengths {
		for mode := 0; mode < 3; mode++ {
			a, b := make([]byte, 2*n), make([]byte, 2*n)
			for i := 0; i < n; i++ {
				var ha, hb uint16
				switch mode {
				case 0:
					ha, hb = F32ToF16(float32(rng.NormFloat64())), F32ToF16(float32(rng.NormFloat64()))
				case 1:
					ha, hb = uint16(rng.Uint32()), uint16(rng.Uint32())
				case 2:
					ha, hb = F32ToF16(float32(rng.NormFloat64()*3e4)), F32ToF16(float32(rng.NormFloat64()*3e4))
				}
				binary.LittleEndian.PutUint16(a[2*i:], ha)
				binary.LittleEndian.PutUint16(b[2*i:], hb)
			}
			x, y := fast(a, b, n), dotF16(a, b, n)
			if !sameFloat(x, y) {
				t.Fatalf("n=%d mode %d: fast %g, generic %g", n, mode, x, y)
			}
		}
	}
}
