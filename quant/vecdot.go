package quant

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
)

// CPU dot products, as ggml computes them: the activation vector is first
// converted to the weight type's "vec-dot type" (VecDotType), then each weight
// row is dotted with it using integer arithmetic inside blocks and one float
// multiply-add per block (two for the formats with a minimum).
//
// Typical use for y = W·x with W of type t, rows of n elements:
//
//	vt := quant.VecDotType(t)
//	xq := make([]byte, quant.ActivationBytes(t, n))
//	quant.QuantizeActivations(t, x, xq)
//	for r := range y {
//		y[r] = quant.VecDot(t, w[r*rowBytes:(r+1)*rowBytes], xq, n)
//	}

// VecDotType returns the type the activations are converted to before a dot
// product with a weight row of type t, as in ggml: Q8_0 for Q4_0, Q5_0 and
// Q8_0; Q8_1 for Q4_1 and Q5_1; Q8_K for the K-quants; F16 for F16, BF16 for
// BF16 and F32 for F32. It is idempotent (VecDotType(Q8_K) = Q8_K), and
// returns t itself for types without a dot product (see CanVecDot).
func VecDotType(t Type) Type {
	switch t {
	case Q4_0, Q5_0, Q8_0:
		return Q8_0
	case Q4_1, Q5_1, Q8_1:
		return Q8_1
	case Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K:
		return Q8_K
	}
	return t
}

// CanVecDot reports whether VecDot supports weight type t.
func CanVecDot(t Type) bool { return vecDotFuncs[t] != nil }

// ActivationBytes returns the size in bytes of n activations converted for a
// dot product with weight type t (RowBytes(VecDotType(t), n)), or -1 if n is
// not a valid row length for t.
func ActivationBytes(t Type, n int) int {
	if _, err := RowBytes(t, n); err != nil {
		return -1
	}
	nb, err := RowBytes(VecDotType(t), n)
	if err != nil {
		return -1
	}
	return nb
}

// QuantizeActivations converts the activations x to VecDotType(t) (t may be
// the weight type or the vec-dot type itself), writing exactly
// RowBytes(VecDotType(t), len(x)) bytes to dst.
//
// Q8_0 and Q8_1 follow ggml's x86 AVX2 quantize_row_q8_0/q8_1 (d = amax/127,
// q = round-half-even(x*127/amax)), which is what llama.cpp computes on an
// x86 CPU; the reference quantizer (Quantize) divides by the f32 d and rounds
// half away from zero, which differs in rare last-bit cases. Q8_K is
// ggml's quantize_row_q8_K_ref. F32 writes the raw float32 bits, F16/BF16
// round to nearest even.
func QuantizeActivations(t Type, x []float32, dst []byte) error {
	vt := VecDotType(t)
	if err := checkSize(vt, len(x), len(dst)); err != nil {
		return fmt.Errorf("quant: quantize activations for %s: %w", t, err)
	}
	switch vt {
	case Q8_0:
		actQ8_0(x, dst)
	case Q8_1:
		quantActQ8_1(x, dst)
	case Q8_K:
		actQ8_K(x, dst)
	case F32:
		quantF32(x, dst)
	case F16:
		quantF16(x, dst)
	case BF16:
		quantBF16(x, dst)
	default:
		return fmt.Errorf("quant: quantize activations for %s: %w", t, ErrUnsupported)
	}
	return nil
}

// actQ8_0 and actQ8_K quantize activations for QuantizeActivations: the Go
// functions below, or bit-identical assembly where the CPU has it
// (quantact_amd64.go).
var actQ8_0, actQ8_K = quantActQ8_0, quantQ8_K

func quantActQ8_0(src []float32, dst []byte) {
	for b := 0; b < len(src)/QK; b++ {
		x := (*[32]float32)(src[b*32:])
		blk := (*[34]byte)(dst[b*34:])
		amax, _ := absMax(x[:])
		putF16(blk[0:], amax/127)
		var id float32
		if amax != 0 {
			id = 127 / amax
		}
		for j := 0; j < 32; j++ {
			blk[2+j] = byte(int8(nearestInt(x[j] * id)))
		}
	}
}

func quantActQ8_1(src []float32, dst []byte) {
	for b := 0; b < len(src)/QK; b++ {
		x := (*[32]float32)(src[b*32:])
		blk := (*[36]byte)(dst[b*36:])
		amax, _ := absMax(x[:])
		d := amax / 127
		var id float32
		if amax != 0 {
			id = 127 / amax
		}
		var sum int32
		for j := 0; j < 32; j++ {
			q := nearestInt(x[j] * id)
			sum += q
			blk[4+j] = byte(int8(q))
		}
		putF16(blk[0:], d)
		putF16(blk[2:], d*float32(sum))
	}
}

// VecDot returns the dot product of one weight row of type t (n elements,
// RowBytes(t, n) bytes) with activations xq already converted by
// QuantizeActivations (RowBytes(VecDotType(t), n) bytes). It panics if the
// type has no dot product or the buffers have the wrong sizes (programmer
// errors: validate tensors once, at load time).
func VecDot(t Type, row []byte, xq []byte, n int) float32 {
	f := vecDotFuncs[t]
	if f == nil {
		panic(fmt.Sprintf("quant: VecDot: no dot product for %s", t))
	}
	if err := checkSize(t, n, len(row)); err != nil {
		panic("quant: VecDot weights: " + err.Error())
	}
	if err := checkSize(VecDotType(t), n, len(xq)); err != nil {
		panic("quant: VecDot activations: " + err.Error())
	}
	return f(row, xq, n)
}

// MatVec computes out[r] = VecDot(t, row r of w, xq, n) for r < len(out),
// where w holds len(out) consecutive rows of RowBytes(t, n) bytes. It is
// DotRows with rowBytes = RowBytes(t, n) and an exact size check.
func MatVec(t Type, w []byte, xq []byte, n int, out []float32) {
	f := vecDotFuncs[t]
	if f == nil {
		panic(fmt.Sprintf("quant: MatVec: no dot product for %s", t))
	}
	rb, err := RowBytes(t, n)
	if err != nil {
		panic("quant: MatVec: " + err.Error())
	}
	if len(w) != rb*len(out) {
		panic(fmt.Sprintf("quant: MatVec: %d rows of %s need %d bytes, found %d", len(out), t, rb*len(out), len(w)))
	}
	if err := checkSize(VecDotType(t), n, len(xq)); err != nil {
		panic("quant: MatVec activations: " + err.Error())
	}
	r := 0
	if m := multiRowFuncs[t]; m != nil {
		r = m(w, rb, xq, n, out)
	}
	for ; r < len(out); r++ {
		out[r] = f(w[r*rb:(r+1)*rb], xq, n)
	}
}

// genericDotFuncs are the portable Go dot products; vecDotFuncs starts as a
// copy and the architecture files (dot_amd64.go) replace entries with
// assembly versions when the CPU has the instructions.
var genericDotFuncs = map[Type]func(row, xq []byte, n int) float32{
	F32:  dotF32,
	F16:  dotF16,
	BF16: dotBF16,
	Q4_0: dotQ4_0,
	Q4_1: dotQ4_1,
	Q5_0: dotQ5_0,
	Q5_1: dotQ5_1,
	Q8_0: dotQ8_0,
	Q2_K: dotQ2_K,
	Q3_K: dotQ3_K,
	Q4_K: dotQ4_K,
	Q5_K: dotQ5_K,
	Q6_K: dotQ6_K,
}

var vecDotFuncs = maps.Clone(genericDotFuncs)

// dotF32 sums in eight float32 lanes, like an AVX2 loop.
func dotF32(row, xq []byte, n int) float32 {
	row, xq = row[:4*n], xq[:4*n]
	var s [8]float32
	i := 0
	for ; i+8 <= n; i += 8 {
		a := (*[32]byte)(row[4*i:])
		b := (*[32]byte)(xq[4*i:])
		for k := 0; k < 8; k++ {
			s[k] += math.Float32frombits(binary.LittleEndian.Uint32(a[4*k:])) *
				math.Float32frombits(binary.LittleEndian.Uint32(b[4*k:]))
		}
	}
	var tail float32
	for ; i < n; i++ {
		tail += math.Float32frombits(binary.LittleEndian.Uint32(row[4*i:])) *
			math.Float32frombits(binary.LittleEndian.Uint32(xq[4*i:]))
	}
	return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail
}

func dotF16(row, xq []byte, n int) float32 {
	row, xq = row[:2*n], xq[:2*n]
	var s [4]float32
	i := 0
	for ; i+4 <= n; i += 4 {
		a := (*[8]byte)(row[2*i:])
		b := (*[8]byte)(xq[2*i:])
		for k := 0; k < 4; k++ {
			s[k] += f16Table[binary.LittleEndian.Uint16(a[2*k:])] * f16Table[binary.LittleEndian.Uint16(b[2*k:])]
		}
	}
	for ; i < n; i++ {
		s[0] += f16(row[2*i:]) * f16(xq[2*i:])
	}
	return (s[0] + s[1]) + (s[2] + s[3])
}

func dotBF16(row, xq []byte, n int) float32 {
	row, xq = row[:2*n], xq[:2*n]
	var s [4]float32
	i := 0
	for ; i+4 <= n; i += 4 {
		a := (*[8]byte)(row[2*i:])
		b := (*[8]byte)(xq[2*i:])
		for k := 0; k < 4; k++ {
			s[k] += BF16ToF32(binary.LittleEndian.Uint16(a[2*k:])) * BF16ToF32(binary.LittleEndian.Uint16(b[2*k:]))
		}
	}
	for ; i < n; i++ {
		s[0] += BF16ToF32(binary.LittleEndian.Uint16(row[2*i:])) * BF16ToF32(binary.LittleEndian.Uint16(xq[2*i:]))
	}
	return (s[0] + s[1]) + (s[2] + s[3])
}

// i8 reads byte b as a signed 8-bit integer widened to int32.
func i8(b byte) int32 { return int32(int8(b)) }

// dotNibbles16 is the building block of Q4_0/Q4_1: over j < 16 it returns
// lo = Σ (q[j]&15)*y[j] and hi = Σ (q[j]>>4)*y[j+16].
func dotNibbles16(q *[16]byte, y *[32]byte) (lo, hi int32) {
	for j := 0; j < 16; j += 4 {
		lo += int32(q[j]&0xf)*i8(y[j]) + int32(q[j+1]&0xf)*i8(y[j+1]) +
			int32(q[j+2]&0xf)*i8(y[j+2]) + int32(q[j+3]&0xf)*i8(y[j+3])
		hi += int32(q[j]>>4)*i8(y[j+16]) + int32(q[j+1]>>4)*i8(y[j+17]) +
			int32(q[j+2]>>4)*i8(y[j+18]) + int32(q[j+3]>>4)*i8(y[j+19])
	}
	return
}

// The weight types with Q8_0 activations (Q4_0, Q5_0, Q8_0) share one
// summation order, "eight lanes", chosen so that SIMD kernels (AVX2, and
// AVX-512 VNNI with its 4-byte integer multiply-add) compute exactly the same
// float32 operations: within block b, lane l (0..7) holds the exact integer
// sum over the four elements 4l..4l+3 of w*y (w the signed weight value);
// each lane keeps its own float32 sum over the blocks,
//
//	s[l] = fma(d_b, float32(isum_l), s[l])   (d_b = float32(d_x*d_y); one rounding, as VFMADD231PS)
//
// and the row's result is ((s0+s4)+(s2+s6)) + ((s1+s5)+(s3+s7)).
// dotLanes8 does the float part for one block.
func dotLanes8(s *[8]float32, d float32, is *[8]int32) {
	dd := float64(d)
	for l := range 8 {
		// fma32(d, float32(is[l]), s[l]), its common case inline.
		p := float64(dd * float64(is[l]))
		z := float64(s[l])
		r := p + z
		if u := math.Float64bits(r); u&(1<<29-1) != 1<<28 && u>>52&0x7ff >= 0x381 {
			s[l] = float32(r)
		} else {
			s[l] = fma32Slow(p, z, r)
		}
	}
}

// fma32 returns a*b+c rounded once to float32 (round to nearest even), as a
// float32 fused multiply-add instruction does. math.FMA rounds to float64,
// and rounding that again to float32 can differ (a float64 result on a
// float32 halfway point); so the float64 sum is rounded to odd (its last
// bit set where the sum was inexact) before the conversion, which makes the
// conversion correctly rounded (53 ≥ 2·24+2 bits). The product is exact in
// float64 (24+24 bits).
func fma32(a, b, c float32) float32 {
	p := float64(float64(a) * float64(b))
	z := float64(c)
	r := p + z
	// Rounding r again is wrong only where r is a float32 halfway point
	// (low 29 bits 1<<28) or where float32 results are subnormal (fewer
	// bits): elsewhere the conversion is that of the exact sum.
	if u := math.Float64bits(r); u&(1<<29-1) != 1<<28 && u>>52&0x7ff >= 0x381 {
		return float32(r)
	}
	return fma32Slow(p, z, r)
}

// fma32Slow rounds p+z (r = p+z rounded to float64) once to float32 (kept
// out of line so that fma32 inlines).
//
//go:noinline
func fma32Slow(p, z, r float64) float32 {
	// Two-sum: e is the exact error of r (NaN when r is infinite or NaN).
	bv := r - p
	e := (p - (r - bv)) + (z - bv)
	if e > 0 || e < 0 {
		if u := math.Float64bits(r); u&1 == 0 {
			if (e > 0) == (r > 0) {
				u++ // exact value beyond r: round to odd away from zero
			} else {
				u-- // exact value short of r: toward zero
			}
			r = math.Float64frombits(u)
		}
	}
	return float32(r)
}

// sumLanes8 is the final reduction of the eight lanes.
func sumLanes8(s *[8]float32) float32 {
	return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]))
}

// dotQ4_0: Σ_b d_x*d_y * Σ_j (q_j-8)*y_j, in eight lanes.
func dotQ4_0(row, xq []byte, n int) float32 {
	var s [8]float32
	var is [8]int32
	for b := 0; b < n/QK; b++ {
		x := (*[18]byte)(row[b*18:])
		y := (*[34]byte)(xq[b*34:])
		q := (*[16]byte)(x[2:])
		yq := (*[32]byte)(y[2:])
		for l := range 4 {
			var a, c int32
			for k := 4 * l; k < 4*l+4; k++ {
				a += (int32(q[k]&0xf) - 8) * i8(yq[k])
				c += (int32(q[k]>>4) - 8) * i8(yq[k+16])
			}
			is[l], is[l+4] = a, c
		}
		dotLanes8(&s, f16(x[0:])*f16(y[0:]), &is)
	}
	return sumLanes8(&s)
}

// dotQ4_1: Σ_b d_x*d_y*Σ q*y + m_x*s_y (s_y = d_y*Σ y from Q8_1).
func dotQ4_1(row, xq []byte, n int) float32 {
	var sum float32
	for b := 0; b < n/QK; b++ {
		x := (*[20]byte)(row[b*20:])
		y := (*[36]byte)(xq[b*36:])
		lo, hi := dotNibbles16((*[16]byte)(x[4:]), (*[32]byte)(y[4:]))
		sum += f16(x[0:])*f16(y[0:])*float32(lo+hi) + f16(x[2:])*f16(y[2:])
	}
	return sum
}

// dotNibbles5 returns Σ q_j*y_j over a Q5_0/Q5_1 block's 32 unsigned 5-bit
// quants (nibbles of q, 5th bits in qh).
func dotNibbles5(q *[16]byte, qh uint32, y *[32]byte) int32 {
	var s0, s1 int32
	for j := 0; j < 16; j += 2 {
		s0 += int32(uint32(q[j]&0xf)|(qh>>j&1)<<4)*i8(y[j]) +
			int32(uint32(q[j+1]&0xf)|(qh>>(j+1)&1)<<4)*i8(y[j+1])
		s1 += int32(uint32(q[j]>>4)|(qh>>(j+16)&1)<<4)*i8(y[j+16]) +
			int32(uint32(q[j+1]>>4)|(qh>>(j+17)&1)<<4)*i8(y[j+17])
	}
	return s0 + s1
}

// dotQ5_0: Σ_b d_x*d_y * Σ (q-16)*y, in eight lanes.
func dotQ5_0(row, xq []byte, n int) float32 {
	var s [8]float32
	var is [8]int32
	for b := 0; b < n/QK; b++ {
		x := (*[22]byte)(row[b*22:])
		y := (*[34]byte)(xq[b*34:])
		qh := binary.LittleEndian.Uint32(x[2:])
		q := (*[16]byte)(x[6:])
		yq := (*[32]byte)(y[2:])
		for l := range 4 {
			var a, c int32
			for k := 4 * l; k < 4*l+4; k++ {
				a += (int32(uint32(q[k]&0xf)|(qh>>k&1)<<4) - 16) * i8(yq[k])
				c += (int32(uint32(q[k]>>4)|(qh>>(k+16)&1)<<4) - 16) * i8(yq[k+16])
			}
			is[l], is[l+4] = a, c
		}
		dotLanes8(&s, f16(x[0:])*f16(y[0:]), &is)
	}
	return sumLanes8(&s)
}

// dotQ5_1: Σ_b d_x*d_y*Σ q*y + m_x*s_y.
func dotQ5_1(row, xq []byte, n int) float32 {
	var sum float32
	for b := 0; b < n/QK; b++ {
		x := (*[24]byte)(row[b*24:])
		y := (*[36]byte)(xq[b*36:])
		yq := (*[32]byte)(y[4:])
		s := dotNibbles5((*[16]byte)(x[8:]), binary.LittleEndian.Uint32(x[4:]), yq)
		sum += f16(x[0:])*f16(y[0:])*float32(s) + f16(x[2:])*f16(y[2:])
	}
	return sum
}

// dotQ8_0: Σ_b d_x*d_y * Σ q_x*q_y, in eight lanes.
func dotQ8_0(row, xq []byte, n int) float32 {
	var s [8]float32
	var is [8]int32
	for b := 0; b < n/QK; b++ {
		x := (*[34]byte)(row[b*34:])
		y := (*[34]byte)(xq[b*34:])
		a := (*[32]byte)(x[2:])
		c := (*[32]byte)(y[2:])
		for l := range 8 {
			j := 4 * l
			is[l] = i8(a[j])*i8(c[j]) + i8(a[j+1])*i8(c[j+1]) + i8(a[j+2])*i8(c[j+2]) + i8(a[j+3])*i8(c[j+3])
		}
		dotLanes8(&s, f16(x[0:])*f16(y[0:]), &is)
	}
	return sumLanes8(&s)
}

// q8kD returns the f32 scale of a Q8_K block.
func q8kD(y *[292]byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(y[0:])) }

// bsum returns the i-th group-of-16 sum of a Q8_K block.
func bsum(y *[292]byte, i int) int32 {
	return int32(int16(binary.LittleEndian.Uint16(y[260+2*i:])))
}

// dotQ2_K: Σ_blocks d*Σ_sub sc*Σ q*y - dmin*Σ_sub m*bsum, d and dmin scaled by
// the Q8_K d.
func dotQ2_K(row, xq []byte, n int) float32 {
	var sum float32
	for b := 0; b < n/QKK; b++ {
		x := (*[84]byte)(row[b*84:])
		y := (*[292]byte)(xq[b*292:])
		sc := (*[16]byte)(x[0:])
		var sumi, summ int32
		for i := 0; i < 16; i++ {
			summ += int32(sc[i]>>4) * bsum(y, i)
		}
		is := 0
		for h := 0; h < 2; h++ {
			q := (*[32]byte)(x[16+32*h:])
			for s := uint(0); s < 8; s += 2 {
				yy := (*[32]byte)(y[4+128*h+16*int(s):])
				var a, c int32
				for l := 0; l < 16; l += 4 {
					a += int32(q[l]>>s&3)*i8(yy[l]) + int32(q[l+1]>>s&3)*i8(yy[l+1]) +
						int32(q[l+2]>>s&3)*i8(yy[l+2]) + int32(q[l+3]>>s&3)*i8(yy[l+3])
					c += int32(q[l+16]>>s&3)*i8(yy[l+16]) + int32(q[l+17]>>s&3)*i8(yy[l+17]) +
						int32(q[l+18]>>s&3)*i8(yy[l+18]) + int32(q[l+19]>>s&3)*i8(yy[l+19])
				}
				sumi += int32(sc[is]&0xf)*a + int32(sc[is+1]&0xf)*c
				is += 2
			}
		}
		yd := q8kD(y)
		sum += yd*f16(x[80:])*float32(sumi) - yd*f16(x[82:])*float32(summ)
	}
	return sum
}

// dotQ3_K: Σ_blocks d * Σ_sub (sc-32) * Σ q*y with q in -4..3.
func dotQ3_K(row, xq []byte, n int) float32 {
	var sum float32
	var sc [16]int32
	for b := 0; b < n/QKK; b++ {
		x := (*[110]byte)(row[b*110:])
		y := (*[292]byte)(xq[b*292:])
		hm0 := (*[16]byte)(x[0:])
		hm1 := (*[16]byte)(x[16:])
		q3kScales((*[12]byte)(x[96:]), &sc)
		var sumi int32
		is := 0
		mb := uint(0)
		for h := 0; h < 2; h++ {
			q0 := (*[16]byte)(x[32+32*h:])
			q1 := (*[16]byte)(x[32+32*h+16:])
			for s := uint(0); s < 8; s += 2 {
				y0 := (*[16]byte)(y[4+128*h+16*int(s):])
				y1 := (*[16]byte)(y[4+128*h+16*int(s)+16:])
				var a, c int32
				for l := 0; l < 16; l++ {
					// q = low 2 bits - 4 + 4*high bit, in -4..3
					v0 := int32(q0[l]>>s&3) - 4 + int32(hm0[l]>>mb&1)<<2
					v1 := int32(q1[l]>>s&3) - 4 + int32(hm1[l]>>mb&1)<<2
					a += v0 * i8(y0[l])
					c += v1 * i8(y1[l])
				}
				sumi += sc[is]*a + sc[is+1]*c
				is += 2
				mb++
			}
		}
		sum += f16(x[108:]) * q8kD(y) * float32(sumi)
	}
	return sum
}

// dotQ4_K: Σ_blocks d*Σ_sub sc*Σ q*y - dmin*Σ_sub m*(bsum_2k + bsum_2k+1).
func dotQ4_K(row, xq []byte, n int) float32 {
	var sum float32
	for b := 0; b < n/QKK; b++ {
		x := (*[144]byte)(row[b*144:])
		y := (*[292]byte)(xq[b*292:])
		scales := (*[12]byte)(x[4:])
		var sumi, summ int32
		for c := 0; c < 4; c++ {
			q := (*[32]byte)(x[16+32*c:])
			y1 := (*[32]byte)(y[4+64*c:])
			y2 := (*[32]byte)(y[4+64*c+32:])
			var a, e int32
			for l := 0; l < 32; l += 4 {
				a += int32(q[l]&0xf)*i8(y1[l]) + int32(q[l+1]&0xf)*i8(y1[l+1]) +
					int32(q[l+2]&0xf)*i8(y1[l+2]) + int32(q[l+3]&0xf)*i8(y1[l+3])
				e += int32(q[l]>>4)*i8(y2[l]) + int32(q[l+1]>>4)*i8(y2[l+1]) +
					int32(q[l+2]>>4)*i8(y2[l+2]) + int32(q[l+3]>>4)*i8(y2[l+3])
			}
			s1, m1 := scaleMinK4(2*c, scales)
			s2, m2 := scaleMinK4(2*c+1, scales)
			sumi += int32(s1)*a + int32(s2)*e
			summ += int32(m1)*(bsum(y, 4*c)+bsum(y, 4*c+1)) + int32(m2)*(bsum(y, 4*c+2)+bsum(y, 4*c+3))
		}
		yd := q8kD(y)
		// Explicit conversions: no fused multiply-add (the assembly's order).
		sum += float32(f16(x[0:])*yd*float32(sumi)) - float32(f16(x[2:])*yd*float32(summ))
	}
	return sum
}

// dotQ5_K: as Q4_K with the 5th bit from qh.
func dotQ5_K(row, xq []byte, n int) float32 {
	var sum float32
	for b := 0; b < n/QKK; b++ {
		x := (*[176]byte)(row[b*176:])
		y := (*[292]byte)(xq[b*292:])
		scales := (*[12]byte)(x[4:])
		qh := (*[32]byte)(x[16:])
		var sumi, summ int32
		for c := 0; c < 4; c++ {
			q := (*[32]byte)(x[48+32*c:])
			y1 := (*[32]byte)(y[4+64*c:])
			y2 := (*[32]byte)(y[4+64*c+32:])
			u1, u2 := uint(2*c), uint(2*c+1)
			var a, e int32
			for l := 0; l < 32; l += 2 {
				a += int32(q[l]&0xf|(qh[l]>>u1&1)<<4)*i8(y1[l]) +
					int32(q[l+1]&0xf|(qh[l+1]>>u1&1)<<4)*i8(y1[l+1])
				e += int32(q[l]>>4|(qh[l]>>u2&1)<<4)*i8(y2[l]) +
					int32(q[l+1]>>4|(qh[l+1]>>u2&1)<<4)*i8(y2[l+1])
			}
			s1, m1 := scaleMinK4(2*c, scales)
			s2, m2 := scaleMinK4(2*c+1, scales)
			sumi += int32(s1)*a + int32(s2)*e
			summ += int32(m1)*(bsum(y, 4*c)+bsum(y, 4*c+1)) + int32(m2)*(bsum(y, 4*c+2)+bsum(y, 4*c+3))
		}
		yd := q8kD(y)
		sum += f16(x[0:])*yd*float32(sumi) - f16(x[2:])*yd*float32(summ)
	}
	return sum
}

// dotQ6_K: Σ_blocks d * Σ_sub sc * Σ (q-32)*y, computed as Σ q*y - 32*bsum.
func dotQ6_K(row, xq []byte, n int) float32 {
	var sum float32
	for b := 0; b < n/QKK; b++ {
		x := (*[210]byte)(row[b*210:])
		y := (*[292]byte)(xq[b*292:])
		var sumi int32
		for h := 0; h < 2; h++ {
			sc := (*[8]byte)(x[192+8*h:])
			// k selects elements 16k..16k+15 of each quarter of the half,
			// i.e. sub-blocks k, k+2, k+4, k+6.
			for k := 0; k < 2; k++ {
				qa := (*[16]byte)(x[64*h+16*k:])
				qb := (*[16]byte)(x[64*h+32+16*k:])
				qh := (*[16]byte)(x[128+32*h+16*k:])
				o := 4 + 128*h + 16*k
				y1 := (*[16]byte)(y[o:])
				y2 := (*[16]byte)(y[o+32:])
				y3 := (*[16]byte)(y[o+64:])
				y4 := (*[16]byte)(y[o+96:])
				var a1, a2, a3, a4 int32
				for l := 0; l < 16; l++ {
					a1 += int32(qa[l]&0xf|(qh[l]&3)<<4) * i8(y1[l])
					a2 += int32(qb[l]&0xf|(qh[l]>>2&3)<<4) * i8(y2[l])
					a3 += int32(qa[l]>>4|(qh[l]>>4&3)<<4) * i8(y3[l])
					a4 += int32(qb[l]>>4|(qh[l]>>6)<<4) * i8(y4[l])
				}
				g := 8*h + k
				sumi += i8(sc[k])*(a1-32*bsum(y, g)) + i8(sc[k+2])*(a2-32*bsum(y, g+2)) +
					i8(sc[k+4])*(a3-32*bsum(y, g+4)) + i8(sc[k+6])*(a4-32*bsum(y, g+6))
			}
		}
		sum += float32(f16(x[208:]) * q8kD(y) * float32(sumi))
	}
	return sum
}
