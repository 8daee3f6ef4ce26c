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

// MatMul computes out[tok*outStride+r] = VecDot(t, row r, xq[tok*ab:tok*ab+ActivationBytes(t, n)], n)
// for r < rows and tok < T: rows weight rows of n elements of type t,
// rowBytes apart, against T activation rows converted by
// QuantizeActivations, ab bytes apart. Every result is bit-identical to
// VecDot's. Where the CPU has a tile kernel for t, each weight block is
// unpacked once for several tokens: AVX-512 VNNI: Q4_0, Q5_0, Q8_0 two rows
// × sixteen tokens, four rows × eight (tokens prepared once for all rows),
// then four × four; Q4_K, Q6_K one row × sixteen tokens (prepared once for
// all rows); AVX2: Q4_K, Q6_K one row × four tokens. Otherwise the tokens
// go through DotRows one by one. It panics on bad sizes.
func MatMul(t Type, w []byte, rowBytes, rows int, xq []byte, ab, T, n int, out []float32, outStride int) {
	if rows <= 0 || T <= 0 {
		return
	}
	vb := ActivationBytes(t, n)
	if vb < 0 || ab < vb || len(xq) < (T-1)*ab+vb {
		panic(fmt.Sprintf("quant: MatMul: %d activation rows of %d %s elements, %d bytes apart, in %d bytes",
			T, n, VecDotType(t), ab, len(xq)))
	}
	if outStride < rows || len(out) < (T-1)*outStride+rows {
		panic(fmt.Sprintf("quant: MatMul: out of %d for %d×%d results, stride %d", len(out), T, rows, outStride))
	}
	r := 0
	if k := tok4Funcs[t]; k != nil && T >= 4 {
		rb, err := RowBytes(t, n)
		if err != nil || rowBytes < rb || len(w) < (rows-1)*rowBytes+rb {
			panic(fmt.Sprintf("quant: MatMul: %d rows of %d %s, %d bytes apart, in %d bytes", rows, n, t, rowBytes, len(w)))
		}
		// Groups of sixteen tokens, prepared once for all rows, where the
		// CPU has that; the other tokens by four, then one by one.
		tok0 := 0
		if k16 := tok16Funcs[t]; k16 != nil && T >= 16 {
			tok0 = T &^ 15
			k16(w, rowBytes, rows, xq, ab, tok0, n, out, outStride)
		}
		f := vecDotFuncs[t]
		var o4 [4]float32
		for ; r < rows; r++ {
			row := w[r*rowBytes : r*rowBytes+rb]
			tok := tok0
			for ; tok+4 <= T; tok += 4 {
				k(row, xq[tok*ab:(tok+3)*ab+vb], ab, n, &o4)
				for i, v := range o4 {
					out[(tok+i)*outStride+r] = v
				}
			}
			for ; tok < T; tok++ {
				out[tok*outStride+r] = f(row, xq[tok*ab:tok*ab+vb], n)
			}
		}
		return
	}
	if k := tileFuncs[t]; k != nil && T >= 4 {
		rb, err := RowBytes(t, n)
		if err != nil || rowBytes < rb || len(w) < (rows-1)*rowBytes+rb {
			panic(fmt.Sprintf("quant: MatMul: %d rows of %d %s, %d bytes apart, in %d bytes", rows, n, t, rowBytes, len(w)))
		}
		// Groups of eight tokens prepared once for all rows, where the CPU
		// has that; the other tokens below.
		tok0 := 0
		if p := packedFuncs[t]; p != nil && T >= 8 && rows >= 4 {
			tok0 = T &^ 7
			p(w, rowBytes, rows&^3, xq, ab, tok0, n, out, outStride)
		}
		var tile [16]float32
		for ; r+4 <= rows; r += 4 {
			tok := tok0
			for ; tok+4 <= T; tok += 4 {
				k(w[r*rowBytes:(r+3)*rowBytes+rb], rowBytes, xq[tok*ab:(tok+3)*ab+vb], ab, n, &tile)
				for i := range 4 {
					copy(out[(tok+i)*outStride+r:(tok+i)*outStride+r+4], tile[4*i:4*i+4])
				}
			}
			for ; tok < T; tok++ {
				o := tok*outStride + r
				DotRows(t, w[r*rowBytes:], rowBytes, xq[tok*ab:tok*ab+vb], n, out[o:o+4])
			}
		}
		if r == rows {
			return
		}
	}
	for tok := range T {
		o := tok * outStride
		DotRows(t, w[r*rowBytes:], rowBytes, xq[tok*ab:tok*ab+vb], n, out[o+r:o+rows])
	}
}

// tileFuncs are optional kernels for 4 rows × 4 tokens (MatMul): w holds
// the four rows (rowBytes apart), xq the four tokens' activations (ab bytes
// apart); tile[4*tok+r] is the result. Sizes are checked by the kernel's
// wrapper. Filled by the architecture files.
var tileFuncs = map[Type]func(w []byte, rowBytes int, xq []byte, ab, n int, tile *[16]float32){}

// tok4Funcs are optional kernels for one row × four tokens (MatMul), ab
// bytes apart in xq. Filled by the architecture files.
var tok4Funcs = map[Type]func(row, xq []byte, ab, n int, out *[4]float32){}

// kTok16Func computes rows [0, rows) × tokens [0, T16) of MatMul (T16 a
// multiple of 16), sixteen tokens prepared once for all rows.
type kTok16Func = func(w []byte, rowBytes, rows int, xq []byte, ab, T16, n int, out []float32, outStride int)

// tok16Funcs: the kTok16Func for a type where the CPU has one (AVX-512
// VNNI: Q4_K, Q6_K). Used only where tok4Funcs has the type too.
var tok16Funcs = map[Type]kTok16Func{}

// packedFunc computes rows [0, rows4) × tokens [0, T8) of MatMul (rows4 a
// multiple of 4, T8 of 8) with activations prepared once per eight tokens.
type packedFunc = func(w []byte, rowBytes, rows4 int, xq []byte, ab, T8, n int, out []float32, outStride int)

// packedFuncs: the packedFunc for a type, where the CPU has one (AVX-512
// VNNI: Q4_0, Q5_0, Q8_0).
var packedFuncs = map[Type]packedFunc{}
