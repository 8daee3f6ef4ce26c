//go:build !amd64

package cpu

func dot8(a, b []float32) float32 { return dot8Go(a, b) }

func axpy(out, v []float32, w float32) { axpyGo(out, v, w) }

func swiglu(gate, up []float32) { swigluGo(gate, up) }
