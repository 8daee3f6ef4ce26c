package engine

import (
	"context"
	"slices"
	"sync"
	"testing"

	"worker-orcd/sample"
)

// TestPrefixReuse: a request whose prompt starts with the prompt a free
// slot read last reads only the rest (CachedTokens), and its tokens and
// logprobs are bit for bit those of a run without the cache — greedy and
// seeded, with prompts sharing all, part or none of the earlier one — on
// the CPU, or the GPU with WORKER_TEST_DEVICE=cuda.
func TestPrefixReuse(t *testing.T) {
	cached, plain := prefixEngines(t)
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
		rc, got, want := generatePair(t, cached, plain, req)
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
	// A request may opt out: it reads nothing from the cache and leaves
	// nothing in it for the next one.
	secret := []int32{201, 202, 203, 204, 205, 206, 207, 208}
	for i, r := range []Request{
		{Prompt: base, Params: sample.GreedyParams(), MaxTokens: 2, NoPrefixCache: true},
		{Prompt: secret, Params: sample.GreedyParams(), MaxTokens: 2, NoPrefixCache: true},
		{Prompt: append(slices.Clone(secret), 9), Params: sample.GreedyParams(), MaxTokens: 2},
	} {
		res, err := cached.Generate(context.Background(), r, nil)
		if err != nil || res.CachedTokens != 0 {
			t.Errorf("request %d after opted-out ones: %d cached tokens, err %v; want none", i, res.CachedTokens, err)
		}
	}
}

// TestPrefixSharedBetweenSlots: a request whose prompt starts like the
// prompt of a request still running in another slot takes those prompt
// rows from it (CachedTokens) — on a paged backend the full blocks shared,
// the rows of its partly filled last block copied (they are in no cache
// entry yet) — and its tokens and logprobs are bit for bit those of a run
// without the cache; on the CPU, or the GPU with WORKER_TEST_DEVICE=cuda.
func TestPrefixSharedBetweenSlots(t *testing.T) {
	cached, plain := prefixEngines(t)
	base := make([]int32, 56) // 3 blocks of 16 and 8 positions
	for i := range base {
		base[i] = int32((i*53 + 7) % 300)
	}
	// A reads base and keeps generating; once its first token is out, its
	// prompt rows are in its cache.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan struct{})
	aDone := make(chan error, 1)
	go func() {
		var once sync.Once
		_, err := cached.Generate(ctx, Request{Prompt: base, Params: sample.GreedyParams(), MaxTokens: 400, IgnoreEOS: true},
			func(Token) error { once.Do(func() { close(first) }); return nil })
		aDone <- err
	}()
	select {
	case <-first:
	case err := <-aDone:
		t.Fatalf("the long request ended before its first token: %v", err)
	}
	seed := uint64(3)
	seeded := sample.DefaultParams()
	seeded.Seed = &seed
	cases := []struct {
		name   string
		prompt []int32
		params sample.Params
		cached int
	}{
		{"longer", append(slices.Clone(base), 9, 10, 11), sample.GreedyParams(), 56},
		{"shares 30", append(slices.Clone(base[:30]), 1, 2), seeded, 30},
	}
	got := make([][]Token, len(cases))
	for i, tc := range cases {
		req := Request{Prompt: tc.prompt, Params: tc.params, MaxTokens: 8, IgnoreEOS: true, Logprobs: true}
		rc, err := cached.Generate(context.Background(), req, func(tk Token) error { got[i] = append(got[i], tk); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if rc.CachedTokens != tc.cached {
			t.Errorf("%s: %d prompt tokens from the other slot, want %d", tc.name, rc.CachedTokens, tc.cached)
		}
	}
	select {
	case err := <-aDone:
		t.Fatalf("the long request ended while the others ran (%v): the test did not share a running slot's rows", err)
	default:
	}
	cancel()
	<-aDone
	for i, tc := range cases {
		var want []Token
		req := Request{Prompt: tc.prompt, Params: tc.params, MaxTokens: 8, IgnoreEOS: true, Logprobs: true}
		if _, err := plain.Generate(context.Background(), req, func(tk Token) error { want = append(want, tk); return nil }); err != nil {
			t.Fatal(err)
		}
		if !tokensEqual(got[i], want) {
			t.Errorf("%s: tokens with the shared prefix %v, without %v", tc.name, got[i], want)
		}
	}
}

// TestChatReplay: ten chat turns, each resending the whole history (a
// system prompt, the earlier turns' messages and answers, a new message):
// with the prefix cache the prompt tokens actually computed drop by at
// least 80 % against the engine without it (the earlier prompts' rows
// come from the cache; the answers' rows are computed again, as prompt
// rows), and every answer is the one computed without it.
func TestChatReplay(t *testing.T) {
	cached, plain := prefixEngines(t)
	history := make([]int32, 100) // the system prompt
	for i := range history {
		history[i] = int32((i*29 + 3) % 300)
	}
	total, computed := 0, 0
	for turn := range 10 {
		for i := range 10 { // the user's message
			history = append(history, int32((turn*31+i*7+5)%300))
		}
		req := Request{Prompt: slices.Clone(history), Params: sample.GreedyParams(), MaxTokens: 16, IgnoreEOS: true, Logprobs: true}
		rc, got, want := generatePair(t, cached, plain, req)
		if !slices.EqualFunc(got, want, func(a, b Token) bool { return a.ID == b.ID && a.Logprob == b.Logprob }) {
			t.Fatalf("turn %d: answer with the cache %v, without %v", turn, got, want)
		}
		total += len(history)
		computed += len(history) - rc.CachedTokens
		for _, g := range got {
			history = append(history, g.ID)
		}
	}
	if n := plain.Stats().PrefixHitTokens; n != 0 {
		t.Fatalf("the engine without the cache took %d tokens from it", n)
	}
	drop := 1 - float64(computed)/float64(total)
	t.Logf("prompt tokens computed over 10 turns: %d with the prefix cache, %d without (−%.1f %%); hit rate %.3f",
		computed, total, 100*drop, cached.Stats().PrefixHitRate)
	if drop < 0.8 {
		t.Errorf("prompt tokens computed: %d with the cache, %d without: −%.1f %%, want at least −80 %%", computed, total, 100*drop)
	}
}

// prefixEngines returns two engines of two slots on the same model (CPU, or
// the GPU with WORKER_TEST_DEVICE=cuda): one with the prefix cache, one
// without, whose answers the first must repeat bit for bit.
func prefixEngines(t *testing.T) (cached, plain *Engine) {
	t.Helper()
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
	return newEngine(false), newEngine(true)
}

// generatePair runs req on the engine with the prefix cache and on the one
// without it: the first's result and the tokens of each.
func generatePair(t *testing.T, cached, plain *Engine, req Request) (rc *Result, got, want []Token) {
	t.Helper()
	rc, err := cached.Generate(context.Background(), req, func(tk Token) error { got = append(got, tk); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Generate(context.Background(), req, func(tk Token) error { want = append(want, tk); return nil }); err != nil {
		t.Fatal(err)
	}
	return rc, got, want
}
