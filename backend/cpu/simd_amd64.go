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
