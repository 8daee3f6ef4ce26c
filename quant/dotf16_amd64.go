package quant

import "golang.org/x/sys/cpu"

//go:noescape
func dotF16Asm(a, b *byte, n4 int, s *[4]float32)

func hasF16C() bool

func init() {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA && hasF16C() && !portable {
		vecDotFuncs[F16] = dotF16AVX2
	}
}

// dotF16AVX2 is dotF16 with the four-lane loop in assembly; the tail and the
// final sum are dotF16's own code.
func dotF16AVX2(row, xq []byte, n int) float32 {
	row, xq = row[:2*n], xq[:2*n]
	var s [4]float32
	i := n &^ 3
	if i > 0 {
		dotF16Asm(&row[0], &xq[0], i/4, &s)
	}
	for ; i < n; i++ {
		s[0] += f16(row[2*i:]) * f16(xq[2*i:])
	}
	return (s[0] + s[1]) + (s[2] + s[3])
}
