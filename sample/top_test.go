package sample

import (
	"math/rand/v2"
	"testing"
)

// TestSampleTopEqualsSample: drawing from a backend's top-k candidates gives
// the same ids as drawing from the whole row, for the same seed, across
// parameters and kinds of logits (ties included).
func TestSampleTopEqualsSample(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	rows := map[string][]float32{}
	for _, kind := range []string{"smooth", "flat", "ties", "spiky"} {
		row := make([]float32, 5000)
		for i := range row {
			switch kind {
			case "smooth":
				row[i] = float32(r.NormFloat64() * 3)
			case "flat":
				row[i] = float32(r.NormFloat64() * 0.01)
			case "ties":
				row[i] = float32(r.IntN(6))
			case "spiky":
				row[i] = float32(r.NormFloat64())
				if r.IntN(500) == 0 {
					row[i] += 15
				}
			}
		}
		rows[kind] = row
	}
	params := []Params{
		GreedyParams(),
		{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, RepeatPenalty: 1},
		{Temperature: 1, TopK: 1, TopP: 1, RepeatPenalty: 1},
		{Temperature: 1.5, TopK: 256, TopP: 0.5, RepeatPenalty: 1},
		{Temperature: 0.3, TopK: 7, TopP: 1, MinP: 0.5, RepeatPenalty: 1},
	}
	for kind, row := range rows {
		for pi, p := range params {
			seed := uint64(pi*100 + len(kind))
			p.Seed = &seed
			full, top := New(p), New(p)
			need := top.TopNeeded()
			if need == 0 {
				t.Fatalf("params %d: TopNeeded 0", pi)
			}
			cands := TopOf(row, need)
			for draw := range 300 {
				a, b := full.Sample(row, nil), top.SampleTop(cands)
				if a != b {
					t.Fatalf("%s params %d draw %d: Sample %d, SampleTop %d", kind, pi, draw, a, b)
				}
			}
		}
	}
	// No stand-in where the whole row is needed.
	for _, p := range []Params{{Temperature: 1, TopP: 0.9, RepeatPenalty: 1}, {Temperature: 0, RepeatPenalty: 1.1, RepeatLastN: 64, TopP: 1}} {
		if n := New(p).TopNeeded(); n != 0 {
			t.Errorf("%+v: TopNeeded %d, want 0", p, n)
		}
	}
}
