package cpu

import (
	"os"

	"golang.org/x/sys/cpu"
)

//go:noescape
func dot8AVX(a, b *float32, n8 int) float32

//go:noescape
func axpyAVX(out, v *float32, n8 int, w float32)

//go:noescape
func swigluAVX2(gate, up *float32, n8 int)

//go:noescape
func expShiftAVX2(x *float32, n8 int, mx float32)

//go:noescape
func dotRowsAVX(q, k *float32, stride, n, n8 int, out *float32)

//go:noescape
func scaleAVX(x *float32, n8 int, s float32)

//go:noescape
func dotRows8AVX(q, k *float32, stride, n8rows, n8 int, out *float32)

//go:noescape
func axpyRowsAVX(out, v *float32, stride, n int, w *float32, n8 int)

// useAVX: the assembly versions run unless WORKER_CPU_PORTABLE=1 (as in
// package quant).
var (
	useAVX  = cpu.X86.HasAVX && os.Getenv("WORKER_CPU_PORTABLE") != "1"
	useAVX2 = useAVX && cpu.X86.HasAVX2
)

func dot8(a, b []float32) float32 {
	if !useAVX || len(a) < 8 {
		return dot8Go(a, b)
	}
	b = b[:len(a)]
	n := len(a) &^ 7
	r := dot8AVX(&a[0], &b[0], n/8)
	for i := n; i < len(a); i++ {
		r += float32(a[i] * b[i])
	}
	return r
}

func axpy(out, v []float32, w float32) {
	if !useAVX || len(out) < 8 {
		axpyGo(out, v, w)
		return
	}
	v = v[:len(out)]
	n := len(out) &^ 7
	axpyAVX(&out[0], &v[0], n/8, w)
	for i := n; i < len(out); i++ {
		out[i] += float32(w * v[i])
	}
}

func swiglu(gate, up []float32) {
	if !useAVX2 || len(gate) < 8 {
		swigluGo(gate, up)
		return
	}
	up = up[:len(gate)]
	n := len(gate) &^ 7
	swigluAVX2(&gate[0], &up[0], n/8)
	swigluGo(gate[n:], up[n:])
}

// dotRows sets out[j] = dot8(q, k[j*stride:]) for j < len(out): the
// scores of len(out) key rows stride elements apart, in one call.
func dotRows(q, k []float32, stride int, out []float32) {
	n := len(out)
	if n == 0 {
		return
	}
	_ = k[(n-1)*stride+len(q)-1] // every row in range
	if !useAVX || len(q) < 8 {
		dotRowsGo(q, k, stride, out)
		return
	}
	n8 := len(q) / 8
	if m := n &^ 7; m > 0 { // eight rows a pass, their trees side by side
		dotRows8AVX(&q[0], &k[0], 4*stride, m/8, n8, &out[0])
	}
	if m := n &^ 7; m < n {
		dotRowsAVX(&q[0], &k[m*stride], 4*stride, n-m, n8, &out[m])
	}
	if 8*n8 == len(q) {
		return
	}
	for j := range out { // the tail, in order, as dot8 adds it
		r := out[j]
		for i := 8 * n8; i < len(q); i++ {
			r += float32(q[i] * k[j*stride+i])
		}
		out[j] = r
	}
}

// axpyRows does axpy(out, v[j*stride:], w[j]) for j < len(w) in order, in
// one call.
func axpyRows(out, v []float32, stride int, w []float32) {
	n := len(w)
	if n == 0 || len(out) == 0 {
		return
	}
	_ = v[(n-1)*stride+len(out)-1] // every row in range
	if !useAVX || len(out) < 8 {
		axpyRowsGo(out, v, stride, w)
		return
	}
	n8 := len(out) / 8
	axpyRowsAVX(&out[0], &v[0], 4*stride, n, &w[0], n8)
	for i := 8 * n8; i < len(out); i++ { // the tail, in the same order
		for j, wj := range w {
			out[i] += float32(wj * v[j*stride+i])
		}
	}
}

// scale sets x[i] *= s.
func scale(x []float32, s float32) {
	if !useAVX || len(x) < 8 {
		scaleGo(x, s)
		return
	}
	n := len(x) &^ 7
	scaleAVX(&x[0], n/8, s)
	scaleGo(x[n:], s)
}

// expShift sets x[i] = expf(x[i] - mx).
func expShift(x []float32, mx float32) {
	if !useAVX2 || len(x) < 8 {
		expShiftGo(x, mx)
		return
	}
	n := len(x) &^ 7
	expShiftAVX2(&x[0], n/8, mx)
	expShiftGo(x[n:], mx)
}
