package quant

import "golang.org/x/sys/cpu"

// Q8_0-activation dot products in AVX2 (dotq8_amd64.s): bit-identical to
// dotQ8_0, dotQ4_0 and dotQ5_0. With GOAMD64=v3/v4 (where the Go compiler
// fuses the per-block multiply-add) the assembly uses FMA as well, which
// such a build guarantees; the check below keeps that explicit.

//go:noescape
func dotQ8_0Asm(x, y *byte, nb int, tab *[1 << 16]float32) float32

//go:noescape
func dotQ4_0Asm(x, y *byte, nb int, tab *[1 << 16]float32) float32

//go:noescape
func dotQ5_0Asm(x, y *byte, nb int, tab *[1 << 16]float32) float32

// The x4 kernels compute four rows, stride bytes apart, against the same
// activations: out[r] is bit-identical to the single-row result.
//
//go:noescape
func dotQ8_0x4Asm(x *byte, stride int, y *byte, nb int, tab *[1 << 16]float32, out *[4]float32)

//go:noescape
func dotQ4_0x4Asm(x *byte, stride int, y *byte, nb int, tab *[1 << 16]float32, out *[4]float32)

//go:noescape
func dotQ5_0x4Asm(x *byte, stride int, y *byte, nb int, tab *[1 << 16]float32, out *[4]float32)

// hasQ8Asm: AVX2 (and FMA, which GOAMD64=v3 builds use in these kernels;
// every AVX2 CPU known has it).
var hasQ8Asm = cpu.X86.HasAVX2 && cpu.X86.HasFMA

func init() {
	if !hasQ8Asm {
		return
	}
	vecDotFuncs[Q8_0] = dotQ8_0AVX2
	vecDotFuncs[Q4_0] = dotQ4_0AVX2
	vecDotFuncs[Q5_0] = dotQ5_0AVX2
	multiRowFuncs[Q8_0] = rowsQ8_0AVX2
	multiRowFuncs[Q4_0] = rowsQ4_0AVX2
	multiRowFuncs[Q5_0] = rowsQ5_0AVX2
}

// single checks the buffers' sizes (the assembly must not read past them)
// and calls k.
func single(k func(x, y *byte, nb int, tab *[1 << 16]float32) float32, bs int, row, xq []byte, n int) float32 {
	nb := n / QK
	if nb <= 0 {
		return 0
	}
	_ = row[nb*bs-1]
	_ = xq[nb*34-1]
	return k(&row[0], &xq[0], nb, f16Table)
}

func dotQ8_0AVX2(row, xq []byte, n int) float32 { return single(dotQ8_0Asm, 34, row, xq, n) }
func dotQ4_0AVX2(row, xq []byte, n int) float32 { return single(dotQ4_0Asm, 18, row, xq, n) }
func dotQ5_0AVX2(row, xq []byte, n int) float32 { return single(dotQ5_0Asm, 22, row, xq, n) }

// rows4 runs k over groups of four rows and returns how many rows it did.
func rows4(k func(x *byte, stride int, y *byte, nb int, tab *[1 << 16]float32, out *[4]float32), bs int,
	w []byte, stride int, xq []byte, n int, out []float32) int {
	nb := n / QK
	if nb <= 0 {
		return 0
	}
	_ = xq[nb*34-1]
	r := 0
	for ; r+4 <= len(out); r += 4 {
		_ = w[(r+3)*stride+nb*bs-1]
		k(&w[r*stride], stride, &xq[0], nb, f16Table, (*[4]float32)(out[r:]))
	}
	return r
}

func rowsQ8_0AVX2(w []byte, stride int, xq []byte, n int, out []float32) int {
	return rows4(dotQ8_0x4Asm, 34, w, stride, xq, n, out)
}

func rowsQ4_0AVX2(w []byte, stride int, xq []byte, n int, out []float32) int {
	return rows4(dotQ4_0x4Asm, 18, w, stride, xq, n, out)
}

func rowsQ5_0AVX2(w []byte, stride int, xq []byte, n int, out []float32) int {
	return rows4(dotQ5_0x4Asm, 22, w, stride, xq, n, out)
}
