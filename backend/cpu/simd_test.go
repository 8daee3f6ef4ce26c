package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// dot8 and axpy (assembly where the CPU has it) are bit-identical to their
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
	}
}
