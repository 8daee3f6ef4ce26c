package quant

import (
	"encoding/binary"
	"math"
	"testing"
)

// dotTypes are the weight types VecDot supports.
var dotTypes = []Type{F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K}

// weightRow returns n elements of weight type t as bytes: quantized from a
// seeded Gaussian row where Quantize supports t, otherwise random blocks
// with their f16 scales set to small sane values.
func weightRow(t testing.TB, typ Type, seed uint64, n int) []byte {
	t.Helper()
	nb, err := RowBytes(typ, n)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, nb)
	if CanQuantize(typ) {
		if err := Quantize(typ, gaussRow(seed, n, 0.05), b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	pattern(b, int(seed))
	for i := 0; i < nb; i += typ.TypeSize() {
		switch typ {
		case Q2_K:
			put16(b[i+80:], F32ToF16(0.002))
			put16(b[i+82:], F32ToF16(0.001))
		case Q3_K:
			put16(b[i+108:], F32ToF16(0.001))
		default:
			t.Fatalf("no weight generator for %s", typ)
		}
	}
	return b
}

func dequantAll(t testing.TB, typ Type, b []byte, n int) []float32 {
	t.Helper()
	y := make([]float32, n)
	if err := Dequantize(typ, b, y); err != nil {
		t.Fatal(err)
	}
	return y
}

// VecDot is checked two ways for n = 4096:
//
//  1. against the float64 dot of the dequantized weights with the
//     dequantized activations: the same numbers, so only float32 summation
//     order differs (and, for Q4_1/Q5_1, Q8_1's sum term s stored as f16).
//     Bound: 1e-6 (Q4_1/Q5_1: 1e-4) of Σ|w_i·x_i| [measured ≤ 1e-8; 1.2e-5].
//  2. against the float64 dot of the dequantized weights with the original
//     float32 activations: the error of quantizing x to 8 bits (or f16/bf16),
//     ≈ 0.005 relative per element, uncorrelated, so it mostly cancels.
//     Bound: 2e-3 of Σ|w_i·x_i| [measured 4e-5 to 3e-4].
func TestVecDotMatchesDequantized(t *testing.T) {
	const n = 4096
	for _, typ := range dotTypes {
		t.Run(typ.String(), func(t *testing.T) {
			vt := VecDotType(typ)
			for seed := uint64(1); seed <= 4; seed++ {
				w := dequantAll(t, typ, weightRow(t, typ, seed, n), n)
				row := weightRow(t, typ, seed, n)
				x := gaussRow(seed+100, n, 1)
				xq := make([]byte, ActivationBytes(typ, n))
				if err := QuantizeActivations(typ, x, xq); err != nil {
					t.Fatal(err)
				}
				xd := dequantAll(t, vt, xq, n)
				var exact, approx, mag float64
				for i := range w {
					exact += float64(w[i]) * float64(xd[i])
					approx += float64(w[i]) * float64(x[i])
					mag += math.Abs(float64(w[i]) * float64(x[i]))
				}
				got := float64(VecDot(typ, row, xq, n))
				tol1 := 1e-6
				if vt == Q8_1 {
					tol1 = 1e-4
				}
				if e := math.Abs(got - exact); e > tol1*mag {
					t.Errorf("seed %d: VecDot %g, dequantized dot %g: error %.3g of Σ|wx| %g (bound %g)", seed, got, exact, e/mag, mag, tol1)
				}
				if e := math.Abs(got - approx); e > 2e-3*mag {
					t.Errorf("seed %d: VecDot %g, float dot %g: error %.3g of Σ|wx| (bound 2e-3)", seed, got, approx, e/mag)
				}
				if seed == 1 {
					t.Logf("%s·%s: vs dequantized %.2e, vs float activations %.2e (of Σ|wx|)", typ, vt, math.Abs(got-exact)/mag, math.Abs(got-approx)/mag)
				}
			}
		})
	}
}

// For one block the integer math is exact, so VecDot equals the product of
// the scales and the integer sum, to float32 rounding.
func TestVecDotQ8_0Exact(t *testing.T) {
	row := make([]byte, 34)
	xq := make([]byte, 34)
	put16(row, hHalf)
	put16(xq, hQuart)
	var sumi int32
	for j := 0; j < 32; j++ {
		a, b := int8(j*5-80), int8(127-j*8)
		row[2+j], xq[2+j] = byte(a), byte(b)
		sumi += int32(a) * int32(b)
	}
	if got, want := VecDot(Q8_0, row, xq, 32), float32(sumi)*0.125; got != want {
		t.Errorf("VecDot = %g, want %g", got, want)
	}
}

func TestVecDotTypes(t *testing.T) {
	want := map[Type]Type{
		F32: F32, F16: F16, BF16: BF16,
		Q4_0: Q8_0, Q5_0: Q8_0, Q8_0: Q8_0,
		Q4_1: Q8_1, Q5_1: Q8_1, Q8_1: Q8_1,
		Q2_K: Q8_K, Q3_K: Q8_K, Q4_K: Q8_K, Q5_K: Q8_K, Q6_K: Q8_K, Q8_K: Q8_K,
	}
	for w, v := range want {
		if got := VecDotType(w); got != v {
			t.Errorf("VecDotType(%s) = %s, want %s", w, got, v)
		}
		if VecDotType(VecDotType(w)) != VecDotType(w) {
			t.Errorf("VecDotType not idempotent on %s", w)
		}
	}
	for _, typ := range dotTypes {
		if !CanVecDot(typ) {
			t.Errorf("CanVecDot(%s) = false", typ)
		}
	}
	if CanVecDot(IQ2_XXS) {
		t.Error("CanVecDot(IQ2_XXS) = true")
	}
	if got := ActivationBytes(Q4_K, 512); got != 2*292 {
		t.Errorf("ActivationBytes(Q4_K, 512) = %d", got)
	}
	if got := ActivationBytes(Q4_K, 32); got != -1 {
		t.Errorf("ActivationBytes(Q4_K, 32) = %d, want -1", got)
	}
	if got := ActivationBytes(F16, 3); got != 6 {
		t.Errorf("ActivationBytes(F16, 3) = %d", got)
	}
}

// The activation quantizer for Q8_0 (ggml's x86 rounding) agrees with the
// reference quantizer except for rare ±1 differences at exact ties.
func TestQuantizeActivationsQ8_0(t *testing.T) {
	x := gaussRow(5, 4096, 1)
	a := make([]byte, 4096/32*34)
	r := make([]byte, len(a))
	if err := QuantizeActivations(Q4_0, x, a); err != nil {
		t.Fatal(err)
	}
	if err := Quantize(Q8_0, x, r); err != nil {
		t.Fatal(err)
	}
	diff := 0
	for i := range a {
		if a[i] != r[i] {
			if d := int(int8(a[i])) - int(int8(r[i])); d != 1 && d != -1 || i%34 < 2 {
				t.Fatalf("byte %d: %d vs %d", i, int8(a[i]), int8(r[i]))
			}
			diff++
		}
	}
	if diff > 10 {
		t.Errorf("%d quants differ from the reference quantizer", diff)
	}
	// Q8_K bsums are the group sums.
	k := make([]byte, 4096/256*292)
	if err := QuantizeActivations(Q6_K, x, k); err != nil {
		t.Fatal(err)
	}
	for b := 0; b < 16; b++ {
		blk := k[b*292:]
		for g := 0; g < 16; g++ {
			var s int
			for j := 0; j < 16; j++ {
				s += int(int8(blk[4+16*g+j]))
			}
			if got := int(int16(binary.LittleEndian.Uint16(blk[260+2*g:]))); got != s {
				t.Fatalf("block %d bsum %d = %d, want %d", b, g, got, s)
			}
		}
	}
	if err := QuantizeActivations(Q4_K, x[:100], k); err == nil {
		t.Error("QuantizeActivations accepted 100 elements for Q4_K")
	}
	if err := QuantizeActivations(IQ2_XXS, x[:256], make([]byte, 66)); err == nil {
		t.Error("QuantizeActivations accepted IQ2_XXS")
	}
}

func TestMatVec(t *testing.T) {
	const n, rows = 512, 5
	for _, typ := range []Type{Q4_K, Q8_0, F32} {
		rb, _ := RowBytes(typ, n)
		var w []byte
		for r := 0; r < rows; r++ {
			w = append(w, weightRow(t, typ, uint64(r), n)...)
		}
		xq := make([]byte, ActivationBytes(typ, n))
		if err := QuantizeActivations(typ, gaussRow(9, n, 1), xq); err != nil {
			t.Fatal(err)
		}
		out := make([]float32, rows)
		MatVec(typ, w, xq, n, out)
		for r := range out {
			if want := VecDot(typ, w[r*rb:(r+1)*rb], xq, n); out[r] != want {
				t.Errorf("%s row %d: MatVec %g, VecDot %g", typ, r, out[r], want)
			}
		}
	}
}

func TestVecDotPanicsOnBadSizes(t *testing.T) {
	xq := make([]byte, 292)
	for name, f := range map[string]func(){
		"short row":         func() { VecDot(Q4_K, make([]byte, 143), xq, 256) },
		"short activations": func() { VecDot(Q4_K, make([]byte, 144), xq[:291], 256) },
		"bad n":             func() { VecDot(Q4_K, make([]byte, 144), xq, 255) },
		"unsupported":       func() { VecDot(IQ2_XXS, make([]byte, 66), xq, 256) },
		"matvec rows":       func() { MatVec(Q4_K, make([]byte, 144), xq, 256, make([]float32, 2)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
