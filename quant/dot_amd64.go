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

// One row against four tokens, ystride bytes apart: out[t] bit-identical to
// the single-token kernels (dotk_amd64.s).
//
//go:noescape
func dotQ4_Kx4tAsm(x, y *byte, ystride, nb int, tab *[1 << 16]float32, out *[4]float32)

//go:noescape
func dotQ6_Kx4tAsm(x, y *byte, ystride, nb int, tab *[1 << 16]float32, out *[4]float32)

func init() {
	if hasAVX2 && !portable {
		tok4Funcs[Q4_K] = func(row, xq []byte, ab, n int, out *[4]float32) { kTok4(dotQ4_Kx4tAsm, 144, row, xq, ab, n, out) }
		tok4Funcs[Q6_K] = func(row, xq []byte, ab, n int, out *[4]float32) { kTok4(dotQ6_Kx4tAsm, 210, row, xq, ab, n, out) }
	}
}

func kTok4(k func(x, y *byte, ystride, nb int, tab *[1 << 16]float32, out *[4]float32), bs int,
	row, xq []byte, ab, n int, out *[4]float32) {
	nb := n / QKK
	if nb <= 0 {
		*out = [4]float32{}
		return
	}
	_ = row[nb*bs-1]
	_ = xq[3*ab+nb*292-1]
	k(&row[0], &xq[0], ab, nb, f16Table, out)
}
