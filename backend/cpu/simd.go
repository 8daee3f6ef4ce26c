package cpu

import "math"

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

// dotRowsGo sets out[j] = dot8Go(q, k[j*stride:]) for j < len(out).
func dotRowsGo(q, k []float32, stride int, out []float32) {
	for j := range out {
		out[j] = dot8Go(q, k[j*stride:])
	}
}

// axpyRowsGo does axpyGo(out, v[j*stride:], w[j]) for j < len(w), in order.
func axpyRowsGo(out, v []float32, stride int, w []float32) {
	for j, wj := range w {
		axpyGo(out, v[j*stride:], wj)
	}
}

// scaleGo sets x[i] *= s (one float32 multiply each).
func scaleGo(x []float32, s float32) {
	for i := range x {
		x[i] *= s
	}
}

// expShiftGo sets x[i] = expf(x[i] - mx) (float32 subtraction, then expf).
func expShiftGo(x []float32, mx float32) {
	for i, v := range x {
		x[i] = expf(v - mx)
	}
}

// swigluGo: gate[i] = silu(gate[i]) * up[i] = gate[i] / (1 + expf(-gate[i])) * up[i]
// (len(up) ≥ len(gate)), in float32 operations that swigluAVX2 repeats
// exactly.
func swigluGo(gate, up []float32) {
	up = up[:len(gate)]
	for i, g := range gate {
		gate[i] = float32(g/float32(1+expf(-g))) * up[i]
	}
}

// expf constants (Cephes' expf: ln 2 split so that n·ln2Hi is exact, a
// degree-7 polynomial on [-ln2/2, ln2/2]).
const (
	expLog2e float32 = 1.44269504088896341
	expLn2Hi float32 = 0.693359375
	expLn2Lo float32 = -2.12194440e-4
	expC0    float32 = 1.9875691500e-4
	expC1    float32 = 1.3981999507e-3
	expC2    float32 = 8.3334519073e-3
	expC3    float32 = 4.1665795894e-2
	expC4    float32 = 1.6666665459e-1
	expC5    float32 = 5.0000001201e-1
)

// expf returns e^x within ~2 ulp for x in [-87, 88], and e^-87 or e^88
// beyond (silu's 1+e^-g is then 1, or its quotient below 1e-36 of g). Every
// step is one rounded float32 operation, in the order swigluAVX2 uses.
func expf(x float32) float32 {
	x = min(max(x, -87), 88)
	n := float32(math.RoundToEven(float64(float32(x * expLog2e))))
	r := float32(x - float32(n*expLn2Hi))
	r = float32(r - float32(n*expLn2Lo))
	z := float32(r * r)
	p := float32(float32(expC0*r) + expC1)
	p = float32(float32(p*r) + expC2)
	p = float32(float32(p*r) + expC3)
	p = float32(float32(p*r) + expC4)
	p = float32(float32(p*r) + expC5)
	p = float32(p * z)
	p = float32(p + r)
	p = float32(p + 1)
	return float32(p * math.Float32frombits(uint32(int32(n)+127)<<23))
}
