//go:build !amd64

package cpu

func dot8(a, b []float32) float32 { return dot8Go(a, b) }

func axpy(out, v []float32, w float32) { axpyGo(out, v, w) }

func swiglu(gate, up []float32) { swigluGo(gate, up) }

func dotRows(q, k []float32, stride int, out []float32) { dotRowsGo(q, k, stride, out) }

func axpyRows(out, v []float32, stride int, w []float32) { axpyRowsGo(out, v, stride, w) }

func expShift(x []float32, mx float32) { expShiftGo(x, mx) }

func scale(x []float32, s float32) { scaleGo(x, s) }
