package quant

import "golang.org/x/sys/cpu"

// hasAVX2 reports whether the AVX2 kernels may run (CPU and OS support).
// The portable Go versions stay in genericDotFuncs; the tests check that both
// agree bit for bit.
var hasAVX2 = cpu.X86.HasAVX2

// Whole-row Q4_K and Q6_K dot products (dotk_amd64.s), bit-identical to
// dotQ4_K and dotQ6_K; nb > 0 blocks.
//
//go:noescape
func dotQ4_KAsm(x, y *byte, nb int, tab *[1 << 16]float32) float32

//go:noescape
func dotQ6_KAsm(x, y *byte, nb int, tab *[1 << 16]float32) float32

func init() {
	if hasAVX2 && !portable {
		vecDotFuncs[Q4_K] = dotQ4_KAVX2
		vecDotFuncs[Q6_K] = dotQ6_KAVX2
	}
}

// kSingle checks the sizes (the assembly must not read past them) and calls k.
func kSingle(k q8Kernel1, bs int, row, xq []byte, n int) float32 {
	nb := n / QKK
	if nb <= 0 {
		return 0
	}
	_ = row[nb*bs-1]
	_ = xq[nb*292-1]
	return k(&row[0], &xq[0], nb, f16Table)
}

func dotQ4_KAVX2(row, xq []byte, n int) float32 { return kSingle(dotQ4_KAsm, 144, row, xq, n) }
func dotQ6_KAVX2(row, xq []byte, n int) float32 { return kSingle(dotQ6_KAsm, 210, row, xq, n) }
