package sample

import (
	"math"
	"testing"
)

func TestExpAccuracy(t *testing.T) {
	tests := []struct {
		lo, hi float64
		steps  int
	}{
		{-1, 1, 100001},
		{-50, 0, 100001},
		{-707, 709, 100001},
	}
	for _, tc := range tests {
		worst := 0.0
		for i := range tc.steps {
			x := tc.lo + (tc.hi-tc.lo)*float64(i)/float64(tc.steps-1)
			got, want := exp(x), math.Exp(x)
			if rel := math.Abs(got-want) / want; rel > worst {
				worst = rel
			}
		}
		if worst > 4e-16 {
			t.Errorf("exp on [%g, %g]: worst relative error %g, want <= 4e-16", tc.lo, tc.hi, worst)
		}
	}
}

func TestExpSpecial(t *testing.T) {
	tests := []struct {
		x, want float64
	}{
		{0, 1},
		{math.Inf(-1), 0},
		{-800, 0},
		{800, math.Inf(1)},
		{math.Inf(1), math.Inf(1)},
		{1, math.E},
	}
	for _, tc := range tests {
		if got := exp(tc.x); got != tc.want && math.Abs(got-tc.want) > 1e-15*tc.want {
			t.Errorf("exp(%v) = %v, want %v", tc.x, got, tc.want)
		}
	}
	if got := exp(math.NaN()); !math.IsNaN(got) {
		t.Errorf("exp(NaN) = %v, want NaN", got)
	}
}

func BenchmarkExp(b *testing.B) {
	xs := make([]float64, 4096)
	for i := range xs {
		xs[i] = -float64(i) / 200
	}
	b.Run("portable", func(b *testing.B) {
		s := 0.0
		for b.Loop() {
			for _, x := range xs {
				s += exp(x)
			}
		}
		_ = s
	})
	b.Run("math.Exp", func(b *testing.B) {
		s := 0.0
		for b.Loop() {
			for _, x := range xs {
				s += math.Exp(x)
			}
		}
		_ = s
	})
}

func TestExpSumMatchesExp(t *testing.T) {
	src := []float32{0, -1e-6, -0.3, -1, -7.25, -100, -700, -1e4, float32(math.Inf(-1)), float32(math.NaN())}
	for _, invT := range []float64{1, 1.25, 0.5, 1e6} {
		w := make([]float64, len(src))
		set := make([]Candidate, len(src))
		for i, v := range src {
			set[i] = Candidate{ID: int32(i), Logprob: v}
		}
		w2 := make([]float64, len(src))
		z, z2 := expSum(w, src, 0, invT), expSumSet(w2, set, 0, invT)
		zWant := 0.0
		for i, v := range src {
			want := weight(v, 0, invT)
			zWant += want
			if w[i] != want || w2[i] != want {
				t.Errorf("invT %v, x %v: expSum %v, expSumSet %v, want %v", invT, v, w[i], w2[i], want)
			}
		}
		if z != zWant || z2 != zWant || expSum(nil, src, 0, invT) != zWant {
			t.Errorf("invT %v: sums %v %v, want %v", invT, z, z2, zWant)
		}
	}
}
