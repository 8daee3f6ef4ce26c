package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/sample"
)

// TestPagedPrefixCacheExact: requests whose prompts share starts of
// every length with earlier ones — ending before, at and after a block's
// end, longer and shorter than the earlier prompts — greedy and seeded,
// with logprobs: each takes from the cache exactly the longest start it
// shares with an earlier prompt (never its last token), and its tokens and
// logprobs are bit for bit those of a run without the cache. A request
// that opts out takes nothing and leaves nothing.
func TestPagedPrefixCacheExact(t *testing.T) {
	m, tok := penaltyModel(t)
	cached, _ := budgetEngine(t, m, tok, 2, kvPaths[1], 1000)
	plain := plainEngine(t, m, tok, 2)
	rng := rand.New(rand.NewPCG(15, 16))
	bases := [][]int32{kvPrompt(90, 1), kvPrompt(90, 2)}
	var earlier [][]int32 // prompts the cache has seen
	seeded := sample.DefaultParams()
	for i := range 40 {
		b := bases[rng.IntN(2)]
		n := []int{1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 49, 64, 80, 90}[rng.IntN(14)]
		p := slices.Clone(b[:n])
		for range rng.IntN(4) {
			p = append(p, int32(rng.IntN(300)))
		}
		req := Request{Prompt: p, Params: sample.GreedyParams(), MaxTokens: 1 + rng.IntN(8), IgnoreEOS: true, Logprobs: true}
		if i%3 == 1 {
			seed := rng.Uint64()
			req.Params = seeded
			req.Params.Seed = &seed
		}
		optOut := i%7 == 6
		req.NoPrefixCache = optOut
		want := 0
		if !optOut {
			for _, q := range earlier {
				want = max(want, commonPrefix(q, p))
			}
			want = min(want, len(p)-1)
			earlier = append(earlier, p)
		}
		rc, got, exp := generatePair(t, cached, plain, req)
		if rc.CachedTokens != want {
			t.Errorf("request %d (%d tokens, opted out %v): %d tokens from the cache, want %d", i, len(p), optOut, rc.CachedTokens, want)
		}
		if !tokensEqual(got, exp) {
			t.Fatalf("request %d (%d tokens, %d cached): %v with the cache, %v without", i, len(p), rc.CachedTokens, got, exp)
		}
	}
	st := cached.Stats()
	checkBlocks(t, st)
	if st.PrefixHitTokens == 0 || st.PrefixHitRate <= 0 || st.PrefixHitRate >= 1 || st.KVBlocksCached == 0 || st.KVEvictedBlocks != 0 {
		t.Errorf("stats: %+v", st)
	}
	cached.mu.Lock()
	checkBook(t, cached.bc)
	cached.mu.Unlock()
}

// TestPagedChoicesShare: the other choices of a request with n > 1 start
// once the first has read the prompt (as the server runs them): they share
// its full blocks (held, not copied: the blocks in use are fewer than
// separate sequences would hold), copy the rows of its last partial block,
// read only the prompt's last token, and diverge after it, each bit for
// bit what it gives alone without the cache.
func TestPagedChoicesShare(t *testing.T) {
	m, tok := penaltyModel(t)
	e, be := budgetEngine(t, m, tok, 4, kvPaths[1], -1)
	plain := plainEngine(t, m, tok, 1)
	prompt := kvPrompt(53, 3) // 3 full blocks and 5 positions
	const choices, maxTokens = 4, 24
	reqs := make([]Request, choices)
	for i := range reqs {
		seed := uint64(100 + i)
		reqs[i] = Request{Prompt: prompt, Params: sample.DefaultParams(), MaxTokens: maxTokens, IgnoreEOS: true, Logprobs: true}
		reqs[i].Params.Seed = &seed
	}
	var mu sync.Mutex
	maxUsed := 0
	be.hook = func(batch []*backend.Seq) {
		if be.stepsTaken() == 2 {
			// The first choice's first decode step: it has read the
			// prompt; the others are submitted before it goes on.
			waitIn(t, "the other choices", func() bool { st := e.Stats(); return st.Active+st.Queued == choices })
		}
		if len(batch) == choices {
			st := e.Stats()
			mu.Lock()
			maxUsed = max(maxUsed, st.KVBlocksUsed)
			mu.Unlock()
		}
	}
	type out struct {
		toks []Token
		res  *Result
		err  error
	}
	outs := make([]out, choices)
	var wg sync.WaitGroup
	wg.Go(func() { outs[0].toks, outs[0].res, outs[0].err = generate(e, reqs[0]) })
	waitFor(t, "the first choice to read the prompt", func() bool { return be.stepsTaken() >= 2 })
	for i := 1; i < choices; i++ {
		wg.Go(func() { outs[i].toks, outs[i].res, outs[i].err = generate(e, reqs[i]) })
	}
	wg.Wait()
	distinct := 0
	for i, o := range outs {
		want, _, err := generate(plain, reqs[i])
		if o.err != nil || err != nil {
			t.Fatalf("choice %d: %v (alone: %v)", i, o.err, err)
		}
		if !tokensEqual(o.toks, want) {
			t.Errorf("choice %d: %v sharing the prompt, %v alone", i, o.toks, want)
		}
		if wantCached := map[bool]int{true: 0, false: len(prompt) - 1}[i == 0]; o.res.CachedTokens != wantCached {
			t.Errorf("choice %d: %d prompt tokens from the cache, want %d", i, o.res.CachedTokens, wantCached)
		}
		if i > 0 && !tokensEqual(o.toks, outs[0].toks) {
			distinct++
		}
	}
	if distinct == 0 {
		t.Error("every choice gave the first one's tokens: the test does not show them diverge")
	}
	// Alone, each would hold the prompt's 4 blocks and one more as it
	// generates (53 + 24 positions: 5 blocks); sharing, the 3 full
	// blocks are held once.
	if apart := choices * 5; maxUsed == 0 || maxUsed > apart-3*(choices-1) {
		t.Errorf("%d blocks used with the %d choices running, want at most %d (%d apart, 3 of each shared)", maxUsed, choices, apart-3*(choices-1), apart)
	}
	st := e.Stats()
	checkBlocks(t, st)
	if st.KVBlocksUsed != 0 {
		t.Errorf("afterwards %d blocks used", st.KVBlocksUsed)
	}
}

// TestPagedSamePromptAtOnce: two requests of the same prompt admitted
// together both read it (nothing was cached yet; the second in two
// chunks); as their rows complete blocks, the second reads the first's
// blocks and gives its own back, so they hold the prompt's full blocks
// once; the tokens are bit for bit those without the cache.
func TestPagedSamePromptAtOnce(t *testing.T) {
	m, tok := penaltyModel(t)
	e, be := budgetEngine(t, m, tok, 2, kvPaths[1], -1)
	plain := plainEngine(t, m, tok, 1)
	req := Request{Prompt: kvPrompt(40, 5), Params: sample.GreedyParams(), MaxTokens: 12, IgnoreEOS: true, Logprobs: true}
	var mu sync.Mutex
	var used []int
	first := true
	be.hook = func(batch []*backend.Seq) {
		mu.Lock()
		defer mu.Unlock()
		if first {
			// A one-token request's step: the two are queued meanwhile,
			// to be admitted together once it ends.
			first = false
			waitIn(t, "the two to be queued", func() bool { return e.Stats().Queued == 2 })
			return
		}
		if len(batch) == 2 {
			used = append(used, e.Stats().KVBlocksUsed)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, _, err := generate(e, Request{Prompt: kvPrompt(5, 9), Params: sample.GreedyParams(), MaxTokens: 1}); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, "the first request to start", func() bool { return be.stepsTaken() > 0 })
	outs := make([][]Token, 2)
	errs := make([]error, 2)
	for i := range outs {
		wg.Go(func() { outs[i], _, errs[i] = generate(e, req) })
	}
	wg.Wait()
	want, _, _ := generate(plain, req)
	for i := range outs {
		if errs[i] != nil || !tokensEqual(outs[i], want) {
			t.Errorf("request %d: %v (%v), alone without the cache %v", i, outs[i], errs[i], want)
		}
	}
	// Each holds blocksFor(40)+1 = 4 blocks at first (8); once the
	// prompt is read, blocks 0 and 1 are held once (6).
	if len(used) < 2 || used[0] != 8 || used[len(used)-1] != 6 {
		t.Errorf("blocks used at each step: %v, want 8 at first and 6 once the prompt is read", used)
	}
	checkBlocks(t, e.Stats())
}

// TestPagedEviction: with a budget of 8 blocks, the blocks of ended
// requests' prompts stay cached until blocks are needed; then the least
// recently used go first, and of one prompt the deeper blocks before its
// start (which the next request sharing that start still finds).
func TestPagedEviction(t *testing.T) {
	m, tok := penaltyModel(t)
	e, _ := budgetEngine(t, m, tok, 1, kvPaths[1], 8)
	plain := plainEngine(t, m, tok, 1)
	a, b, c := kvPrompt(34, 1), kvPrompt(34, 2), kvPrompt(50, 3)
	steps := []struct {
		name    string
		prompt  []int32
		cached  int   // tokens from the cache
		evicted int64 // blocks evicted so far
		blocks  int   // cached afterwards
	}{
		// 34 positions: 2 full blocks and a partial one of 2 rows; 3
		// blocks held (34 + 2 generated positions), all 3 cached after.
		{"a", a, 0, 0, 3},
		{"b", b, 0, 0, 6},
		// 50 + 2 positions: 4 blocks; 2 free, 2 evicted: a's partial
		// block, then its block 1.
		{"c: evicts a's end", c, 0, 2, 8},
		// a's block 0 is still there; its 2 more blocks evict b's
		// partial block and block 1.
		{"a again: its start", a, 16, 4, 8},
		{"b again: its start", b, 16, 6, 8},
		// a's 2 full blocks and 1 row of its partial one; 1 fresh
		// block: the least recently used is now c's block 1 (its deeper
		// ones went before), c's block 0 stays.
		{"a again: all but the last", append(slices.Clone(a[:33]), 7), 33, 7, 8},
	}
	for _, s := range steps {
		req := Request{Prompt: s.prompt, Params: sample.GreedyParams(), MaxTokens: 2, IgnoreEOS: true, Logprobs: true}
		got, res, err := generate(e, req)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		want, _, _ := generate(plain, req)
		if !tokensEqual(got, want) {
			t.Errorf("%s: %v with the cache, %v without", s.name, got, want)
		}
		st := e.Stats()
		checkBlocks(t, st)
		if res.CachedTokens != s.cached || st.KVEvictedBlocks != s.evicted || st.KVBlocksCached != s.blocks {
			t.Errorf("%s: %d tokens from the cache, %d blocks evicted, %d cached; want %d, %d, %d",
				s.name, res.CachedTokens, st.KVEvictedBlocks, st.KVBlocksCached, s.cached, s.evicted, s.blocks)
		}
	}
}

// failAt is the CPU backend that fails the step in which a prompt chunk
// starts at position at (a device error in the middle of a prompt).
type failAt struct {
	*cpu.Backend
	at int
}

func (f *failAt) Forward(batch []*backend.Seq) error {
	for _, s := range batch {
		if s.Prefill && s.KV.Len() == f.at {
			return errors.New("injected failure")
		}
	}
	return f.Backend.Forward(batch)
}

// TestPagedFailureCachesNothingMore: a request whose step fails in the
// middle of its prompt leaves in the cache only the blocks completed by
// the steps before (whole, correct rows), never the block being written;
// the next request of that prompt takes exactly those and gives what a
// run without the cache gives.
func TestPagedFailureCachesNothingMore(t *testing.T) {
	m, tok := penaltyModel(t)
	be := &failAt{Backend: cpu.New(m, 1), at: 40}
	e, err := New(be, tok, Options{Parallel: 1, BatchTokens: 40, CtxLen: 256, KVMemory: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	plain := plainEngine(t, m, tok, 1)
	req := Request{Prompt: kvPrompt(70, 4), Params: sample.GreedyParams(), MaxTokens: 4, IgnoreEOS: true, Logprobs: true}
	if _, _, err := generate(e, req); !errors.Is(err, ErrForward) {
		t.Fatalf("the failing request: %v, want ErrForward", err)
	}
	st := e.Stats()
	checkBlocks(t, st)
	if st.KVBlocksCached != 2 || st.KVBlocksUsed != 0 {
		t.Fatalf("after the failure: %d blocks cached, %d used; want the 2 full blocks of the first 40 positions", st.KVBlocksCached, st.KVBlocksUsed)
	}
	be.at = -1
	got, res, err := generate(e, req)
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := generate(plain, req)
	if res.CachedTokens != 32 || !tokensEqual(got, want) {
		t.Errorf("after the failure: %d tokens cached (want 32), %v (without the cache %v)", res.CachedTokens, got, want)
	}
}

// TestPagedScore: Score on a paged backend takes its cache's blocks from
// the pool (within the budget, evicting cached blocks) and gives them back;
// its logprobs are those of the slot path's.
func TestPagedScore(t *testing.T) {
	m, tok := penaltyModel(t)
	e, _ := budgetEngine(t, m, tok, 1, kvPaths[1], 6)
	slots, _ := budgetEngine(t, m, tok, 1, kvPaths[0], -1)
	if _, _, err := generate(e, Request{Prompt: kvPrompt(60, 1), Params: sample.GreedyParams(), MaxTokens: 2}); err != nil {
		t.Fatal(err)
	}
	before := e.Stats()
	ids := kvPrompt(80, 2) // 5 blocks: 4 of the cached ones go
	got, err := e.Score(context.Background(), ids, 2)
	if err != nil {
		t.Fatal(err)
	}
	want, err := slots.Score(context.Background(), ids, 2)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("paged score %v, slot path's %v", got.Positions[:3], want.Positions[:3])
	}
	st := e.Stats()
	checkBlocks(t, st)
	if before.KVBlocksCached != 4 || st.KVBlocksUsed != 0 || st.KVEvictedBlocks != 3 {
		t.Errorf("cached %d before; after: %d used, %d evicted; want 4 cached, 0 used, 3 evicted", before.KVBlocksCached, st.KVBlocksUsed, st.KVEvictedBlocks)
	}
}
