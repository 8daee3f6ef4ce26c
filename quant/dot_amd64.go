package quant

import "golang.org/x/sys/cpu"

// hasAVX2 reports whether the AVX2 kernels may run (CPU and OS support).
// The portable Go versions stay in genericDotFuncs; the tests check that both
// agree bit for bit.
var hasAVX2 = cpu.X86.HasAVX2

// q4kSubSumsAVX2 computes the 8 per-sub-block integer sums Σ q*y of one Q4_K
// block (q: its 128 quant bytes) against a Q8_K block (y: its 256 quants).
//
//go:noescape
func q4kSubSumsAVX2(q *byte, y *byte, out *[8]int32)

func init() {
	if hasAVX2 && !portable {
		vecDotFuncs[Q4_K] = dotQ4_KAVX2
		vecDotFuncs[Q6_K] = dotQ6_KAVX2
	}
}

// dotQ4_KAVX2 is dotQ4_K with the integer inner products in AVX2.
func dotQ4_KAVX2(row, xq []byte, n int) float32 {
	var sum float32
	var p [8]int32
	for b := 0; b < n/QKK; b++ {
		x := (*[144]byte)(row[b*144:])
		y := (*[292]byte)(xq[b*292:])
		q4kSubSumsAVX2(&x[16], &y[4], &p)
		scales := (*[12]byte)(x[4:])
		var sumi, summ int32
		for j := 0; j < 8; j++ {
			sc, m := scaleMinK4(j, scales)
			sumi += int32(sc) * p[j]
			summ += int32(m) * (bsum(y, 2*j) + bsum(y, 2*j+1))
		}
		yd := q8kD(y)
		sum += f16(x[0:])*yd*float32(sumi) - f16(x[2:])*yd*float32(summ)
	}
	return sum
}

// q6kSubSumsAVX2 computes, for one Q6_K block (x: its first byte) and a Q8_K
// block's quants (y), Σ q*y with q the unsigned 6-bit quants (0..63) for each
// of the 16 sub-blocks, in the order: for each half h, sub-blocks
// 8h+0, 2, 4, 6, then 8h+1, 3, 5, 7.
//
//go:noescape
func q6kSubSumsAVX2(x *byte, y *byte, out *[16]int32)

// q6kOrder maps a sub-block within a half to its index in
// q6kSubSumsAVX2's output.
var q6kOrder = [8]int{0, 4, 1, 5, 2, 6, 3, 7}

// dotQ6_KAVX2 is dotQ6_K with the integer inner products in AVX2.
func dotQ6_KAVX2(row, xq []byte, n int) float32 {
	var sum float32
	var p [16]int32
	for b := 0; b < n/QKK; b++ {
		x := (*[210]byte)(row[b*210:])
		y := (*[292]byte)(xq[b*292:])
		q6kSubSumsAVX2(&x[0], &y[4], &p)
		sc := (*[16]byte)(x[192:])
		var sumi int32
		for h := 0; h < 2; h++ {
			for s := 0; s < 8; s++ {
				g := 8*h + s
				sumi += i8(sc[g]) * (p[8*h+q6kOrder[s]] - 32*bsum(y, g))
			}
		}
		sum += f16(x[208:]) * q8kD(y) * float32(sumi)
	}
	return sum
}
