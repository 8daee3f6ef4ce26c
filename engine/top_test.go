package engine

import (
	"context"
	"math"
	"slices"
	"sync/atomic"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/internal/testmodel"
	"worker-orcd/sample"
)

// topBackend is the CPU backend acting like the GPU one: rows that ask for
// TopK get only their top candidates and log-sum-exp, and no logits.
type topBackend struct{ *cpu.Backend }

func (t topBackend) Forward(batch []*backend.Seq) error {
	if err := t.Backend.Forward(batch); err != nil {
		return err
	}
	for _, s := range batch {
		s.HasTop = false
		if s.TopK > 0 && !s.AllLogits {
			s.Top, s.LSE, s.HasTop = sample.TopOf(s.Logits, s.TopK), sample.LogSumExp(s.Logits), true
			s.Logits = s.Logits[:0]
		}
	}
	return nil
}

// maskedTopBackend is topBackend with the GPU's masked selection
// (backend.TopMasker): a row with Allow gets the top of its row with every
// id outside the mask at −Inf. masks counts the Allow calls, forwards the
// rows that took their candidates so.
type maskedTopBackend struct {
	*cpu.Backend
	masks *atomic.Int64
}

func (t maskedTopBackend) MasksTop() bool { return true }

func (t maskedTopBackend) Forward(batch []*backend.Seq) error {
	if err := t.Backend.Forward(batch); err != nil {
		return err
	}
	for _, s := range batch {
		s.HasTop = false
		if s.TopK > 0 && !s.AllLogits {
			row := s.Logits
			if s.Allow != nil {
				t.masks.Add(1)
				mask := s.Allow()
				row = slices.Clone(row)
				for i := range row {
					if i/64 >= len(mask) || mask[i/64]>>(i%64)&1 == 0 {
						row[i] = float32(math.Inf(-1))
					}
				}
			}
			s.Top, s.LSE, s.HasTop = sample.TopOf(row, s.TopK), sample.LogSumExp(row), true
			s.Logits = s.Logits[:0]
		}
	}
	return nil
}

// TestTopCandidatePathMatchesFullRows: with the backend returning only top
// candidates, the engine produces the same ids and logprobs as with whole
// rows, greedy and seeded, with and without top-k.
func TestTopCandidatePathMatchesFullRows(t *testing.T) {
	m, tok := openSpec(t, testmodel.MustPreset("qwen2-micro"))
	full, err := New(cpu.New(m, 1), tok, Options{Parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	top, err := New(topBackend{cpu.New(m, 1)}, tok, Options{Parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer top.Close()
	seed := uint64(7)
	for _, p := range []sample.Params{sample.GreedyParams(),
		{Temperature: 0.9, TopK: 20, TopP: 0.9, MinP: 0.02, RepeatPenalty: 1, Seed: &seed},
		{Temperature: 0.9, TopP: 0.9, RepeatPenalty: 1, Seed: &seed}, // no top-k: whole rows either way
	} {
		req := Request{Prompt: []int32{1, 2, 3, 4}, Params: p, MaxTokens: 12, IgnoreEOS: true, Logprobs: true, TopLogprobs: 3}
		var a, b []Token
		if _, err := full.Generate(context.Background(), req, func(tk Token) error { a = append(a, tk); return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := top.Generate(context.Background(), req, func(tk Token) error { b = append(b, tk); return nil }); err != nil {
			t.Fatal(err)
		}
		for i := range a {
			if a[i].ID != b[i].ID || math.Abs(float64(a[i].Logprob-b[i].Logprob)) > 1e-4 ||
				!slices.EqualFunc(a[i].Top, b[i].Top, func(x, y sample.Candidate) bool {
					return x.ID == y.ID && math.Abs(float64(x.Logprob-y.Logprob)) < 1e-4
				}) {
				t.Fatalf("%+v token %d: whole rows %+v, top candidates %+v", p, i, a[i], b[i])
			}
		}
	}
}
