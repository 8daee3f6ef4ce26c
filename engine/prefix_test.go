package engine

import (
	"context"
	"slices"
	"testing"

	"worker-orcd/sample"
)

// TestPrefixReuse: a request whose prompt starts with the prompt a free
// slot read last reads only the rest (CachedTokens), and its tokens and
// logprobs are bit for bit those of a run without the cache — greedy and
// seeded, with prompts sharing all, part or none of the earlier one — on
// the CPU, or the GPU with WORKER_TEST_DEVICE=cuda.
func TestPrefixReuse(t *testing.T) {
	m, tok := penaltyModel(t)
	newEngine := func(noCache bool) *Engine {
		be, _ := testBackend(t, m)
		e, err := New(be, tok, Options{Parallel: 2, NoPrefixCache: noCache})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	cached, plain := newEngine(false), newEngine(true)
	base := make([]int32, 40)
	for i := range base {
		base[i] = int32((i*37 + 11) % 300)
	}
	seeded := sample.DefaultParams()
	seed := uint64(7)
	seeded.Seed = &seed
	turns := []struct {
		name   string
		prompt []int32
		params sample.Params
		cached int // prompt tokens expected from the cache
	}{
		{"first", base, sample.GreedyParams(), 0},
		{"longer", append(slices.Clone(base), 5, 6, 7, 8), sample.GreedyParams(), 40},
		{"same again", base, seeded, 39}, // the last token is always read again
		{"diverges at 20", append(slices.Clone(base[:20]), 1, 2, 3), seeded, 20},
		{"unrelated", []int32{9, 8, 7, 6, 5}, sample.GreedyParams(), 0},
	}
	for _, tc := range turns {
		req := Request{Prompt: tc.prompt, Params: tc.params, MaxTokens: 6, IgnoreEOS: true, Logprobs: true}
		var got, want []Token
		rc, err := cached.Generate(context.Background(), req, func(t Token) error { got = append(got, t); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if _, err := plain.Generate(context.Background(), req, func(t Token) error { want = append(want, t); return nil }); err != nil {
			t.Fatal(err)
		}
		if rc.CachedTokens != tc.cached {
			t.Errorf("%s: %d prompt tokens from the cache, want %d", tc.name, rc.CachedTokens, tc.cached)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d tokens with the cache, %d without", tc.name, len(got), len(want))
		}
		for i := range got {
			if got[i].ID != want[i].ID || got[i].Logprob != want[i].Logprob {
				t.Errorf("%s: token %d: %d (logprob %v) with the cache, %d (%v) without", tc.name, i, got[i].ID, got[i].Logprob, want[i].ID, want[i].Logprob)
				break
			}
		}
	}
	if n := cached.Stats().PrefixHitTokens; n != 40+39+20 {
		t.Errorf("PrefixHitTokens %d, want %d", n, 40+39+20)
	}
	if n := plain.Stats().PrefixHitTokens; n != 0 {
		t.Errorf("with NoPrefixCache: PrefixHitTokens %d", n)
	}
	// A request may opt out.
	res, err := cached.Generate(context.Background(), Request{Prompt: base, Params: sample.GreedyParams(), MaxTokens: 2, NoPrefixCache: true}, nil)
	if err != nil || res.CachedTokens != 0 {
		t.Errorf("a request with NoPrefixCache: %d cached tokens, err %v", res.CachedTokens, err)
	}
}
