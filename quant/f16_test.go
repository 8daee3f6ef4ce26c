package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestF16ToF32(t *testing.T) {
	tests := []struct {
		h    uint16
		want float32
	}{
		{0x0000, 0},
		{0x3c00, 1},
		{0xc000, -2},
		{0x3800, 0.5},
		{0x3555, 0.333251953125},
		{0x7bff, 65504},                 // largest finite
		{0x0400, 1.0 / 16384},           // smallest normal 2^-14
		{0x0001, 1.0 / 16777216},        // smallest subnormal 2^-24
		{0x03ff, 1023.0 / 16777216},     // largest subnormal
		{0x8001, -1.0 / 16777216},       // negative subnormal
		{0x7c00, float32(math.Inf(1))},  // +Inf
		{0xfc00, float32(math.Inf(-1))}, // -Inf
		{0x4248, 3.140625},              // pi rounded
		{0x5640, 100},
	}
	for _, tc := range tests {
		if got := F16ToF32(tc.h); got != tc.want {
			t.Errorf("F16ToF32(%#04x) = %g, want %g", tc.h, got, tc.want)
		}
		if got := f16ToF32Slow(tc.h); got != tc.want {
			t.Errorf("f16ToF32Slow(%#04x) = %g, want %g", tc.h, got, tc.want)
		}
	}
	if got := F16ToF32(0x8000); got != 0 || !math.Signbit(float64(got)) {
		t.Errorf("F16ToF32(0x8000) = %g, want -0", got)
	}
	for _, h := range []uint16{0x7e00, 0x7c01, 0xfe00, 0x7fff} {
		if got := F16ToF32(h); !math.IsNaN(float64(got)) {
			t.Errorf("F16ToF32(%#04x) = %g, want NaN", h, got)
		}
	}
}

func TestF32ToF16(t *testing.T) {
	p := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	tests := []struct {
		name string
		f    float32
		want uint16
	}{
		{"zero", 0, 0x0000},
		{"neg zero", float32(math.Copysign(0, -1)), 0x8000},
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"max finite", 65504, 0x7bff},
		{"below overflow tie", 65519, 0x7bff},
		{"overflow tie to inf", 65520, 0x7c00},
		{"large", 1e10, 0x7c00},
		{"-large", -1e10, 0xfc00},
		{"+inf", float32(math.Inf(1)), 0x7c00},
		{"-inf", float32(math.Inf(-1)), 0xfc00},
		{"1+2^-11 tie to even (down)", 1 + p(-11), 0x3c00},
		{"1+3*2^-11 tie to even (up)", 1 + 3*p(-11), 0x3c02},
		{"1+2^-11+2^-20 above tie", 1 + p(-11) + p(-20), 0x3c01},
		{"smallest normal", p(-14), 0x0400},
		{"smallest subnormal", p(-24), 0x0001},
		{"half smallest subnormal ties to 0", p(-25), 0x0000},
		{"just above half smallest subnormal", p(-25) + p(-40), 0x0001},
		{"1.5 units ties to 2", 3 * p(-25), 0x0002},
		{"2.5 units ties to 2", 5 * p(-25), 0x0002},
		{"largest subnormal", 1023 * p(-24), 0x03ff},
		{"rounds up into normal", p(-14) - p(-25), 0x0400},
		{"tiny", 1e-30, 0x0000},
		{"-tiny", -1e-30, 0x8000},
		{"f32 subnormal", math.SmallestNonzeroFloat32, 0x0000},
		{"third", 1.0 / 3, 0x3555},
	}
	for _, tc := range tests {
		if got := F32ToF16(tc.f); got != tc.want {
			t.Errorf("%s: F32ToF16(%g) = %#04x, want %#04x", tc.name, tc.f, got, tc.want)
		}
	}
	nan := F32ToF16(float32(math.NaN()))
	if nan&0x7c00 != 0x7c00 || nan&0x3ff == 0 {
		t.Errorf("F32ToF16(NaN) = %#04x, not a NaN", nan)
	}
	// NaN with a payload only in the low bits must stay NaN.
	if h := F32ToF16(math.Float32frombits(0x7f800001)); h&0x3ff == 0 {
		t.Errorf("F32ToF16(NaN 0x7f800001) = %#04x, not a NaN", h)
	}
}

// Every half converts to float32 and back unchanged.
func TestF16RoundTripAll(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToF32(h)
		if math.IsNaN(float64(f)) {
			if g := F32ToF16(f); g&0x7c00 != 0x7c00 || g&0x3ff == 0 {
				t.Fatalf("NaN %#04x came back as %#04x", h, g)
			}
			continue
		}
		if g := F32ToF16(f); g != h {
			t.Fatalf("%#04x -> %g -> %#04x", h, f, g)
		}
	}
}

// F32ToF16 picks the nearest half (ties to even) for random float32 values,
// checked against the neighbouring halves in float64.
func TestF32ToF16Nearest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		// Exponents from 2^-27 to 2^17 cover zero-rounding, subnormals,
		// normals and overflow.
		f := float32(math.Ldexp(r.Float64()*2-1, r.IntN(45)-26))
		h := F32ToF16(f)
		got := float64(F16ToF32(h))
		if math.IsInf(got, 0) {
			if math.Abs(float64(f)) < 65520 {
				t.Fatalf("%g overflowed to %#04x", f, h)
			}
			continue
		}
		err := math.Abs(got - float64(f))
		for _, nb := range []uint16{h + 1, h - 1} {
			if nb&0x7c00 == 0x7c00 || (h&0x7fff == 0 && nb == h-1) {
				continue
			}
			e2 := math.Abs(float64(F16ToF32(nb)) - float64(f))
			if e2 < err || (e2 == err && h&1 == 1) {
				t.Fatalf("F32ToF16(%g) = %#04x (%g, err %g), but %#04x (%g) is at least as near", f, h, got, err, nb, F16ToF32(nb))
			}
		}
	}
}

func TestBF16(t *testing.T) {
	tests := []struct {
		name string
		bits uint32
		want uint16
	}{
		{"one", 0x3f800000, 0x3f80},
		{"tie to even down", 0x3f808000, 0x3f80},
		{"tie to even up", 0x3f818000, 0x3f82},
		{"above tie", 0x3f808001, 0x3f81},
		{"below tie", 0x3f807fff, 0x3f80},
		{"max float to inf", 0x7f7fffff, 0x7f80},
		{"inf", 0x7f800000, 0x7f80},
		{"-inf", 0xff800000, 0xff80},
		{"subnormal tie to 0", 0x00008000, 0x0000},
		{"subnormal tie up", 0x00018000, 0x0002},
		{"neg zero", 0x80000000, 0x8000},
		{"quiet nan", 0x7fc00000, 0x7fc0},
		{"signalling nan stays nan", 0x7f800001, 0x7fc0},
	}
	for _, tc := range tests {
		f := math.Float32frombits(tc.bits)
		if got := F32ToBF16(f); got != tc.want {
			t.Errorf("%s: F32ToBF16(%#08x) = %#04x, want %#04x", tc.name, tc.bits, got, tc.want)
		}
	}
	for _, tc := range []struct {
		h    uint16
		want float32
	}{{0x3f80, 1}, {0xc000, -2}, {0x4049, 3.140625}, {0x0001, math.Float32frombits(0x00010000)}} {
		if got := BF16ToF32(tc.h); got != tc.want {
			t.Errorf("BF16ToF32(%#04x) = %g, want %g", tc.h, got, tc.want)
		}
	}
	if !math.IsNaN(float64(BF16ToF32(0x7fc0))) {
		t.Error("BF16ToF32(0x7fc0) is not NaN")
	}
}
