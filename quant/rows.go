package quant

import "fmt"

// VecDotFunc returns the dot product VecDot uses for weight type t (an
// assembly version where the CPU has the instructions, else the portable Go
// one), or nil if t has none. The function does no size checks: row must
// hold at least RowBytes(t, n) bytes and xq RowBytes(VecDotType(t), n).
// It lets a caller hoist the lookup out of its per-row loop; the result is
// bit-identical to VecDot's.
func VecDotFunc(t Type) func(row, xq []byte, n int) float32 { return vecDotFuncs[t] }

// DotRows computes out[r] = VecDot(t, w[r*rowBytes:r*rowBytes+RowBytes(t, n)], xq, n)
// for r < len(out): len(out) rows of n elements of type t, rowBytes apart
// (rowBytes ≥ RowBytes(t, n)). Each out[r] is bit-identical to VecDot's; on
// amd64 with AVX2 several rows share one pass over the activations. It
// panics on bad sizes, like VecDot.
func DotRows(t Type, w []byte, rowBytes int, xq []byte, n int, out []float32) {
	f := vecDotFuncs[t]
	if f == nil {
		panic(fmt.Sprintf("quant: DotRows: no dot product for %s", t))
	}
	rb, err := RowBytes(t, n)
	if err != nil {
		panic("quant: DotRows: " + err.Error())
	}
	if rowBytes < rb {
		panic(fmt.Sprintf("quant: DotRows: row stride %d < %d bytes per row of %d %s", rowBytes, rb, n, t))
	}
	if len(out) > 0 && len(w) < (len(out)-1)*rowBytes+rb {
		panic(fmt.Sprintf("quant: DotRows: %d rows of %s, %d bytes apart, need %d bytes, found %d",
			len(out), t, rowBytes, (len(out)-1)*rowBytes+rb, len(w)))
	}
	if err := checkSize(VecDotType(t), n, len(xq)); err != nil {
		panic("quant: DotRows activations: " + err.Error())
	}
	r := 0
	if m := multiRowFuncs[t]; m != nil {
		r = m(w, rowBytes, xq, n, out)
	}
	for ; r < len(out); r++ {
		out[r] = f(w[r*rowBytes:r*rowBytes+rb], xq, n)
	}
}

// multiRowFuncs are optional kernels that compute a prefix of DotRows' out
// (sizes already checked) and return how many rows they did; the rest go
// through vecDotFuncs. Filled by the architecture files.
var multiRowFuncs = map[Type]func(w []byte, rowBytes int, xq []byte, n int, out []float32) int{}
