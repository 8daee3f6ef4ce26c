package quant

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Quantize converts len(src) float32 values to type t, writing exactly
// RowBytes(t, len(src)) bytes to dst (which must have that length). It
// follows ggml's reference quantizers (quantize_row_*_ref), including the
// iterative scale/min searches of the K-quants, so the output matches
// llama.cpp's in layout and quality (bit equality is not promised: ggml's
// searches are sensitive to float evaluation order).
//
// Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q4_K, Q5_K,
// Q6_K, Q8_K. src may hold several rows: blocks never straddle rows.
func Quantize(t Type, src []float32, dst []byte) error {
	f := quantFuncs[t]
	if f == nil {
		return fmt.Errorf("quant: quantize to %s: %w", t, ErrUnsupported)
	}
	if err := checkSize(t, len(src), len(dst)); err != nil {
		return fmt.Errorf("quant: quantize: %w", err)
	}
	f(src, dst)
	return nil
}

// QuantizeAppend quantizes src to type t and appends the bytes to dst,
// returning the extended slice.
func QuantizeAppend(t Type, dst []byte, src []float32) ([]byte, error) {
	n, err := RowBytes(t, len(src))
	if err != nil {
		return dst, fmt.Errorf("quant: quantize: %w", err)
	}
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	if err := Quantize(t, src, dst[start:]); err != nil {
		return dst[:start], err
	}
	return dst, nil
}

// CanQuantize reports whether Quantize supports t.
func CanQuantize(t Type) bool { return quantFuncs[t] != nil }

var quantFuncs map[Type]func([]float32, []byte)

func init() {
	quantFuncs = map[Type]func([]float32, []byte){
		F32:  quantF32,
		F16:  quantF16,
		BF16: quantBF16,
		Q4_0: quantQ4_0,
		Q4_1: quantQ4_1,
		Q5_0: quantQ5_0,
		Q5_1: quantQ5_1,
		Q8_0: quantQ8_0,
		Q8_1: quantQ8_1,
		Q4_K: quantQ4_K,
		Q5_K: quantQ5_K,
		Q6_K: quantQ6_K,
		Q8_K: quantQ8_K,
	}
}

func putF16(b []byte, f float32) { binary.LittleEndian.PutUint16(b, F32ToF16(f)) }

// roundAway rounds half away from zero, like C's roundf.
func roundAway(f float32) int32 { return int32(math.Round(float64(f))) }

// nearestInt rounds to nearest, ties to even, like ggml's nearest_int (which
// adds 1.5*2^23 in float32).
func nearestInt(f float32) int32 { return int32(math.RoundToEven(float64(f))) }

func clampI(v, lo, hi int32) int32 {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

func abs32(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ (1 << 31)) }

func quantF32(src []float32, dst []byte) {
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

func quantF16(src []float32, dst []byte) {
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(v))
	}
}

func quantBF16(src []float32, dst []byte) {
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(v))
	}
}

// absMax returns the largest |x| and the signed value that has it (the first
// one, as ggml).
func absMax(x []float32) (amax, max float32) {
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, max = a, v
		}
	}
	return
}

func minMax(x []float32) (lo, hi float32) {
	lo, hi = float32(math.MaxFloat32), -float32(math.MaxFloat32)
	for _, v := range x {
		lo = min(lo, v)
		hi = max(hi, v)
	}
	return
}

// quantQ4_0: d = max/-8 where max is the value of largest magnitude, so that
// it maps to q = 0 (-8*d) exactly; q = min(15, trunc(x/d + 8.5)).
func quantQ4_0(src []float32, dst []byte) {
	for b := 0; b < len(src)/QK; b++ {
		x := (*[32]float32)(src[b*32:])
		blk := (*[18]byte)(dst[b*18:])
		_, mx := absMax(x[:])
		d := mx / -8
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(blk[0:], d)
		for j := 0; j < 16; j++ {
			q0 := min(15, int8(float32(x[j]*id)+8.5))
			q1 := min(15, int8(float32(x[j+16]*id)+8.5))
			blk[2+j] = byte(q0) | byte(q1)<<4
		}
	}
}

// quantQ4_1: d = (max-min)/15, m = min; q = min(15, trunc((x-min)/d + 0.5)).
func quantQ4_1(src []float32, dst []byte) {
	for b := 0; b < len(src)/QK; b++ {
		x := (*[32]float32)(src[b*32:])
		blk := (*[20]byte)(dst[b*20:])
		lo, hi := minMax(x[:])
		d := (hi - lo) / 15
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(blk[0:], d)
		putF16(blk[2:], lo)
		for j := 0; j < 16; j++ {
			q0 := min(15, int8(float32((x[j]-lo)*id)+0.5))
			q1 := min(15, int8(float32((x[j+16]-lo)*id)+0.5))
			blk[4+j] = byte(q0) | byte(q1)<<4
		}
	}
}

// quantQ5_0: d = max/-16; q = min(31, trunc(x/d + 16.5)).
func quantQ5_0(src []float32, dst []byte) {
	for b := 0; b < len(src)/QK; b++ {
		x := (*[32]float32)(src[b*32:])
		blk := (*[22]byte)(dst[b*22:])
		_, mx := absMax(x[:])
		d := mx / -16
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(blk[0:], d)
		var qh uint32
		for j := 0; j < 16; j++ {
			q0 := uint32(min(31, int8(float32(x[j]*id)+16.5)))
			q1 := uint32(min(31, int8(float32(x[j+16]*id)+16.5)))
			blk[6+j] = byte(q0&0xf) | byte(q1&0xf)<<4
			qh |= (q0 >> 4 & 1) << j
			qh |= (q1 >> 4 & 1) << (j + 16)
		}
		binary.LittleEndian.PutUint32(blk[2:], qh)
	}
}

// quantQ5_1: d = (max-min)/31, m = min; q = min(31, trunc((x-min)/d + 0.5)).
func quantQ5_1(src []float32, dst []byte) {
	for b := 0; b < len(src)/QK; b++ {
		x := (*[32]float32)(src[b*32:])
		blk := (*[24]byte)(dst[b*24:])
		lo, hi := minMax(x[:])
		d := (hi - lo) / 31
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(blk[0:], d)
		putF16(blk[2:], lo)
		var qh uint32
		for j := 0; j < 16; j++ {
			q0 := uint32(min(31, int8(float32((x[j]-lo)*id)+0.5)))
			q1 := uint32(min(31, int8(float32((x[j+16]-lo)*id)+0.5)))
			blk[8+j] = byte(q0&0xf) | byte(q1&0xf)<<4
			qh |= (q0 >> 4 & 1) << j
			qh |= (q1 >> 4 & 1) << (j + 16)
		}
		binary.LittleEndian.PutUint32(blk[4:], qh)
	}
}

// quantQ8_0: d = amax/127, q = round(x/d) (half away from zero).
func quantQ8_0(src []float32, dst []byte) {
	for b := 0; b < len(src)/QK; b++ {
		x := (*[32]float32)(src[b*32:])
		blk := (*[34]byte)(dst[b*34:])
		amax, _ := absMax(x[:])
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(blk[0:], d)
		for j := 0; j < 32; j++ {
			blk[2+j] = byte(int8(roundAway(x[j] * id)))
		}
	}
}

// quantQ8_1: as Q8_0, plus s = d*sum(q) stored as f16.
func quantQ8_1(src []float32, dst []byte) {
	for b := 0; b < len(src)/QK; b++ {
		x := (*[32]float32)(src[b*32:])
		blk := (*[36]byte)(dst[b*36:])
		amax, _ := absMax(x[:])
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		var sum int32
		for j := 0; j < 32; j++ {
			q := roundAway(x[j] * id)
			sum += q
			blk[4+j] = byte(int8(q))
		}
		putF16(blk[0:], d)
		putF16(blk[2:], float32(sum)*d)
	}
}

// quantQ8_K: iscale = -127/max (max the signed value of largest magnitude),
// q = min(127, nearest(iscale*x)), d = 1/iscale (f32), and bsums[i] the sum of
// q over elements 16i..16i+15.
func quantQ8_K(src []float32, dst []byte) {
	for b := 0; b < len(src)/QKK; b++ {
		x := (*[256]float32)(src[b*256:])
		blk := (*[292]byte)(dst[b*292:])
		amax, mx := absMax(x[:])
		if amax == 0 {
			clear(blk[:])
			continue
		}
		iscale := -127 / mx
		for j := 0; j < 256; j++ {
			blk[4+j] = byte(int8(min(127, nearestInt(iscale*x[j]))))
		}
		for g := 0; g < 16; g++ {
			var s int32
			for j := 0; j < 16; j++ {
				s += int32(int8(blk[4+16*g+j]))
			}
			binary.LittleEndian.PutUint16(blk[260+2*g:], uint16(int16(s)))
		}
		binary.LittleEndian.PutUint32(blk[0:], math.Float32bits(1/iscale))
	}
}

// makeQKX2Quants is ggml's make_qkx2_quants: it finds a scale and a
// (non-positive) offset so that x ≈ scale*L + min with L in 0..nmax,
// minimising the weighted squared error. It starts from the min/max grid,
// then tries nstep+1 grids with iscale = (rmin + rdelta*is + nmax)/(max-min),
// solving the weighted least-squares fit of scale and min for each
// assignment and keeping the best. It returns the scale and -min; L receives
// the chosen quants and laux is scratch of the same length.
func makeQKX2Quants(nmax int32, x, w []float32, L, laux []uint8, rmin, rdelta float32, nstep int) (scale, negMin float32) {
	n := len(x)
	w = w[:n]
	L = L[:n]
	laux = laux[:n]
	lo, hi := x[0], x[0]
	sumW := w[0]
	sumX := sumW * x[0]
	for i := 1; i < n; i++ {
		lo = min(lo, x[i])
		hi = max(hi, x[i])
		sumW += w[i]
		sumX += w[i] * x[i]
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		clear(L)
		return 0, -lo
	}
	fmax := float32(nmax)
	iscale := fmax / (hi - lo)
	scale = 1 / iscale
	var bestErr float32
	for i := range x {
		l := uint8(clampI(nearestInt(iscale*(x[i]-lo)), 0, nmax))
		L[i] = l
		diff := scale*float32(l) + lo - x[i]
		bestErr += w[i] * diff * diff
	}
	for is := 0; is <= nstep; is++ {
		iscale = (rmin + rdelta*float32(is) + fmax) / (hi - lo)
		var sumL, sumL2, sumXL float32
		for i := range x {
			l := uint8(clampI(nearestInt(iscale*(x[i]-lo)), 0, nmax))
			laux[i] = l
			fl := float32(l)
			sumL += w[i] * fl
			sumL2 += w[i] * fl * fl
			sumXL += w[i] * fl * x[i]
		}
		D := sumW*sumL2 - sumL*sumL
		if D > 0 {
			thisScale := (sumW*sumXL - sumX*sumL) / D
			thisMin := (sumL2*sumX - sumL*sumXL) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var cur float32
			for i := range x {
				diff := thisScale*float32(laux[i]) + thisMin - x[i]
				cur += w[i] * diff * diff
			}
			if cur < bestErr {
				copy(L, laux)
				bestErr = cur
				scale = thisScale
				lo = thisMin
			}
		}
	}
	return scale, -lo
}

// groupMaxEps is ggml's GROUP_MAX_EPS: groups whose largest magnitude is
// below it quantize to zero.
const groupMaxEps = 1e-15

// makeQXQuants is ggml's make_qx_quants with rmse_type 1 and no importance
// weights (w = x^2): symmetric quants L in 0..2*nmax-1 (value L-nmax); it
// tries 18 scales around -nmax/max and keeps the one with the best weighted
// least-squares fit. It returns the scale.
func makeQXQuants(nmax int32, x []float32, L []uint8) float32 {
	n := len(x)
	L = L[:n]
	amax, mx := absMax(x)
	if amax < groupMaxEps {
		clear(L)
		return 0
	}
	fmax := float32(nmax)
	iscale := -fmax / mx
	var sumLX, sumL2 float32
	for i, v := range x {
		l := clampI(nearestInt(iscale*v), -nmax, nmax-1)
		L[i] = uint8(l + nmax)
		w := v * v
		sumLX += w * v * float32(l)
		sumL2 += w * float32(l) * float32(l)
	}
	var scale float32
	if sumL2 != 0 {
		scale = sumLX / sumL2
	}
	best := scale * sumLX
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fmax + 0.1*float32(is)) / mx
		sumLX, sumL2 = 0, 0
		for _, v := range x {
			l := float32(clampI(nearestInt(iscale*v), -nmax, nmax-1))
			w := v * v
			sumLX += w * v * l
			sumL2 += w * l * l
		}
		if sumL2 > 0 && sumLX*sumLX > best*sumL2 {
			for i, v := range x {
				L[i] = uint8(clampI(nearestInt(iscale*v), -nmax, nmax-1) + nmax)
			}
			scale = sumLX / sumL2
			best = scale * sumLX
		}
	}
	return scale
}

// packScaleMinK4 stores 8 6-bit scales and mins in the 12-byte Q4_K/Q5_K
// layout that scaleMinK4 reads.
func packScaleMinK4(ls, lm *[8]uint8, p *[12]byte) {
	clear(p[:])
	for j := 0; j < 8; j++ {
		if j < 4 {
			p[j] = ls[j]
			p[j+4] = lm[j]
		} else {
			p[j+4] = ls[j]&0xf | (lm[j]&0xf)<<4
			p[j-4] |= (ls[j] >> 4) << 6
			p[j] |= (lm[j] >> 4) << 6
		}
	}
}

// kQuantScalesMins runs the per-sub-block search of Q4_K/Q5_K for one
// super-block: it writes d, dmin and the packed scales to hdr (16 bytes) and
// the final quants (0..nmax) to L.
func kQuantScalesMins(x *[256]float32, nmax int32, rmin float32, nstep int, hdr *[16]byte, L *[256]uint8) {
	var w [32]float32
	var laux [32]uint8
	var scales, mins [8]float32
	var maxScale, maxMin float32
	for j := 0; j < 8; j++ {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += v * v
		}
		av := float32(math.Sqrt(float64(sumX2 / 32)))
		for l, v := range xs {
			w[l] = av + abs32(v)
		}
		scales[j], mins[j] = makeQKX2Quants(nmax, xs, w[:], L[32*j:32*j+32], laux[:], rmin, 0.1, nstep)
		maxScale = max(maxScale, scales[j])
		maxMin = max(maxMin, mins[j])
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	var ls, lm [8]uint8
	for j := 0; j < 8; j++ {
		ls[j] = uint8(min(63, nearestInt(invScale*scales[j])))
		lm[j] = uint8(min(63, nearestInt(invMin*mins[j])))
	}
	sp := (*[12]byte)(hdr[4:])
	packScaleMinK4(&ls, &lm, sp)
	putF16(hdr[0:], maxScale/63)
	putF16(hdr[2:], maxMin/63)
	d, dmin := f16(hdr[0:]), f16(hdr[2:])
	for j := 0; j < 8; j++ {
		sc, m := scaleMinK4(j, sp)
		dj := d * float32(sc)
		if dj == 0 {
			continue
		}
		dm := dmin * float32(m)
		for i := 32 * j; i < 32*j+32; i++ {
			L[i] = uint8(clampI(nearestInt((x[i]+dm)/dj), 0, nmax))
		}
	}
}

// quantQ4_K: per sub-block of 32, make_qkx2_quants (15 levels, weights
// rms(x)+|x|, 21 grids from rmin -1 step 0.1) finds scale and min; the 8
// scales and 8 mins are then quantized to 6 bits against d = max scale/63 and
// dmin = max min/63, and the quants recomputed with those.
func quantQ4_K(src []float32, dst []byte) {
	var L [256]uint8
	for b := 0; b < len(src)/QKK; b++ {
		x := (*[256]float32)(src[b*256:])
		blk := (*[144]byte)(dst[b*144:])
		kQuantScalesMins(x, 15, -1, 20, (*[16]byte)(blk[0:]), &L)
		for c := 0; c < 4; c++ {
			for l := 0; l < 32; l++ {
				blk[16+32*c+l] = L[64*c+l] | L[64*c+32+l]<<4
			}
		}
	}
}

// quantQ5_K: as Q4_K with 31 levels (16 grids from rmin -0.5); the 5th bit
// of element 32k+l goes to bit k of qh[l].
func quantQ5_K(src []float32, dst []byte) {
	var L [256]uint8
	for b := 0; b < len(src)/QKK; b++ {
		x := (*[256]float32)(src[b*256:])
		blk := (*[176]byte)(dst[b*176:])
		kQuantScalesMins(x, 31, -0.5, 15, (*[16]byte)(blk[0:]), &L)
		qh := (*[32]byte)(blk[16:])
		clear(qh[:])
		for c := 0; c < 4; c++ {
			for l := 0; l < 32; l++ {
				l1, l2 := L[64*c+l], L[64*c+32+l]
				qh[l] |= (l1>>4)<<(2*c) | (l2>>4)<<(2*c+1)
				blk[48+32*c+l] = l1&0xf | (l2&0xf)<<4
			}
		}
	}
}

// quantQ6_K: per sub-block of 16, make_qx_quants (nmax 32, weights x^2)
// finds a signed scale; the 16 scales are quantized to int8 against
// d = -max/128 (max the scale of largest magnitude), and the quants
// recomputed as clamp(round(x/(d*sc)), -32, 31) + 32.
func quantQ6_K(src []float32, dst []byte) {
	var L [256]uint8
	var scales [16]float32
	for b := 0; b < len(src)/QKK; b++ {
		x := (*[256]float32)(src[b*256:])
		blk := (*[210]byte)(dst[b*210:])
		var maxScale, maxAbs float32
		for ib := 0; ib < 16; ib++ {
			s := makeQXQuants(32, x[16*ib:16*ib+16], L[16*ib:16*ib+16])
			scales[ib] = s
			if a := abs32(s); a > maxAbs {
				maxAbs, maxScale = a, s
			}
		}
		if maxAbs < groupMaxEps {
			clear(blk[:])
			continue
		}
		iscale := -128 / maxScale
		putF16(blk[208:], 1/iscale)
		for ib := 0; ib < 16; ib++ {
			blk[192+ib] = byte(int8(min(127, nearestInt(iscale*scales[ib]))))
		}
		d := f16(blk[208:])
		for ib := 0; ib < 16; ib++ {
			dj := d * float32(int8(blk[192+ib]))
			if dj == 0 {
				continue
			}
			for i := 16 * ib; i < 16*ib+16; i++ {
				L[i] = uint8(clampI(nearestInt(x[i]/dj), -32, 31) + 32)
			}
		}
		for h := 0; h < 2; h++ {
			ql := (*[64]byte)(blk[64*h:])
			qh := (*[32]byte)(blk[128+32*h:])
			l := (*[128]uint8)(L[128*h:])
			for i := 0; i < 32; i++ {
				ql[i] = l[i]&0xf | (l[i+64]&0xf)<<4
				ql[i+32] = l[i+32]&0xf | (l[i+96]&0xf)<<4
				qh[i] = l[i]>>4 | (l[i+32]>>4)<<2 | (l[i+64]>>4)<<4 | (l[i+96]>>4)<<6
			}
		}
	}
}
