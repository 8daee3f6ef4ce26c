package quant

import (
	"encoding/binary"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// q8ActTypes are the weight types dotted with Q8_0 activations.
var q8ActTypes = []Type{Q8_0, Q4_0, Q5_0}

// sameFloat reports whether a and b have the same bits, or are both NaN
// (whose payload may depend on operand order inside a multiply).
func sameFloat(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

// randomBlocks fills b, made of blocks of typ (Q8_0 for activations), with
// random bytes and sets each block's f16 scale by mode: 0 small sane
// scales, 1 any finite f16 (up to 65504: products overflow to ±Inf),
// 2 any f16 bit pattern at all, 3 extreme quants (bytes 0x80/0x7f/0xff/0x00)
// with large scales.
func randomBlocks(rng *rand.Rand, typ Type, b []byte, mode int) {
	ts := typ.TypeSize()
	for i := range b {
		b[i] = byte(rng.Uint32())
		if mode == 3 {
			b[i] = [4]byte{0x80, 0x7f, 0xff, 0x00}[rng.IntN(4)]
		}
	}
	for i := 0; i < len(b); i += ts {
		var h uint16
		switch mode {
		case 0:
			h = F32ToF16(float32(rng.NormFloat64() * 0.01))
		case 1:
			h = uint16(rng.Uint32())
			if h&0x7c00 == 0x7c00 {
				h &^= 0x4000
			}
		case 2:
			h = uint16(rng.Uint32())
		case 3:
			h = F32ToF16(float32(rng.NormFloat64() * 1000))
		}
		binary.LittleEndian.PutUint16(b[i:], h)
	}
}

// The AVX2 Q8_0/Q4_0/Q5_0 dots (where the CPU has them) are bit-identical to
// the Go ones on random rows of many lengths, with arbitrary quant bytes and
// scales, and DotRows agrees with them row by row.
func TestVecDotQ8ActMatchesGeneric(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var lengths []int
	for k := 1; k <= 40; k++ {
		lengths = append(lengths, 32*k)
	}
	lengths = append(lengths, 896, 2048, 4096, 4864, 8192+32)
	for _, typ := range q8ActTypes {
		fast, slow := VecDotFunc(typ), genericDotFuncs[typ]
		if fast == nil {
			t.Fatalf("%s: no VecDotFunc", typ)
		}
		for _, n := range lengths {
			for mode := 0; mode < 4; mode++ {
				row := make([]byte, ActivationBytes(Q8_0, n)/34*typ.TypeSize())
				xq := make([]byte, ActivationBytes(typ, n))
				randomBlocks(rng, typ, row, mode)
				randomBlocks(rng, Q8_0, xq, mode)
				a, b := fast(row, xq, n), slow(row, xq, n)
				if !sameFloat(a, b) {
					t.Fatalf("%s n=%d mode %d: fast %g (%#x), generic %g (%#x)",
						typ, n, mode, a, math.Float32bits(a), b, math.Float32bits(b))
				}
				if c := VecDot(typ, row, xq, n); !sameFloat(c, b) {
					t.Fatalf("%s n=%d mode %d: VecDot %g, generic %g", typ, n, mode, c, b)
				}
			}
		}
	}
}

// All quants at their extremes, one scale: the integer sums reach their
// largest magnitudes (e.g. Q8_0: 32*128*128 per block).
func TestVecDotQ8ActExtremes(t *testing.T) {
	const n = 4096
	for _, typ := range q8ActTypes {
		for _, wq := range []byte{0x00, 0x80, 0x7f, 0xff} {
			for _, xv := range []byte{0x80, 0x7f, 0x81} {
				row := make([]byte, n/32*typ.TypeSize())
				xq := make([]byte, n/32*34)
				for i := range row {
					row[i] = wq
				}
				for i := range xq {
					xq[i] = xv
				}
				for i := 0; i < len(row); i += typ.TypeSize() {
					put16(row[i:], F32ToF16(1))
				}
				for i := 0; i < len(xq); i += 34 {
					put16(xq[i:], F32ToF16(0.5))
				}
				a, b := VecDotFunc(typ)(row, xq, n), genericDotFuncs[typ](row, xq, n)
				if !sameFloat(a, b) {
					t.Errorf("%s w %#x x %#x: fast %g, generic %g", typ, wq, xv, a, b)
				}
			}
		}
	}
}

// DotRows gives VecDot's result for every row, for any number of rows and
// row strides larger than a row, for every type with a dot product.
func TestDotRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, typ := range dotTypes {
		n := 512
		if typ.BlockSize() == 32 {
			n = 896
		}
		rb, _ := RowBytes(typ, n)
		xq := make([]byte, ActivationBytes(typ, n))
		if err := QuantizeActivations(typ, gaussRow(7, n, 1), xq); err != nil {
			t.Fatal(err)
		}
		for _, rows := range []int{0, 1, 3, 4, 5, 8, 11} {
			for _, pad := range []int{0, 7} {
				stride := rb + pad
				w := make([]byte, rows*stride)
				for r := 0; r < rows; r++ {
					copy(w[r*stride:], weightRow(t, typ, rng.Uint64(), n))
				}
				out := make([]float32, rows)
				DotRows(typ, w, stride, xq, n, out)
				for r := range out {
					if want := VecDot(typ, w[r*stride:r*stride+rb], xq, n); !sameFloat(out[r], want) {
						t.Errorf("%s rows %d stride %d row %d: DotRows %g, VecDot %g", typ, rows, stride, r, out[r], want)
					}
				}
			}
		}
	}
}

func TestDotRowsPanicsOnBadSizes(t *testing.T) {
	n := 64
	rb, _ := RowBytes(Q8_0, n)
	xq := make([]byte, rb)
	for _, tc := range []struct {
		name    string
		w       []byte
		stride  int
		xq      []byte
		typ     Type
		outRows int
	}{
		{"short w", make([]byte, 3*rb-1), rb, xq, Q8_0, 3},
		{"small stride", make([]byte, 3*rb), rb - 1, xq, Q8_0, 3},
		{"short xq", make([]byte, 3*rb), rb, xq[:rb-1], Q8_0, 3},
		{"no dot", make([]byte, 3*rb), rb, xq, Q8_1, 3},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", tc.name)
				}
			}()
			DotRows(tc.typ, tc.w, tc.stride, tc.xq, n, make([]float32, tc.outRows))
		}()
	}
	if VecDotFunc(Q8_1) != nil {
		t.Error("VecDotFunc(Q8_1) != nil")
	}
}

// fuzzQ8Alt, where set (amd64), is a second kernel level's dot product that
// FuzzVecDotQ8Act also checks.
var fuzzQ8Alt func(typ Type, row, xq []byte, n int) float32

// FuzzVecDotQ8Act: arbitrary bytes as weight blocks and activations; the
// selected dot product and DotRows match the Go one bit for bit.
func FuzzVecDotQ8Act(f *testing.F) {
	f.Add(uint8(0), make([]byte, 34*2))
	f.Add(uint8(1), []byte{0x00, 0x3c, 0x80, 0x80, 0x7f})
	f.Add(uint8(2), make([]byte, 22*9+34*9))
	f.Fuzz(func(t *testing.T, sel uint8, data []byte) {
		typ := q8ActTypes[int(sel)%len(q8ActTypes)]
		ts := typ.TypeSize()
		nb := len(data) / (ts + 34)
		n := nb * 32
		row, xq := data[:nb*ts], data[nb*ts:nb*(ts+34)]
		want := genericDotFuncs[typ](row, xq, n)
		if got := VecDotFunc(typ)(row, xq, n); !sameFloat(got, want) {
			t.Fatalf("%s n=%d: fast %g, generic %g", typ, n, got, want)
		}
		if fuzzQ8Alt != nil {
			if got := fuzzQ8Alt(typ, row, xq, n); !sameFloat(got, want) {
				t.Fatalf("%s n=%d: other kernel level %g, generic %g", typ, n, got, want)
			}
		}
		w := append(append(append(append([]byte(nil), row...), row...), row...), row...)
		out := make([]float32, 4)
		DotRows(typ, w, len(row), xq, n, out)
		for r, v := range out {
			if !sameFloat(v, want) {
				t.Fatalf("%s n=%d row %d: DotRows %g, generic %g", typ, n, r, v, want)
			}
		}
		if n == 0 {
			return
		}
		// Four rows × 29 tokens through MatMul (the 16-, 8- and 4-token
		// tile kernels where the CPU has them), every result the same.
		var xs []byte
		for range 29 {
			xs = append(xs, xq...)
		}
		mm := make([]float32, 4*29)
		MatMul(typ, w, len(row), 4, xs, len(xq), 29, n, mm, 4)
		for i, v := range mm {
			if !sameFloat(v, want) {
				t.Fatalf("%s n=%d result %d: MatMul %g, generic %g", typ, n, i, v, want)
			}
		}
	})
}

// MatMul gives VecDot's result for every row and token, for any numbers of
// rows and tokens and padded strides, for every type with a dot product.
func TestMatMul(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, typ := range dotTypes {
		n := 512
		if typ.BlockSize() == 32 {
			n = 896
		}
		rb, _ := RowBytes(typ, n)
		vb := ActivationBytes(typ, n)
		for _, rows := range []int{1, 4, 7, 12} {
			for _, T := range []int{1, 3, 4, 5, 9, 16, 29, 40} {
				pad := rows % 3 * 5
				stride, ab, os := rb+pad, vb+pad, rows+pad
				w := make([]byte, rows*stride)
				for r := 0; r < rows; r++ {
					copy(w[r*stride:], weightRow(t, typ, rng.Uint64(), n))
				}
				xq := make([]byte, T*ab)
				for tok := range T {
					if err := QuantizeActivations(typ, gaussRow(rng.Uint64(), n, 1), xq[tok*ab:tok*ab+vb]); err != nil {
						t.Fatal(err)
					}
				}
				out := make([]float32, T*os)
				MatMul(typ, w, stride, rows, xq, ab, T, n, out, os)
				for tok := range T {
					for r := range rows {
						want := VecDot(typ, w[r*stride:r*stride+rb], xq[tok*ab:tok*ab+vb], n)
						if got := out[tok*os+r]; !sameFloat(got, want) {
							t.Fatalf("%s rows %d T %d: row %d token %d: MatMul %g, VecDot %g", typ, rows, T, r, tok, got, want)
						}
					}
				}
			}
		}
	}
}

// fma32 is a*b+c rounded once to float32: checked against exact big.Float
// arithmetic on random operands, on operands whose float64 sum lands on a
// float32 halfway point (where rounding twice goes wrong), on overflow,
// subnormal and special values.
func TestFMA32(t *testing.T) {
	exact := func(a, b, c float32) float32 {
		if isSpecial(a) || isSpecial(b) || isSpecial(c) {
			return float32(float64(a)*float64(b) + float64(c)) // Inf/NaN: as the hardware
		}
		x := new(big.Float).SetPrec(0).SetFloat64(float64(a))
		x.SetPrec(200).Mul(x, new(big.Float).SetFloat64(float64(b)))
		x.Add(x, new(big.Float).SetFloat64(float64(c)))
		f, _ := x.Float32()
		return f
	}
	check := func(a, b, c float32) {
		t.Helper()
		if got, want := fma32(a, b, c), exact(a, b, c); !sameFloat(got, want) {
			t.Fatalf("fma32(%g, %g, %g) = %g (%#x), want %g (%#x)", a, b, c, got, math.Float32bits(got), want, math.Float32bits(want))
		}
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for range 200000 {
		a := math.Float32frombits(rng.Uint32())
		b := math.Float32frombits(rng.Uint32())
		c := math.Float32frombits(rng.Uint32())
		check(a, b, c)
		// Magnitudes close together, as in the dot products.
		a = float32(rng.NormFloat64())
		b = float32(rng.IntN(1<<17) - 1<<16)
		c = float32(rng.NormFloat64() * math.Pow(2, float64(rng.IntN(40)-20)))
		check(a, b, c)
	}
	// a*b exactly a float32 halfway point, c tiny: the float64 sum is the
	// halfway point, the exact sum is not (float32(math.FMA(a, a, 1e-30))
	// rounds to even, 0x3f801000; the exact sum rounds up, 0x3f801001).
	for _, c := range []float32{1e-30, -1e-30, math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32, 0} {
		// (1 + 2^-12)² = 1 + 2^-11 + 2^-24: halfway between two float32.
		a := float32(1 + 1.0/(1<<12))
		check(a, a, c)
		check(-a, a, c)
	}
	for _, v := range [][3]float32{
		{math.MaxFloat32, 2, -math.MaxFloat32}, // product overflows, the sum does not
		{math.MaxFloat32, 2, 0},
		{1e-30, 1e-20, 0}, // subnormal result
		{1e-30, 1e-20, 1e-45},
		{float32(math.Inf(1)), 0, 1},
		{float32(math.Inf(1)), 1, float32(math.Inf(-1))},
		{float32(math.NaN()), 1, 1},
	} {
		check(v[0], v[1], v[2])
	}
}

func isSpecial(f float32) bool { return math.IsInf(float64(f), 0) || f != f }
