package model

import (
	"math"
	"testing"
)

// TestRopeInvFreq: base^(−2i/d), divided by rope_freqs where given and by
// the linear scale — computed here from the formula for a few cases.
func TestRopeInvFreq(t *testing.T) {
	for _, c := range []struct {
		name  string
		base  float32
		dim   int
		scale float32
		freqs []float32
	}{
		{"plain", 10000, 8, 1, nil},
		{"qwen base", 1e6, 64, 1, nil},
		{"linear scale", 10000, 16, 4, nil},
		{"rope_freqs", 500000, 8, 1, []float32{1, 2, 4, 8}},
	} {
		m := &Model{Config: Config{RopeBase: c.base, RopeDim: c.dim, RopeScale: c.scale}, Weights: &Weights{RopeFreqs: c.freqs}}
		got := m.RopeInvFreq()
		if len(got) != c.dim/2 {
			t.Fatalf("%s: %d frequencies, want %d", c.name, len(got), c.dim/2)
		}
		for i, g := range got {
			want := 1 / math.Pow(float64(c.base), float64(2*i)/float64(c.dim)) / float64(c.scale)
			if c.freqs != nil {
				want /= float64(c.freqs[i])
			}
			if math.Abs(g-want) > 1e-15*want {
				t.Errorf("%s: pair %d: %g, want %g", c.name, i, g, want)
			}
		}
	}
}
