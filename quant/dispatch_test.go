package quant

import (
	"math"
	"testing"
)

// Every dot product selected for this CPU (assembly where available) gives
// bit-identical results to the portable Go version, on quantized rows and on
// arbitrary block bytes with finite scales.
func TestVecDotDispatchMatchesGeneric(t *testing.T) {
	const n = 1024
	for _, typ := range dotTypes {
		fast, slow := vecDotFuncs[typ], genericDotFuncs[typ]
		for seed := uint64(0); seed < 8; seed++ {
			row := weightRow(t, typ, seed, n)
			if seed >= 4 && typ.BlockSize() > 1 {
				// Arbitrary quant bytes, keeping the block's f16 scales.
				saved := append([]byte(nil), row...)
				pattern(row, int(seed))
				restoreScales(typ, row, saved)
			}
			xq := make([]byte, ActivationBytes(typ, n))
			if err := QuantizeActivations(typ, gaussRow(seed+50, n, 1), xq); err != nil {
				t.Fatal(err)
			}
			a, b := fast(row, xq, n), slow(row, xq, n)
			if math.Float32bits(a) != math.Float32bits(b) {
				t.Errorf("%s seed %d: dispatched %g, generic %g", typ, seed, a, b)
			}
		}
	}
}

// restoreScales copies the f16 scale fields of every block from src to dst.
func restoreScales(typ Type, dst, src []byte) {
	var fields []int // byte offsets of 2-byte f16 fields in a block
	switch typ {
	case Q4_0, Q5_0, Q8_0:
		fields = []int{0}
	case Q4_1, Q5_1, Q4_K, Q5_K:
		fields = []int{0, 2}
	case Q2_K:
		fields = []int{80, 82}
	case Q3_K:
		fields = []int{108}
	case Q6_K:
		fields = []int{208}
	}
	for i := 0; i < len(dst); i += typ.TypeSize() {
		for _, f := range fields {
			copy(dst[i+f:i+f+2], src[i+f:i+f+2])
		}
	}
}
