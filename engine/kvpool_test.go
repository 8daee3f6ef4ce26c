package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/model"
	"worker-orcd/sample"
	"worker-orcd/tokenizer"
)

// hookBackend is the CPU backend that calls hook (when set) before each
// forward step with the step's batch.
type hookBackend struct {
	*cpu.Backend
	mu    sync.Mutex
	hook  func(batch []*backend.Seq)
	steps int
}

func (b *hookBackend) Forward(batch []*backend.Seq) error {
	b.mu.Lock()
	h := b.hook
	b.steps++
	b.mu.Unlock()
	if h != nil {
		h(batch)
	}
	return b.Backend.Forward(batch)
}

// noPager is the CPU backend with its backend.Pager hidden (the fields
// shadow the promoted methods), so that the engine runs the slot path: a
// cache of its own per slot, the prefix cache a free slot's last prompt.
type noPager struct {
	*hookBackend
	KVBlockLen, NewBlockPool struct{}
}

// kvPath is one of the engine's two ways of keeping KV caches: paged
// (blocks of the CPU backend's 16 positions from one pool) or the slot
// path (blocks of 8 positions of accounting).
type kvPath struct {
	paged bool
	block int // positions a block
}

var kvPaths = []kvPath{{false, 8}, {true, cpu.KVBlockLen}}

func (p kvPath) String() string {
	if p.paged {
		return "paged"
	}
	return "slots"
}

// x scales positions that the tests give for blocks of 8 to the path's
// blocks (the same counts of blocks).
func (p kvPath) x(n int) int { return n * p.block / 8 }

// budgetEngine is an engine on the CPU backend, on the path's KV caches,
// whose KV memory budget is blocks blocks (blocks < 0: no limit).
func budgetEngine(t *testing.T, m *model.Model, tok *tokenizer.Tokenizer, parallel int, path kvPath, blocks int) (*Engine, *hookBackend) {
	t.Helper()
	be := &hookBackend{Backend: cpu.New(m, 1)}
	var b backend.Backend = be
	if !path.paged {
		b = noPager{hookBackend: be}
	}
	mem := int64(-1)
	if blocks >= 0 {
		mem = int64(blocks*path.block) * be.KVBytesPerPosition()
	}
	e, err := New(b, tok, Options{Parallel: parallel, BatchTokens: 64, CtxLen: 256, KVBlock: 8, KVMemory: mem})
	if err != nil {
		t.Fatal(err)
	}
	if e.Stats().KVPaged != path.paged || e.Stats().KVBlockPositions != path.block {
		t.Fatalf("%v engine: paged %v, blocks of %d positions", path, e.Stats().KVPaged, e.Stats().KVBlockPositions)
	}
	t.Cleanup(func() { e.Close() })
	return e, be
}

// plainEngine is the engine the budget tests compare with: the slot path
// without a budget nor the prefix cache.
func plainEngine(t *testing.T, m *model.Model, tok *tokenizer.Tokenizer, parallel int) *Engine {
	t.Helper()
	e, err := New(noPager{hookBackend: &hookBackend{Backend: cpu.New(m, 1)}}, tok, Options{Parallel: parallel, BatchTokens: 64, CtxLen: 256, KVMemory: -1, NoPrefixCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func kvPrompt(n, salt int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32((i*31 + salt*97 + 5) % 300)
	}
	return p
}

// checkBlocks fails when the block counts do not add up.
func checkBlocks(t *testing.T, st Stats) {
	t.Helper()
	if st.KVBlocksUsed+st.KVBlocksCached+st.KVBlocksFree != st.KVBlocksTotal || st.KVBlocksUsed < 0 || st.KVBlocksCached < 0 || st.KVBlocksFree < 0 {
		t.Errorf("KV blocks: %d used + %d cached + %d free, %d in all", st.KVBlocksUsed, st.KVBlocksCached, st.KVBlocksFree, st.KVBlocksTotal)
	}
}

// tokensEqual compares ids and logprobs bit for bit.
func tokensEqual(a, b []Token) bool {
	return slices.EqualFunc(a, b, func(x, y Token) bool { return x.ID == y.ID && x.Logprob == y.Logprob })
}

// generate runs req and collects its tokens.
func generate(e *Engine, req Request) ([]Token, *Result, error) {
	var got []Token
	res, err := e.Generate(context.Background(), req, func(t Token) error { got = append(got, t); return nil })
	return got, res, err
}

// TestKVAdmissionWaits: two requests for two free slots, and a budget
// that holds only one request's blocks: the second waits in the queue
// (never in a batch beside the first) and starts once the first has given
// its blocks back; with room for both they run together. The tokens and
// logprobs are bit for bit those of an engine without a budget.
func TestKVAdmissionWaits(t *testing.T) {
	m, tok := penaltyModel(t)
	plain := plainEngine(t, m, tok, 2)
	cases := []struct {
		name     string
		blocks   int
		together bool // both requests in one batch at some step
	}{
		{"one fits", 4, false}, // each starts with 3 blocks and grows to 4
		{"both fit", 8, true},  // 3 + 3 and room to grow
		{"no limit", -1, true}, // the slots alone bound it
		{"one and a bit", 5, false},
	}
	for _, path := range kvPaths {
		for _, tc := range cases {
			t.Run(path.String()+"/"+tc.name, func(t *testing.T) {
				testKVAdmissionWaits(t, path, m, tok, plain, tc.blocks, tc.together)
			})
		}
	}
}

func testKVAdmissionWaits(t *testing.T, path kvPath, m *model.Model, tok *tokenizer.Tokenizer, plain *Engine, blocks int, wantTogether bool) {
	e, be := budgetEngine(t, m, tok, 2, path, blocks)
	reqs := []Request{
		{Prompt: kvPrompt(path.x(10), 1), Params: sample.GreedyParams(), MaxTokens: path.x(20), IgnoreEOS: true, Logprobs: true},
		{Prompt: kvPrompt(path.x(10), 2), Params: sample.GreedyParams(), MaxTokens: path.x(20), IgnoreEOS: true, Logprobs: true},
	}
	var mu sync.Mutex
	together, sawWait := false, false
	first := true
	be.hook = func(batch []*backend.Seq) {
		st := e.Stats()
		mu.Lock()
		defer mu.Unlock()
		if first {
			// The first request's first step: the second is
			// submitted meanwhile and must be queued by now.
			first = false
			waitIn(t, "the second request to be queued", func() bool { return e.Stats().Queued == 1 })
			return
		}
		if len(batch) == 2 {
			together = true
		}
		if st.Queued == 1 && st.Active == 1 {
			sawWait = true // a slot is free: it waits for blocks
		}
		if st.KVBlocksUsed+st.KVBlocksCached+st.KVBlocksFree != st.KVBlocksTotal {
			t.Errorf("step: %+v", st)
		}
	}
	type out struct {
		toks []Token
		err  error
	}
	outs := make([]out, 2)
	var wg sync.WaitGroup
	wg.Go(func() { outs[0].toks, _, outs[0].err = generate(e, reqs[0]) })
	waitFor(t, "the first request to start", func() bool { return be.stepsTaken() > 0 })
	wg.Go(func() { outs[1].toks, _, outs[1].err = generate(e, reqs[1]) })
	wg.Wait()
	for i, o := range outs {
		want, _, err := generate(plain, reqs[i])
		if o.err != nil || err != nil {
			t.Fatalf("request %d: %v (without a budget: %v)", i, o.err, err)
		}
		if !tokensEqual(o.toks, want) {
			t.Errorf("request %d: %v with the budget, %v without", i, o.toks, want)
		}
	}
	if together != wantTogether || sawWait == wantTogether {
		t.Errorf("ran together %v, waited for blocks %v; want together %v", together, sawWait, wantTogether)
	}
	st := e.Stats()
	checkBlocks(t, st)
	if st.KVBlocksUsed != 0 {
		t.Errorf("after both: %d blocks used", st.KVBlocksUsed)
	}
}

// waitIn is waitFor for goroutines other than the test's: it reports a
// time-out with Errorf and returns.
func waitIn(t *testing.T, what string, cond func() bool) {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %s", what)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func (b *hookBackend) stepsTaken() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.steps
}

// TestKVEvictionOrder: makeRoom frees the blocks asked for by evicting
// free slots' caches — those without a prompt worth keeping first, then
// the least recently used — never a busy slot's nor one it is told to
// keep, and evicts nothing when even all of them would not do.
func TestKVEvictionOrder(t *testing.T) {
	type sl struct {
		busy    bool
		blocks  int
		prefix  bool
		lastUse int64
	}
	cases := []struct {
		name    string
		total   int
		slots   []sl
		keep    []int
		n       int
		ok      bool
		evicted []int
	}{
		{"free blocks do", 10, []sl{{false, 2, true, 1}, {false, 2, true, 2}}, nil, 6, true, nil},
		{"least recently used first", 10, []sl{{false, 3, true, 5}, {false, 3, true, 2}, {false, 3, true, 9}}, nil, 3, true, []int{1}},
		{"as many as needed", 10, []sl{{false, 3, true, 5}, {false, 3, true, 2}, {false, 3, true, 9}}, nil, 5, true, []int{0, 1}},
		{"an empty cache before any prompt", 10, []sl{{false, 3, true, 1}, {false, 3, false, 7}, {false, 3, true, 9}}, nil, 3, true, []int{1}},
		{"busy slots stay", 10, []sl{{true, 3, true, 1}, {false, 3, true, 4}, {false, 3, true, 3}}, nil, 4, true, []int{2}},
		{"kept slots stay", 10, []sl{{false, 3, true, 1}, {false, 3, true, 4}, {false, 3, true, 3}}, []int{0}, 4, true, []int{2}},
		{"not enough even so", 10, []sl{{true, 4, true, 1}, {false, 3, true, 4}, {false, 2, true, 3}}, nil, 7, false, nil},
		{"all of them", 10, []sl{{false, 4, true, 1}, {false, 3, true, 4}, {false, 2, true, 3}}, nil, 10, true, []int{0, 1, 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := &Engine{kvTotal: tc.total, kvLimited: true, blockPos: 8}
			freed := map[int]bool{}
			for i, s := range tc.slots {
				x := &slot{blocks: s.blocks, lastUse: s.lastUse, kv: &countKV{onFree: func() { freed[i] = true }}}
				if s.prefix {
					x.prefix = []int32{1, 2}
				}
				if s.busy {
					x.seq = &seq{}
				}
				e.slots = append(e.slots, x)
			}
			var keep []*slot
			for _, i := range tc.keep {
				keep = append(keep, e.slots[i])
			}
			if ok := e.makeRoom(tc.n, keep...); ok != tc.ok {
				t.Fatalf("makeRoom(%d) = %v, want %v", tc.n, ok, tc.ok)
			}
			var got []int
			for i := range tc.slots {
				if freed[i] {
					got = append(got, i)
					if e.slots[i].kv != nil || e.slots[i].blocks != 0 || e.slots[i].prefix != nil {
						t.Errorf("slot %d evicted but still holds %d blocks", i, e.slots[i].blocks)
					}
				}
			}
			if !slices.Equal(got, tc.evicted) {
				t.Errorf("evicted slots %v, want %v", got, tc.evicted)
			}
			if tc.ok && e.kvFree() < tc.n {
				t.Errorf("%d blocks free after makeRoom(%d)", e.kvFree(), tc.n)
			}
		})
	}
}

// countKV is a KV cache that only says when it is freed.
type countKV struct{ onFree func() }

func (k *countKV) Len() int           { return 0 }
func (k *countKV) Cap() int           { return 0 }
func (k *countKV) Bytes() int64       { return 0 }
func (k *countKV) Reserve(int) error  { return nil }
func (k *countKV) Truncate(int) error { return nil }
func (k *countKV) Free()              { k.onFree() }

// TestKVEvictionInEngine: three requests run together and end one after
// the other; a fourth that needs more blocks than are free evicts the
// least recently used cached prompt (the second's: the first's slot is
// the one it takes) and only that one, so the third's prompt is still
// reused and the second's is read again, which in turn evicts the least
// recently used (the fourth's) — results bit for bit those without a
// budget. On the slot path (TestPagedEviction is the paged path's).
func TestKVEvictionInEngine(t *testing.T) {
	m, tok := penaltyModel(t)
	plain := plainEngine(t, m, tok, 3)
	e, be := budgetEngine(t, m, tok, 3, kvPaths[0], 8)
	req := func(p []int32, n int) Request {
		return Request{Prompt: p, Params: sample.GreedyParams(), MaxTokens: n, IgnoreEOS: true, Logprobs: true}
	}
	// 9 + up to 7 positions: 2 blocks each, 6 of 8 in all; they end in
	// this order whichever starts first (one step ahead of the others).
	first := []Request{req(kvPrompt(9, 1), 1), req(kvPrompt(9, 2), 4), req(kvPrompt(9, 3), 7)}
	started := make(chan struct{})
	be.hook = func([]*backend.Seq) {
		<-started // every one submitted before the first step
	}
	var wg sync.WaitGroup
	for i, r := range first {
		wg.Go(func() {
			if _, _, err := generate(e, r); err != nil {
				t.Errorf("request %d: %v", i, err)
			}
		})
	}
	waitFor(t, "the three to be submitted", func() bool { st := e.Stats(); return st.Queued+st.Active == 3 })
	close(started)
	wg.Wait()
	if st := e.Stats(); st.KVBlocksCached != 6 || st.KVBlocksFree != 2 {
		t.Fatalf("after the three: %+v, want 6 blocks cached, 2 free", st)
	}
	steps := []struct {
		name    string
		req     Request
		cached  int
		evicted int64 // blocks evicted so far
	}{
		{"needs 5 blocks: evicts the second's 2", req(kvPrompt(38, 4), 2), 0, 2},
		{"the third's prompt is still there", req(kvPrompt(9, 3), 2), 8, 2},
		{"the second's is not; 1 block free: the fourth's 5 go (least recently used)", req(kvPrompt(9, 2), 2), 0, 7},
		{"the third's is still there", req(kvPrompt(9, 3), 3), 8, 7},
		{"the fourth's is not; it needs 5 of 4 free: the second's go", req(kvPrompt(38, 4), 1), 0, 9},
	}
	for _, s := range steps {
		got, res, err := generate(e, s.req)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		want, _, err := generate(plain, s.req)
		if err != nil {
			t.Fatal(err)
		}
		if !tokensEqual(got, want) {
			t.Errorf("%s: %v with the budget, %v without", s.name, got, want)
		}
		st := e.Stats()
		checkBlocks(t, st)
		if res.CachedTokens != s.cached || st.KVEvictedBlocks != s.evicted {
			t.Errorf("%s: %d tokens from the cache, %d blocks evicted; want %d and %d", s.name, res.CachedTokens, st.KVEvictedBlocks, s.cached, s.evicted)
		}
	}
}

// TestKVNeverFits: a prompt that needs more blocks than the whole budget
// holds is refused at once with an error that says what was asked, what
// the budget is and what to do; one that fills the budget exactly runs
// (its first token needs no position of its own).
func TestKVNeverFits(t *testing.T) {
	for _, path := range kvPaths {
		t.Run(path.String(), func(t *testing.T) { testKVNeverFits(t, path) })
	}
}

func testKVNeverFits(t *testing.T, path kvPath) {
	m, tok := penaltyModel(t)
	blocks := 32 / path.block
	e, _ := budgetEngine(t, m, tok, 2, path, blocks) // 32 positions
	cases := []struct {
		prompt int
		fits   bool
	}{{8, true}, {32, true}, {33, false}, {200, false}}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.prompt), func(t *testing.T) {
			start := time.Now()
			res, err := e.Generate(context.Background(), Request{Prompt: kvPrompt(tc.prompt, 1), Params: sample.GreedyParams(), MaxTokens: 1}, nil)
			if tc.fits {
				if err != nil || len(res.IDs) != 1 {
					t.Fatalf("%d-token prompt: %v, %v", tc.prompt, res, err)
				}
				return
			}
			var ke *KVMemoryError
			if !errors.As(err, &ke) || ke.Grow || !errors.Is(err, ErrInvalidRequest) || !errors.Is(err, ErrKVMemory) || errors.Is(err, backend.ErrOutOfMemory) {
				t.Fatalf("%d-token prompt: %v, want a KVMemoryError matching ErrInvalidRequest", tc.prompt, err)
			}
			msg := err.Error()
			for _, want := range []string{fmt.Sprintf("%d tokens", tc.prompt), fmt.Sprintf("holds %d blocks", blocks), "--kv-memory"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q lacks %q", msg, want)
				}
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("refused after %v, want at once", d)
			}
			if _, err := e.Score(context.Background(), kvPrompt(tc.prompt, 1), 0); !errors.As(err, &ke) {
				t.Errorf("Score of %d ids: %v, want a KVMemoryError", tc.prompt, err)
			}
		})
	}
	checkBlocks(t, e.Stats())
}

// TestKVCannotGrow: two running sequences fill the budget; the first to
// need another block (the one ahead) ends alone with an error matching
// backend.ErrOutOfMemory, keeping the tokens it generated (those of a run
// without a budget), and the other takes its blocks and finishes bit for
// bit as without a budget.
func TestKVCannotGrow(t *testing.T) {
	m, tok := penaltyModel(t)
	plain := plainEngine(t, m, tok, 2)
	cases := []struct {
		name   string
		blocks int
		fails  bool
	}{
		{"6 blocks: the first fails", 6, true},
		{"10 blocks: both finish", 10, false},
	}
	for _, path := range kvPaths {
		for _, tc := range cases {
			t.Run(path.String()+"/"+tc.name, func(t *testing.T) {
				e, be := budgetEngine(t, m, tok, 2, path, tc.blocks)
				reqs := []Request{
					{Prompt: kvPrompt(path.x(9), 1), Params: sample.GreedyParams(), MaxTokens: path.x(30), IgnoreEOS: true, Logprobs: true},
					{Prompt: kvPrompt(path.x(9), 2), Params: sample.GreedyParams(), MaxTokens: path.x(30), IgnoreEOS: true, Logprobs: true},
				}
				var once sync.Once
				be.hook = func([]*backend.Seq) {
					once.Do(func() { waitIn(t, "the second request to be queued", func() bool { return e.Stats().Queued == 1 }) })
				}
				type out struct {
					toks []Token
					res  *Result
					err  error
				}
				outs := make([]out, 2)
				var wg sync.WaitGroup
				wg.Go(func() { outs[0].toks, outs[0].res, outs[0].err = generate(e, reqs[0]) })
				waitFor(t, "the first request to start", func() bool { return be.stepsTaken() > 0 })
				wg.Go(func() { outs[1].toks, outs[1].res, outs[1].err = generate(e, reqs[1]) })
				wg.Wait()
				for i, o := range outs {
					want, _, err := generate(plain, reqs[i])
					if err != nil {
						t.Fatal(err)
					}
					if i == 0 && tc.fails {
						var ke *KVMemoryError
						if !errors.As(o.err, &ke) || !ke.Grow || !errors.Is(o.err, backend.ErrOutOfMemory) || o.res.StopReason != StopError {
							t.Fatalf("request 0: %v, want a KVMemoryError that matches backend.ErrOutOfMemory", o.err)
						}
						// 3 blocks (24 positions of 8): the 9 of the prompt
						// and 15 fed tokens; the 16th came from the last.
						n := path.x(24) - path.x(9) + 1
						if len(o.toks) != n || !tokensEqual(o.toks, want[:n]) || ke.Positions != path.x(24)+1 {
							t.Errorf("request 0 ended at position %d after %v, want %d tokens of %v", ke.Positions-1, o.toks, n, want)
						}
						if !strings.Contains(o.err.Error(), "retry") {
							t.Errorf("message %q says nothing of what to do", o.err)
						}
						continue
					}
					if o.err != nil || !tokensEqual(o.toks, want) {
						t.Errorf("request %d: %v (%v), without a budget %v", i, o.toks, o.err, want)
					}
				}
				st := e.Stats()
				checkBlocks(t, st)
				if st.KVBlocksUsed != 0 {
					t.Errorf("after both: %d blocks used", st.KVBlocksUsed)
				}
			})
		}
	}
}

// TestKVNoDeadlock: many requests at once, more than the budget can hold
// together, with scoring calls among them: every one ends (finished, or a
// sequence that could not grow), none is left waiting; the finished ones
// give bit for bit what an engine without a budget gives, and every block
// is back.
func TestKVNoDeadlock(t *testing.T) {
	m, tok := penaltyModel(t)
	plain := plainEngine(t, m, tok, 3)
	cases := []struct {
		name     string
		parallel int
		blocks   int
	}{
		{"3 slots, 8 blocks", 3, 8},
		{"3 slots, 14 blocks", 3, 14},
		{"1 slot, 6 blocks", 1, 6},
	}
	for _, path := range kvPaths {
		for _, tc := range cases {
			t.Run(path.String()+"/"+tc.name, func(t *testing.T) {
				e, _ := budgetEngine(t, m, tok, tc.parallel, path, tc.blocks)
				var wg sync.WaitGroup
				var mu sync.Mutex
				finished, outOfBlocks := 0, 0
				for i := range 16 {
					wg.Go(func() {
						if i%5 == 4 {
							if _, err := e.Score(context.Background(), kvPrompt(path.x(12+i), i), 0); err != nil {
								t.Errorf("score %d: %v", i, err)
							}
							return
						}
						req := Request{Prompt: kvPrompt(path.x(5+2*i), i%4), Params: sample.GreedyParams(), MaxTokens: path.x(4 + 2*i), IgnoreEOS: true, Logprobs: true}
						got, _, err := generate(e, req)
						mu.Lock()
						defer mu.Unlock()
						if errors.Is(err, ErrKVMemory) && errors.Is(err, backend.ErrOutOfMemory) {
							outOfBlocks++
							return
						}
						if err != nil {
							t.Errorf("request %d: %v", i, err)
							return
						}
						finished++
						want, _, _ := generate(plain, req)
						if !tokensEqual(got, want) {
							t.Errorf("request %d: %v with the budget, %v without", i, got, want)
						}
					})
				}
				done := make(chan struct{})
				go func() { wg.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(20 * time.Second):
					t.Fatalf("requests still waiting after 20 s: %+v", e.Stats())
				}
				t.Logf("%d finished, %d out of blocks", finished, outOfBlocks)
				if finished == 0 {
					t.Error("no request finished")
				}
				st := e.Stats()
				checkBlocks(t, st)
				if st.KVBlocksUsed != 0 || st.Active != 0 || st.Queued != 0 {
					t.Errorf("afterwards: %+v", st)
				}
			})
		}
	}
}

// TestKVAdmissionSkipAhead: a long prompt first in line waits for KV
// blocks while short requests behind it, whose blocks are there, start
// ahead of it — but no more than Parallel of them, after which it goes
// next; every output is bit for bit what an engine without a budget
// gives, and every block comes back.
func TestKVAdmissionSkipAhead(t *testing.T) {
	m, tok := penaltyModel(t)
	const parallel, smalls = 3, 5
	plain := plainEngine(t, m, tok, parallel)
	for _, path := range kvPaths {
		t.Run(path.String(), func(t *testing.T) {
			// Blocks: the running request 3 (growing to 4), the long one
			// 6, each short one 2, of 8: the long one cannot start beside
			// the first, a short one can.
			e, be := budgetEngine(t, m, tok, parallel, path, 8)
			reqs := []Request{
				{Prompt: kvPrompt(path.x(10), 1), Params: sample.GreedyParams(), MaxTokens: path.x(20), IgnoreEOS: true, Logprobs: true},
				{Prompt: kvPrompt(path.x(40), 2), Params: sample.GreedyParams(), MaxTokens: path.x(4), IgnoreEOS: true, Logprobs: true},
			}
			for i := range smalls {
				reqs = append(reqs, Request{Prompt: kvPrompt(path.x(5), 3+i), Params: sample.GreedyParams(), MaxTokens: path.x(4), IgnoreEOS: true, Logprobs: true})
			}
			var mu sync.Mutex
			var released atomic.Bool            // the first step has gone on
			firstStep := make([]int, len(reqs)) // the step of each request's first prompt chunk (0: not yet)
			step := 0
			be.hook = func(batch []*backend.Seq) {
				if step == 0 {
					// The first request's first step: the others are
					// submitted meanwhile, in order.
					waitIn(t, "every other request to be queued", func() bool { return e.Stats().Queued == len(reqs)-1 })
					released.Store(true)
				}
				mu.Lock()
				defer mu.Unlock()
				step++
				for _, s := range batch {
					for i, r := range reqs {
						if firstStep[i] == 0 && len(s.Tokens) >= 2 && s.Tokens[0] == r.Prompt[0] && s.Tokens[1] == r.Prompt[1] {
							firstStep[i] = step
						}
					}
				}
			}
			outs := make([][]Token, len(reqs))
			errs := make([]error, len(reqs))
			var wg sync.WaitGroup
			for i := range reqs {
				wg.Go(func() { outs[i], _, errs[i] = generate(e, reqs[i]) })
				if i == 0 {
					waitFor(t, "the first request to start", func() bool { return be.stepsTaken() > 0 })
				} else {
					// The last one's place can be brief: once it is queued the
					// first step goes on and admits others.
					waitFor(t, fmt.Sprintf("request %d to be queued", i), func() bool { return e.Stats().Queued == i || released.Load() })
				}
			}
			wg.Wait()
			for i := range reqs {
				want, _, err := generate(plain, reqs[i])
				if errs[i] != nil || err != nil {
					t.Fatalf("request %d: %v (without a budget: %v)", i, errs[i], err)
				}
				if !tokensEqual(outs[i], want) {
					t.Errorf("request %d: %v with the budget, %v without", i, outs[i], want)
				}
			}
			ahead := 0
			for i := 2; i < len(reqs); i++ {
				if firstStep[i] < firstStep[1] {
					ahead++
				}
			}
			if ahead < 1 || ahead > parallel {
				t.Errorf("%d short requests started ahead of the long one (first steps %v); want 1 to %d", ahead, firstStep, parallel)
			}
			st := e.Stats()
			checkBlocks(t, st)
			if st.KVBlocksUsed != 0 || st.Queued != 0 || st.Active != 0 {
				t.Errorf("after all: %+v", st)
			}
		})
	}
}
