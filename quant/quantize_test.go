package quant

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// gaussRow returns n seeded N(0, sigma²) values.
func gaussRow(seed uint64, n int, sigma float64) []float32 {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * sigma)
	}
	return x
}

func roundTrip(t testing.TB, typ Type, x []float32) []float32 {
	t.Helper()
	nb, err := RowBytes(typ, len(x))
	if err != nil {
		t.Fatal(err)
	}
	q := make([]byte, nb)
	if err := Quantize(typ, x, q); err != nil {
		t.Fatal(err)
	}
	y := make([]float32, len(x))
	if err := Dequantize(typ, q, y); err != nil {
		t.Fatal(err)
	}
	return y
}

func relRMS(x, y []float32) float64 {
	var se, sx float64
	for i := range x {
		d := float64(y[i]) - float64(x[i])
		se += d * d
		sx += float64(x[i]) * float64(x[i])
	}
	return math.Sqrt(se / sx)
}

// The bounds are relative RMS errors (rms(dequant(quant(x)) - x) / rms(x))
// for N(0,1) rows of 4096 elements. For a uniform grid with step Δ the
// rounding error has RMS Δ/√12; with block absmax a ≈ 2.2σ (32 elements) or
// ≈ 2.8σ (256 elements). Measured values (seed 1) in brackets:
//
//	Q8_0  Δ = a/127                ≈ 0.005σ  [0.0052]  bound 0.008
//	Q8_K  Δ = a/127 (256)          ≈ 0.0065σ [0.0068]  bound 0.009
//	Q4_0  Δ = a/8, asymmetric      ≈ 0.08σ   [0.085]   bound 0.095
//	Q4_1  Δ = (max-min)/15         ≈ 0.08σ   [0.077]   bound 0.09
//	Q5_0  Δ = a/16                 ≈ 0.04σ   [0.043]   bound 0.05
//	Q5_1  Δ = (max-min)/31         ≈ 0.04σ   [0.038]   bound 0.045
//	Q4_K  searched 15-level grid per 32, 6-bit scales  [0.071]  bound 0.08
//	Q5_K  searched 31-level grid per 32                 [0.036]  bound 0.042
//	Q6_K  searched 64-level grid per 16, 8-bit scales   [0.018]  bound 0.02
//	F16   relative step 2^-10: ≈ 2^-10/√12·0.8 [2.1e-4] bound 3.5e-4
//	BF16  relative step 2^-7                   [1.7e-3] bound 3e-3
var rmsBounds = []struct {
	t     Type
	bound float64
}{
	{F32, 0},
	{F16, 3.5e-4},
	{BF16, 3e-3},
	{Q8_0, 0.008},
	{Q8_1, 0.008},
	{Q8_K, 0.009},
	{Q4_0, 0.095},
	{Q4_1, 0.09},
	{Q5_0, 0.05},
	{Q5_1, 0.045},
	{Q4_K, 0.08},
	{Q5_K, 0.042},
	{Q6_K, 0.02},
}

func TestQuantizeRoundTripRMS(t *testing.T) {
	for _, tc := range rmsBounds {
		t.Run(tc.t.String(), func(t *testing.T) {
			for seed := uint64(1); seed <= 3; seed++ {
				x := gaussRow(seed, 4096, 1)
				got := relRMS(x, roundTrip(t, tc.t, x))
				if seed == 1 {
					t.Logf("%s relative RMS error %.5f (bound %.5f)", tc.t, got, tc.bound)
				}
				if got > tc.bound {
					t.Errorf("seed %d: relative RMS error %.5f > %.5f", seed, got, tc.bound)
				}
				// Scale invariance: the same data scaled by 1e-3 or 1e3
				// quantizes equally well (f16 scales have the range).
				for _, s := range []float32{1e-3, 1e3} {
					xs := make([]float32, len(x))
					for i := range x {
						xs[i] = x[i] * s
					}
					if g := relRMS(xs, roundTrip(t, tc.t, xs)); g > tc.bound*1.05 {
						t.Errorf("seed %d scale %g: relative RMS error %.5f > %.5f", seed, s, g, tc.bound)
					}
				}
			}
		})
	}
}

// Q8_0: every element is within half a quantization step (d/2), plus the
// error from storing d as f16 (|q| ≤ 127 times d's rounding error).
func TestQuantizeQ8_0ElementBound(t *testing.T) {
	x := gaussRow(7, 1024, 3)
	y := roundTrip(t, Q8_0, x)
	for b := 0; b < len(x)/32; b++ {
		amax, _ := absMax(x[32*b : 32*b+32])
		d := float64(amax) / 127
		d16 := float64(F16ToF32(F32ToF16(amax / 127)))
		bound := d/2 + 127*math.Abs(d16-d) + 1e-7
		for i := 32 * b; i < 32*b+32; i++ {
			if e := math.Abs(float64(y[i] - x[i])); e > bound {
				t.Fatalf("element %d: |%g - %g| = %g > %g", i, y[i], x[i], e, bound)
			}
		}
	}
}

// The K-quants' iterative search must beat (or equal) a plain min/max grid
// with the same storage format, block by block on average.
func TestQ4KSearchBeatsMinMax(t *testing.T) {
	x := gaussRow(11, 32*64, 1)
	var wsum [32]float32
	var L, laux [32]uint8
	var errSearch, errPlain float64
	for b := 0; b < len(x)/32; b++ {
		xs := x[32*b : 32*b+32]
		var s2 float32
		for _, v := range xs {
			s2 += v * v
		}
		av := float32(math.Sqrt(float64(s2 / 32)))
		for i, v := range xs {
			wsum[i] = av + abs32(v)
		}
		for _, steps := range []int{-1, 20} {
			scale, negMin := makeQKX2Quants(15, xs, wsum[:], L[:], laux[:], -1, 0.1, steps)
			var e float64
			for i, v := range xs {
				d := float64(scale)*float64(L[i]) - float64(negMin) - float64(v)
				e += float64(wsum[i]) * d * d
			}
			if steps < 0 {
				errPlain += e
			} else {
				errSearch += e
			}
		}
	}
	t.Logf("weighted squared error: min/max grid %.4f, search %.4f", errPlain, errSearch)
	if errSearch > errPlain {
		t.Errorf("search error %.4f > min/max error %.4f", errSearch, errPlain)
	}
	if errSearch > 0.9*errPlain {
		t.Errorf("search improves too little: %.4f vs %.4f", errSearch, errPlain)
	}
}

func TestQuantizeSpecialRows(t *testing.T) {
	n := 512
	rows := map[string][]float32{
		"zeros":    make([]float32, n),
		"constant": fill(n, func(int) float32 { return 0.75 }),
		"negative": fill(n, func(i int) float32 { return -1 - float32(i%7) }),
		"outlier":  fill(n, func(i int) float32 { return map[bool]float32{true: 1000, false: 0.01 * float32(i%5)}[i == 100] }),
		"tiny":     fill(n, func(i int) float32 { return 1e-30 * float32(i%3-1) }),
	}
	for _, tc := range rmsBounds {
		for name, x := range rows {
			y := roundTrip(t, tc.t, x)
			var amax float64
			for _, v := range x {
				amax = max(amax, math.Abs(float64(v)))
			}
			for i, v := range y {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("%s %s: element %d = %g", tc.t, name, i, v)
				}
				// No element may come back far outside the input's range.
				if math.Abs(float64(v)) > 1.1*amax+1e-6 {
					t.Errorf("%s %s: element %d = %g, input absmax %g", tc.t, name, i, v, amax)
					break
				}
			}
			if name == "zeros" {
				for i, v := range y {
					if v != 0 {
						t.Fatalf("%s zeros: element %d = %g", tc.t, i, v)
					}
				}
			}
			if name == "constant" || name == "negative" {
				if e := relRMS(x, y); e > 2*boundOf(tc.t)+1e-3 {
					t.Errorf("%s %s: relative RMS error %g", tc.t, name, e)
				}
			}
		}
	}
}

func boundOf(t Type) float64 {
	for _, b := range rmsBounds {
		if b.t == t {
			return b.bound
		}
	}
	return 0
}

func fill(n int, f func(int) float32) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = f(i)
	}
	return x
}

func TestQuantizeErrors(t *testing.T) {
	tests := []struct {
		t      Type
		n      int
		nbytes int
		target error
	}{
		{Q4_K, 128, 72, ErrRowSize},
		{Q6_K, 4000, 3281, ErrRowSize},
		{Q8_0, 48, 51, ErrRowSize},
		{Q4_0, 64, 35, ErrBufferSize},
		{Q4_K, 512, 144, ErrBufferSize},
		{IQ4_NL, 32, 18, ErrUnsupported},
		{Q2_K, 256, 84, ErrUnsupported},
	}
	for _, tc := range tests {
		err := Quantize(tc.t, make([]float32, tc.n), make([]byte, tc.nbytes))
		if !errors.Is(err, tc.target) {
			t.Errorf("Quantize(%s, %d elements, %d bytes) = %v, want %v", tc.t, tc.n, tc.nbytes, err, tc.target)
		}
	}
	if _, err := QuantizeAppend(Q4_K, nil, make([]float32, 100)); !errors.Is(err, ErrRowSize) {
		t.Errorf("QuantizeAppend(Q4_K, 100) = %v, want ErrRowSize", err)
	}
	b, err := QuantizeAppend(Q8_0, []byte{1, 2}, make([]float32, 64))
	if err != nil || len(b) != 2+68 || b[0] != 1 {
		t.Errorf("QuantizeAppend: len %d, err %v", len(b), err)
	}
}

// The K-quant layouts written by Quantize are the ones Dequantize reads:
// quantizing an already-representable row reproduces it exactly.
func TestQuantizeFixedPoint(t *testing.T) {
	for _, typ := range []Type{Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, Q8_K, F16, BF16} {
		x := gaussRow(21, 1024, 1)
		y := roundTrip(t, typ, x)
		z := roundTrip(t, typ, y)
		if e := relRMS(y, z); e > boundOf(typ)/3 {
			t.Errorf("%s: requantizing a dequantized row moved it by relative RMS %g", typ, e)
		}
	}
}
