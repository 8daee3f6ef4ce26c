package cpu

// Attention's inner loops: a dot product of two float32 vectors and
// out += w*v. The Go versions define the order (eight lanes, products
// rounded before they are added: no fused multiply-add); the assembly
// versions (simd_amd64.s) compute exactly the same operations, so results
// are bit-identical with WORKER_CPU_PORTABLE=1 or without.

// dot8Go returns Σ a[i]*b[i] (len(a) ≤ len(b)) summed in eight lanes (lane
// i%8 for i < len(a)&^7), reduced as ((s0+s4)+(s2+s6)) + ((s1+s5)+(s3+s7)),
// plus the tail in order.
func dot8Go(a, b []float32) float32 {
	b = b[:len(a)]
	var s [8]float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		x, y := (*[8]float32)(a[i:]), (*[8]float32)(b[i:])
		for l := range 8 {
			s[l] += float32(x[l] * y[l])
		}
	}
	r := ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]))
	for ; i < len(a); i++ {
		r += float32(a[i] * b[i])
	}
	return r
}

// axpyGo: out[i] += float32(w*v[i]) for i < len(out) (len(v) ≥ len(out)).
func axpyGo(out, v []float32, w float32) {
	v = v[:len(out)]
	for i := range out {
		out[i] += float32(w * v[i])
	}
}
