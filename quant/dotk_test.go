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

// MatMul over random bytes (arbitrary scales, quants, bsums) for several
// rows and 37 different tokens (the 16-, 4- and 1-token kernels) gives the
// Go dot product's result for each.
func TestMatMulKRandomBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const T, rows = 37, 3
	for _, typ := range []Type{Q4_K, Q6_K} {
		for _, nb := range []int{1, 2, 19} {
			for mode := 0; mode < 4; mode++ {
				n, ts := nb*256, typ.TypeSize()
				w := make([]byte, rows*nb*ts)
				randomBlocks(rng, typ, w, mode)
				xq := make([]byte, T*nb*292)
				for i := range xq {
					xq[i] = byte(rng.Uint32())
					if mode == 3 {
						xq[i] = [4]byte{0x80, 0x7f, 0xff, 0x00}[rng.IntN(4)]
					}
				}
				if mode == 0 {
					for tok := range T {
						if err := QuantizeActivations(typ, gaussRow(rng.Uint64(), n, 1), xq[tok*nb*292:(tok+1)*nb*292]); err != nil {
							t.Fatal(err)
						}
					}
				}
				out := make([]float32, T*rows)
				MatMul(typ, w, nb*ts, rows, xq, nb*292, T, n, out, rows)
				for tok := range T {
					for r := range rows {
						want := genericDotFuncs[typ](w[r*nb*ts:(r+1)*nb*ts], xq[tok*nb*292:(tok+1)*nb*292], n)
						if got := out[tok*rows+r]; !sameFloat(got, want) {
							t.Fatalf("%s nb %d mode %d row %d token %d: MatMul %g, generic %g", typ, nb, mode, r, tok, got, want)
						}
					}
				}
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
		// One row × 21 tokens through MatMul (the 16- and 4-token kernels
		// where the CPU has them, and the single-token one).
		want := genericDotFuncs[typ](row, xq, n)
		var xs []byte
		for range 21 {
			xs = append(xs, xq...)
		}
		out := make([]float32, 21)
		MatMul(typ, row, len(row), 1, xs, len(xq), 21, n, out, 1)
		for i, v := range out {
			if !sameFloat(v, want) {
				t.Fatalf("%s n=%d token %d: MatMul %g, generic %g", typ, n, i, v, want)
			}
		}
	})
}
