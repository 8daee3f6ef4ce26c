package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// dot8, axpy and scale (assembly where the CPU has it) are bit-identical to their
// Go definitions for every length.
func TestSIMDMatchesGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for n := 0; n <= 70; n++ {
		a, b := make([]float32, n), make([]float32, n)
		for i := range a {
			a[i] = float32(rng.NormFloat64() * 3)
			b[i] = float32(rng.NormFloat64())
		}
		if x, y := dot8(a, b), dot8Go(a, b); math.Float32bits(x) != math.Float32bits(y) {
			t.Fatalf("n=%d: dot8 %g, Go %g", n, x, y)
		}
		o1, o2 := append([]float32(nil), a...), append([]float32(nil), a...)
		w := float32(rng.NormFloat64())
		axpy(o1, b, w)
		axpyGo(o2, b, w)
		for i := range o1 {
			if math.Float32bits(o1[i]) != math.Float32bits(o2[i]) {
				t.Fatalf("n=%d i=%d: axpy %g, Go %g", n, i, o1[i], o2[i])
			}
		}
		s1, s2 := append([]float32(nil), a...), append([]float32(nil), a...)
		scale(s1, w)
		scaleGo(s2, w)
		for i := range s1 {
			if math.Float32bits(s1[i]) != math.Float32bits(s2[i]) {
				t.Fatalf("n=%d i=%d: scale %g, Go %g", n, i, s1[i], s2[i])
			}
		}
	}
}

// dotRows and axpyRows (assembly where the CPU has it) are bit-identical
// to one dot8Go/axpyGo call a row, for head sizes with and without a tail,
// strides wider than a row and 1 to 40 rows.
func TestRowsMatchGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, hd := range []int{1, 7, 8, 12, 32, 40, 64, 96, 100, 128} {
		for _, stride := range []int{hd, hd + 3, 2*hd + 8} {
			for _, n := range []int{1, 2, 5, 8, 16, 17, 40, 71} {
				q := make([]float32, hd)
				k := make([]float32, (n-1)*stride+hd)
				w := make([]float32, n)
				for i := range q {
					q[i] = float32(rng.NormFloat64())
				}
				for i := range k {
					k[i] = float32(rng.NormFloat64() * 2)
				}
				for i := range w {
					w[i] = float32(rng.Float64())
				}
				got, want := make([]float32, n), make([]float32, n)
				dotRows(q, k, stride, got)
				for j := range want {
					want[j] = dot8Go(q, k[j*stride:])
				}
				o1, o2 := append([]float32(nil), q...), append([]float32(nil), q...)
				axpyRows(o1, k, stride, w)
				for j := range w {
					axpyGo(o2, k[j*stride:], w[j])
				}
				for j := range got {
					if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
						t.Fatalf("hd %d stride %d n %d: dotRows[%d] = %g, dot8Go %g", hd, stride, n, j, got[j], want[j])
					}
				}
				for i := range o1 {
					if math.Float32bits(o1[i]) != math.Float32bits(o2[i]) {
						t.Fatalf("hd %d stride %d n %d: axpyRows[%d] = %g, axpyGo calls %g", hd, stride, n, i, o1[i], o2[i])
					}
				}
			}
		}
	}
}

// expShift (assembly where the CPU has it) is bit-identical to expShiftGo
// for every length, for scores around the maximum and far below it.
func TestExpShiftMatchesGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for n := 0; n <= 100; n++ {
		x := make([]float32, n)
		mx := float32(math.Inf(-1))
		for i := range x {
			x[i] = float32(rng.NormFloat64() * []float64{0.5, 5, 50, 500}[i%4])
			mx = max(mx, x[i])
		}
		if n > 6 {
			x[0], x[1], x[2] = mx, float32(math.Copysign(0, -1)), -1e30
		}
		a, b := append([]float32(nil), x...), append([]float32(nil), x...)
		expShift(a, mx)
		expShiftGo(b, mx)
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("n=%d i=%d x=%g mx=%g: expShift %g, Go %g", n, i, x[i], mx, a[i], b[i])
			}
		}
	}
}

// swiglu (assembly where the CPU has it) is bit-identical to swigluGo for
// every length and for inputs across expf's range and beyond; expf is
// within 3 ulp of e^x on [-87, 88].
func TestSwigluMatchesGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for n := 0; n <= 300; n++ {
		g, u := make([]float32, n), make([]float32, n)
		for i := range g {
			g[i] = float32(rng.NormFloat64() * []float64{1, 4, 40, 100}[i%4])
			u[i] = float32(rng.NormFloat64())
		}
		if n > 10 {
			g[0], g[1], g[2], g[3] = 0, float32(math.Copysign(0, -1)), 88.5, -200
			g[4], g[5] = float32(math.Inf(1)), float32(math.Inf(-1))
		}
		a, b := append([]float32(nil), g...), append([]float32(nil), g...)
		swiglu(a, u)
		swigluGo(b, u)
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) && !(a[i] != a[i] && b[i] != b[i]) {
				t.Fatalf("n=%d i=%d g=%g: swiglu %g, Go %g", n, i, g[i], a[i], b[i])
			}
		}
	}
	for range 100000 {
		x := float32(rng.Float64()*175 - 87)
		got, want := float64(expf(x)), math.Exp(float64(x))
		if ulp := math.Abs(got-want) / (float64(math.Nextafter32(float32(want), float32(math.Inf(1)))) - float64(float32(want))); ulp > 3 {
			t.Fatalf("expf(%g) = %g, e^x = %g: %.1f ulp", x, got, want, ulp)
		}
	}
}
