package quant

import (
	"math/rand/v2"
	"testing"
)

// kDotCheck compares the selected Q4_K/Q6_K dot product with the Go one on
// arbitrary weight and activation bytes (nb blocks each).
func kDotCheck(t *testing.T, typ Type, row, xq []byte, n int) {
	t.Helper()
	want := genericDotFuncs[typ](row, xq, n)
	if got := VecDotFunc(typ)(row, xq, n); !sameFloat(got, want) {
		t.Fatalf("%s n=%d: fast %g, generic %g", typ, n, got, want)
	}
}

// The Q4_K and Q6_K dot products selected for this CPU are bit-identical to
// the Go ones on random bytes (weights, scales, activations, bsums) with
// sane and with arbitrary f16/f32 scales.
func TestVecDotKMatchesGeneric(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, typ := range []Type{Q4_K, Q6_K} {
		for _, nb := range []int{1, 2, 3, 19} {
			for mode := 0; mode < 4; mode++ {
				row := make([]byte, nb*typ.TypeSize())
				xq := make([]byte, nb*292)
				randomBlocks(rng, typ, row, mode)
				for i := range xq {
					xq[i] = byte(rng.Uint32())
					if mode == 3 {
						xq[i] = [4]byte{0x80, 0x7f, 0xff, 0x00}[rng.IntN(4)]
					}
				}
				if mode == 0 {
					// Sane Q8_K scales and Q6_K/Q4_K f16 scales.
					if err := QuantizeActivations(typ, gaussRow(rng.Uint64(), nb*256, 1), xq); err != nil {
						t.Fatal(err)
					}
				}
				kDotCheck(t, typ, row, xq, nb*256)
			}
		}
	}
}

// FuzzVecDotK: arbitrary bytes as Q4_K/Q6_K blocks and Q8_K activations;
// the selected dot product matches the Go one bit for bit.
func FuzzVecDotK(f *testing.F) {
	f.Add(false, make([]byte, 144+292))
	f.Add(true, make([]byte, 2*(210+292)))
	f.Fuzz(func(t *testing.T, six bool, data []byte) {
		typ := Q4_K
		if six {
			typ = Q6_K
		}
		ts := typ.TypeSize()
		nb := len(data) / (ts + 292)
		if nb == 0 {
			return
		}
		row, xq, n := data[:nb*ts], data[nb*ts:nb*(ts+292)], nb*256
		kDotCheck(t, typ, row, xq, n)
		// One row × five tokens through MatMul (the four-token kernel).
		want := genericDotFuncs[typ](row, xq, n)
		xs := append(append(append(append(append([]byte(nil), xq...), xq...), xq...), xq...), xq...)
		out := make([]float32, 5)
		MatMul(typ, row, len(row), 1, xs, len(xq), 5, n, out, 1)
		for i, v := range out {
			if !sameFloat(v, want) {
				t.Fatalf("%s n=%d token %d: MatMul %g, generic %g", typ, n, i, v, want)
			}
		}
	})
}
