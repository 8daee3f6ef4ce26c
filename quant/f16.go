package quant

import "math"

// IEEE 754 binary16 ("half", ggml F16) and bfloat16 (ggml BF16) conversions.
//
// F16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
// BF16: the top 16 bits of a float32: 1 sign bit, 8 exponent bits (bias
// 127), 7 mantissa bits.

// f16Table maps every binary16 bit pattern to its float32 value. 256 KiB,
// built once at package initialisation (about 0.1 ms).
var f16Table = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = f16ToF32Slow(uint16(i))
	}
	return &t
}()

// F16ToF32 converts an IEEE 754 binary16 value to float32. The conversion is
// exact: every half value, subnormals, infinities and NaNs included, has a
// float32 representation (NaN payloads are kept).
func F16ToF32(h uint16) float32 { return f16Table[h] }

// f16ToF32Slow converts with bit manipulation; it builds f16Table.
func f16ToF32Slow(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0: // ±0
		return math.Float32frombits(sign)
	default: // subnormal: mant * 2^-24, exactly representable
		f := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
}

// F32ToF16 converts a float32 to IEEE 754 binary16 with round-to-nearest,
// ties-to-even (what F16C's vcvtps2ph and ggml do). Values too large for a
// half become ±Inf, values too small become signed zero or a subnormal, and
// NaN stays a (quiet) NaN with the sign and the top payload bits kept.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00 // ±Inf
		}
		return sign | 0x7e00 | uint16(mant>>13) // quiet NaN
	}
	// Unbiased exponent, re-biased for half.
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00 // overflow
	}
	if e <= 0 {
		// Subnormal half (or zero): the result counts units of 2^-24. The
		// value is m*2^(exp-150) with m the 24-bit mantissa including the
		// implicit one, so the unit count is m >> (126-exp) = m >> (14-e),
		// rounded to nearest even.
		if e < -10 {
			return sign // rounds to zero (even below half the smallest subnormal)
		}
		m := mant | 0x800000
		shift := uint32(14 - e) // 14..24
		half := uint32(1) << (shift - 1)
		q := m >> shift
		rem := m & (1<<shift - 1)
		if rem > half || (rem == half && q&1 == 1) {
			q++ // may carry into the smallest normal: still correct bits
		}
		return sign | uint16(q)
	}
	// Normal: drop 13 mantissa bits with RNE; a carry may bump the exponent,
	// up to Inf, which is the correct result.
	v := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && v&1 == 1) {
		v++
	}
	return sign | uint16(v)
}

// BF16ToF32 converts a bfloat16 value to float32 (exact: the bits are the top
// half of the float32).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 converts a float32 to bfloat16 with round-to-nearest, ties-to-even,
// as ggml does: NaN becomes a quiet NaN, overflow rounds to ±Inf, subnormals
// are rounded, not flushed.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40 // quiet NaN
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}
