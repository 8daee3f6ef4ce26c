package quant

import "testing"

// q8Levels lists the kernel levels this CPU can run (setQ8Kernels' arguments).
func q8Levels() [][2]bool {
	l := [][2]bool{{false, false}}
	if hasQ8Asm {
		l = append(l, [2]bool{true, false})
	}
	if hasVNNI {
		l = append(l, [2]bool{true, true})
	}
	return l
}

// restoreQ8 puts back the kernels chosen at start-up.
func restoreQ8() { setQ8Kernels(hasQ8Asm && !portable, hasVNNI && !portable) }

// Every kernel level this CPU has (Go, AVX2, AVX-512 VNNI) passes the Q8_0
// activation tests, whatever WORKER_CPU_PORTABLE selected.
func TestQ8KernelLevels(t *testing.T) {
	defer restoreQ8()
	for _, lv := range q8Levels() {
		setQ8Kernels(lv[0], lv[1])
		t.Run(q8Level, func(t *testing.T) {
			TestVecDotQ8ActMatchesGeneric(t)
			TestVecDotQ8ActExtremes(t)
			TestDotRows(t)
			TestMatMul(t)
			TestVecDotDispatchMatchesGeneric(t)
		})
	}
}

// The 2 × 16 tiles' other output path (through a local tile, for offsets
// past int32) gives the same results as their scatter.
func TestMatMulTileCopyPath(t *testing.T) {
	if !hasVNNI {
		t.Skip("no AVX-512 VNNI")
	}
	defer restoreQ8()
	defer func(l int) { scatterLimit = l }(scatterLimit)
	setQ8Kernels(true, true)
	scatterLimit = 0
	TestMatMul(t)
}

func init() {
	// FuzzVecDotQ8Act also checks the AVX2 kernels where VNNI is in use.
	if hasQ8Asm {
		fuzzQ8Alt = func(typ Type, row, xq []byte, n int) float32 {
			k := map[Type]q8Kernel1{Q8_0: dotQ8_0AVX2Asm, Q4_0: dotQ4_0AVX2Asm, Q5_0: dotQ5_0AVX2Asm}[typ]
			return single(k, typ.TypeSize(), row, xq, n)
		}
	}
}
