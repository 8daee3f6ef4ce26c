package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/sample"
)

// TestNoLeakUnderChurn: 1 000 requests of random prompt lengths (sharing
// starts, so that prompts are reused and copied between slots) and random
// max_tokens, a third of them ended early — cancelled while queued, while
// their prompt is read, while decoding, or by a callback error (a client
// gone) — and afterwards every KV resource is back: no slot busy, nothing
// queued, no position held (Stats), the backend's KV bytes exactly the
// slots' caches (no cache lost on the way), no goroutine left, every
// cache freed by Close; and the next requests give bit for bit what a
// fresh engine gives. On the CPU backend, with the default KV memory
// budget and with one that holds two requests' blocks (requests then wait
// for blocks, cached prompts are evicted and some sequences cannot grow):
// afterwards no block is used and cached + free blocks are all of them.
// On the paged path (the CPU backend's block pool: its bytes are the
// backend's KV bytes) and the slot path (a cache per slot).
func TestNoLeakUnderChurn(t *testing.T) {
	for _, path := range kvPaths {
		for _, tc := range []struct {
			name   string
			blocks int // KV memory in blocks of 16 positions (0: the default)
		}{{"default budget", 0}, {"tight budget", 24}} {
			t.Run(path.String()+"/"+tc.name, func(t *testing.T) { testNoLeakUnderChurn(t, path.paged, tc.blocks) })
		}
	}
}

func testNoLeakUnderChurn(t *testing.T, paged bool, kvBlocks int) {
	total := 1000
	if testing.Short() {
		total = 300
	}
	m, tok := penaltyModel(t)
	opts := Options{Parallel: 4, QueueSize: 64, BatchTokens: 16, CtxLen: 512, KVBlock: 16}
	perPos := int64(m.Config.NLayer) * 2 * int64(m.Config.KVDim()) * 4
	if kvBlocks > 0 {
		opts.KVMemory = int64(kvBlocks*opts.KVBlock) * perPos
	}
	newEngine := func() (*Engine, *prefillCanceller) {
		be := &prefillCanceller{Backend: cpu.New(m, 2)}
		var b backend.Backend = be
		if !paged {
			b = noPagerCanceller{prefillCanceller: be}
		}
		e, err := New(b, tok, opts)
		if err != nil {
			t.Fatal(err)
		}
		return e, be
	}
	e, be := newEngine()
	defer e.Close()
	rng := rand.New(rand.NewPCG(15, 1000))
	bases := make([][]int32, 3)
	for i := range bases {
		bases[i] = make([]int32, 200)
		for j := range bases[i] {
			bases[i][j] = int32(rng.IntN(300))
		}
	}
	prompt := func(rng *rand.Rand) []int32 {
		p := slices.Clone(bases[rng.IntN(len(bases))][:1+rng.IntN(160)])
		for range rng.IntN(8) {
			p = append(p, int32(rng.IntN(300)))
		}
		return p
	}
	// The probes: greedy and seeded, with logprobs, over prompts whose
	// starts the churn left in the caches.
	seed := uint64(99)
	seeded := sample.DefaultParams()
	seeded.Seed = &seed
	probes := []Request{
		{Prompt: slices.Clone(bases[0][:120]), Params: sample.GreedyParams(), MaxTokens: 12, IgnoreEOS: true, TopLogprobs: 2},
		{Prompt: append(slices.Clone(bases[1][:90]), 5, 6, 7), Params: seeded, MaxTokens: 12, IgnoreEOS: true, Logprobs: true},
		{Prompt: []int32{1, 2, 3}, Params: sample.GreedyParams(), MaxTokens: 8, IgnoreEOS: true},
	}
	// A warm-up request, so that the goroutines the backend starts once
	// are in the baseline.
	if _, err := e.Generate(context.Background(), probes[2], nil); err != nil {
		t.Fatal(err)
	}
	goroutines := runtime.NumGoroutine()

	type outcome int
	const (
		finished outcome = iota
		cancelledQueued
		cancelledPrefill
		cancelledDecode
		outOfBlocks
		failed
	)
	var mu sync.Mutex
	counts := map[outcome]int{}
	var firstErr error
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := range 24 { // clients at once: more than slots + a few queued
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range jobs {
				req := Request{Prompt: prompt(rng), MaxTokens: 1 + rng.IntN(24), IgnoreEOS: rng.IntN(4) > 0,
					Params: sample.GreedyParams(), NoPrefixCache: rng.IntN(10) == 0, Logprobs: rng.IntN(3) == 0}
				if rng.IntN(2) == 0 {
					s := rng.Uint64()
					req.Params = sample.DefaultParams()
					req.Params.Seed = &s
				}
				ctx, cancel := context.WithCancel(context.Background())
				var onToken func(Token) error
				switch kind := rng.IntN(10); {
				case kind == 0: // gone before it was even submitted
					cancel()
				case kind == 1: // within microseconds: mostly still queued
					time.AfterFunc(time.Duration(rng.IntN(50))*time.Microsecond, cancel)
				case kind == 2: // while it reads its prompt (when that takes more than one step)
					be.cancelInPrefill(req.Prompt, cancel)
				case kind == 5: // at any time
					time.AfterFunc(time.Duration(rng.IntN(20000))*time.Microsecond, cancel)
				case kind == 3: // while decoding
					at := rng.IntN(req.MaxTokens)
					onToken = func(tk Token) error {
						if tk.Index == at {
							cancel()
						}
						return nil
					}
				case kind == 4: // the client goes away: the callback fails
					at := rng.IntN(req.MaxTokens)
					onToken = func(tk Token) error {
						if tk.Index == at {
							return errClientGone
						}
						return nil
					}
				}
				res, err := e.Generate(ctx, req, onToken)
				cancel()
				be.forget(req.Prompt)
				o := finished
				switch {
				case err == nil:
				case errors.Is(err, ErrCancelled) || errors.Is(err, errClientGone):
					switch {
					case res.Timings.Queue == 0 && len(res.IDs) == 0:
						o = cancelledQueued
					case len(res.IDs) == 0:
						o = cancelledPrefill
					default:
						o = cancelledDecode
					}
				case kvBlocks > 0 && errors.Is(err, ErrKVMemory) && errors.Is(err, backend.ErrOutOfMemory):
					o = outOfBlocks // the tight budget: a sequence that could not grow
				default:
					o = failed
				}
				mu.Lock()
				counts[o]++
				if o == failed && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	start := time.Now()
	for i := range total {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	t.Logf("%d requests in %v: %d finished, cancelled %d queued, %d reading the prompt, %d decoding; %d out of KV blocks",
		total, time.Since(start).Round(time.Millisecond), counts[finished], counts[cancelledQueued], counts[cancelledPrefill], counts[cancelledDecode], counts[outOfBlocks])
	if counts[failed] > 0 {
		t.Fatalf("%d requests failed; the first: %v", counts[failed], firstErr)
	}
	for o, name := range map[outcome]string{finished: "finished", cancelledQueued: "cancelled while queued",
		cancelledPrefill: "cancelled while reading the prompt", cancelledDecode: "cancelled while decoding"} {
		if counts[o] < total/100 {
			t.Errorf("only %d requests %s: the churn does not exercise that path", counts[o], name)
		}
	}

	// Every resource back.
	idle := func() bool {
		st := e.Stats()
		return st.Active == 0 && st.Queued == 0 && st.KVPositions == 0 && runtime.NumGoroutine() <= goroutines
	}
	waitFor(t, "the engine to be idle", idle)
	st := e.Stats()
	_, used, _ := be.KVBudget()
	if paged {
		// The pool's blocks keep their memory once used: at least the
		// cached ones', at most the budget's; nothing outside the pool.
		if used != st.KVCacheSize || st.KVCacheSize < int64(st.KVBlocksCached)*st.KVBlockBytes || st.KVCacheSize > int64(st.KVBlocksTotal)*st.KVBlockBytes {
			t.Errorf("the backend's KV caches hold %d bytes, the pool %d (%d blocks cached of %d, %d bytes a block)",
				used, st.KVCacheSize, st.KVBlocksCached, st.KVBlocksTotal, st.KVBlockBytes)
		}
	} else if used != st.KVCacheSize || st.KVCacheSize > int64(opts.Parallel*opts.CtxLen)*perPos || st.KVCacheSize > int64(st.KVBlocksCached)*st.KVBlockBytes {
		// The cached blocks are exactly the free slots' caches.
		t.Errorf("the backend's KV caches hold %d bytes, the slots' %d (at most %d slots × %d positions × %d bytes, %d blocks cached)",
			used, st.KVCacheSize, opts.Parallel, opts.CtxLen, perPos, st.KVBlocksCached)
	}
	// Every block back: none used.
	if st.KVBlocksUsed != 0 || st.KVBlocksCached+st.KVBlocksFree != st.KVBlocksTotal || st.KVPaged != paged {
		t.Errorf("KV blocks after the churn: %d used, %d cached, %d free of %d (paged %v)",
			st.KVBlocksUsed, st.KVBlocksCached, st.KVBlocksFree, st.KVBlocksTotal, st.KVPaged)
	}
	if paged {
		e.mu.Lock()
		checkBook(t, e.bc) // every hold given back, the entries all cached
		e.mu.Unlock()
	}
	if kvBlocks > 0 && (st.KVBlocksTotal != kvBlocks || st.KVEvictedBlocks == 0) {
		t.Errorf("%d blocks in all, %d evicted: want %d, and the churn to evict cached prompts", st.KVBlocksTotal, st.KVEvictedBlocks, kvBlocks)
	}
	if st.PrefixHitTokens == 0 {
		t.Errorf("no prompt token came from the cache: the churn does not exercise prefix reuse")
	}

	// The next requests: the same tokens and logprobs as on a fresh engine.
	fresh, freshBE := newEngine()
	for i, req := range probes {
		var got, want []Token
		if _, err := e.Generate(context.Background(), req, func(t Token) error { got = append(got, t); return nil }); err != nil {
			t.Fatalf("probe %d after the churn: %v", i, err)
		}
		if _, err := fresh.Generate(context.Background(), req, func(t Token) error { want = append(want, t); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, func(a, b Token) bool {
			return a.ID == b.ID && a.Logprob == b.Logprob && slices.Equal(a.Top, b.Top)
		}) {
			t.Errorf("probe %d: after the churn %v, on a fresh engine %v", i, got, want)
		}
	}
	for name, x := range map[string]struct {
		e  *Engine
		be *prefillCanceller
	}{"churned": {e, be}, "fresh": {fresh, freshBE}} {
		if err := x.e.Close(); err != nil {
			t.Fatal(err)
		}
		if _, used, _ := x.be.KVBudget(); used != 0 {
			t.Errorf("%s engine closed: its KV caches still hold %d bytes", name, used)
		}
	}
}

var errClientGone = errors.New("client gone")

// noPagerCanceller is prefillCanceller on the slot path (see noPager).
type noPagerCanceller struct {
	*prefillCanceller
	KVBlockLen, NewBlockPool struct{}
}

// prefillCanceller is the CPU backend that cancels the requests registered
// with it while they read their prompt: in a step that reads a chunk of
// the prompt other than its last (the chunk's tokens lie in the prompt's
// array: the engine reads the prompt in place).
type prefillCanceller struct {
	*cpu.Backend
	mu      sync.Mutex
	pending []pendingCancel
}

type pendingCancel struct {
	prompt []int32
	cancel func()
}

func (b *prefillCanceller) cancelInPrefill(prompt []int32, cancel func()) {
	b.mu.Lock()
	b.pending = append(b.pending, pendingCancel{prompt, cancel})
	b.mu.Unlock()
}

func (b *prefillCanceller) forget(prompt []int32) {
	b.mu.Lock()
	b.pending = slices.DeleteFunc(b.pending, func(p pendingCancel) bool { return &p.prompt[0] == &prompt[0] })
	b.mu.Unlock()
}

func (b *prefillCanceller) Forward(batch []*backend.Seq) error {
	b.mu.Lock()
	for _, s := range batch {
		if !s.Prefill || len(s.Tokens) == 0 {
			continue
		}
		for _, p := range b.pending {
			for k := range p.prompt {
				if &p.prompt[k] == &s.Tokens[0] && k+len(s.Tokens) < len(p.prompt) {
					p.cancel()
				}
			}
		}
	}
	b.mu.Unlock()
	return b.Backend.Forward(batch)
}
