package cuda_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"worker-orcd/backend"
	"worker-orcd/backend/cuda"
	"worker-orcd/engine"
	"worker-orcd/internal/testmodel"
	"worker-orcd/sample"
)

// TestPagedCacheOnGPU: the paged KV cache (issue 15). A sequence whose
// cache is a table of scrambled pool blocks gives the logits of a
// standalone cache bit for bit (prompt in two chunks, then decode steps); a
// second sequence that shares the first two blocks of its prompt and
// computes only the rest gives them too, as does a third whose partly
// filled block is a copy (CopyBlock), and standalone caches grown by
// Reserve or filled by CopyPrefix (each layer's blocks are moved between
// layouts of different strides); the pool takes memory only for
// blocks used; bad tables, copies and a closed pool are refused.
func TestPagedCacheOnGPU(t *testing.T) {
	needGPU(t)
	m := writeModel(t, "llama-tiny", testmodel.Q4_K_M)
	gpu := gpuBackend(t, m)
	var pager backend.Pager = gpu
	if pager.KVBlockLen() != 16 {
		t.Fatalf("KVBlockLen %d, want 16", pager.KVBlockLen())
	}
	prompt := make([]int32, 40) // blocks 0 and 1 full, block 2 holds 8 prompt positions
	for i := range prompt {
		prompt[i] = int32(i*37 + 11)
	}
	const steps = 20 // up to position 59: four blocks
	alone := run(t, gpu, prompt, steps)
	fed := greedyOf(alone, len(prompt)-1)
	want := alone[len(prompt)-1:] // after the prompt, then after each fed token

	pool, err := pager.NewBlockPool(32)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if pool.Bytes() != 0 || pool.Blocks() != 32 || pool.BlockLen() != 16 {
		t.Fatalf("new pool: %d bytes, %d blocks of %d (want 0, 32, 16)", pool.Bytes(), pool.Blocks(), pool.BlockLen())
	}
	forward := func(s *backend.Seq) {
		t.Helper()
		if err := gpu.Forward([]*backend.Seq{s}); err != nil {
			t.Fatal(err)
		}
	}
	// decode feeds the greedy tokens from position from on and checks each
	// step's logits against the standalone run's.
	decode := func(name string, s *backend.Seq, from int) {
		t.Helper()
		s.Prefill = false
		for k := from; k < steps; k++ {
			s.Tokens = []int32{fed[k]}
			forward(s)
			if !slices.Equal(s.Logits, want[k+1]) {
				t.Fatalf("%s: step %d: logits differ from the standalone cache's", name, k)
			}
		}
	}

	// A: its own scrambled blocks, the prompt in chunks of 7 and 33.
	a := pool.NewCache()
	if err := a.SetTable([]int32{29, 3, 17, 8}, 0); err != nil {
		t.Fatal(err)
	}
	if pool.Bytes() == 0 {
		t.Fatal("the pool holds no memory after a table used its blocks")
	}
	sa := &backend.Seq{KV: a, Prefill: true, Tokens: prompt[:7]}
	forward(sa)
	sa.Tokens = prompt[7:]
	forward(sa)
	if !slices.Equal(sa.Logits, want[0]) {
		t.Fatal("pool cache: the prompt's logits differ from the standalone cache's")
	}
	decode("pool cache", sa, 0)

	// B: A's first two blocks (32 prompt positions), its own after them.
	b := pool.NewCache()
	if err := b.SetTable([]int32{29, 3, 20, 21}, 32); err != nil {
		t.Fatal(err)
	}
	sb := &backend.Seq{KV: b, Prefill: true, Tokens: prompt[32:]}
	forward(sb)
	if !slices.Equal(sb.Logits, want[0]) {
		t.Fatal("shared blocks: the prompt's logits differ from the standalone cache's")
	}
	decode("shared blocks", sb, 0)

	// C: A's first two blocks and a copy of the 7 prompt positions of its
	// third that come before the prompt's last token (read again).
	c := pool.NewCache()
	if err := c.SetTable([]int32{29, 3, 22, 23}, 39); err != nil {
		t.Fatal(err)
	}
	if err := pool.CopyBlock(22, 17, 7); err != nil {
		t.Fatal(err)
	}
	sc := &backend.Seq{KV: c, Prefill: true, Tokens: prompt[39:]}
	forward(sc)
	if !slices.Equal(sc.Logits, want[0]) {
		t.Fatal("copied block: the prompt's logits differ from the standalone cache's")
	}
	decode("copied block", sc, 0)

	// A standalone cache that grows (Reserve copies each layer's blocks into
	// the new layout) after 10 prompt positions, and one that copies its
	// first 39 positions from it (CopyPrefix: whole blocks and a part).
	d, err := gpu.NewKVCache(16)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free()
	sd := &backend.Seq{KV: d, Prefill: true, Tokens: prompt[:10]}
	forward(sd)
	if err := d.Reserve(len(prompt) + steps); err != nil {
		t.Fatal(err)
	}
	sd.Tokens = prompt[10:]
	forward(sd)
	if !slices.Equal(sd.Logits, want[0]) {
		t.Fatal("standalone cache grown by Reserve: the prompt's logits differ")
	}
	e, err := gpu.NewKVCache(len(prompt) + steps)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Free()
	if err := e.(backend.PrefixCopier).CopyPrefix(d, 39); err != nil {
		t.Fatal(err)
	}
	decode("standalone cache grown by Reserve", sd, 0)
	se := &backend.Seq{KV: e, Prefill: true, Tokens: prompt[39:]}
	forward(se)
	if !slices.Equal(se.Logits, want[0]) {
		t.Fatal("CopyPrefix: the prompt's logits differ")
	}
	decode("CopyPrefix", se, 0)

	// Refusals: the cache is unchanged after each.
	for _, bad := range []struct {
		name string
		err  error
	}{
		{"block id past the pool", c.SetTable([]int32{29, 32}, 0)},
		{"negative block id", c.SetTable([]int32{-1}, 0)},
		{"more positions than the table holds", c.SetTable([]int32{29}, 17)},
		{"Reserve on a pool cache", c.Reserve(100)},
		{"CopyBlock from a block never used", pool.CopyBlock(22, 30, 4)},
		{"CopyBlock of 17 positions", pool.CopyBlock(22, 17, 17)},
	} {
		if bad.err == nil {
			t.Errorf("%s: accepted", bad.name)
		}
	}
	if c.Len() != 60 || c.Cap() != 64 || !slices.Equal(c.Table(), []int32{29, 3, 22, 23}) {
		t.Errorf("after refused calls: %d positions, capacity %d, table %v", c.Len(), c.Cap(), c.Table())
	}
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	sc.Tokens = []int32{sample.Argmax(sc.Logits)}
	if err := gpu.Forward([]*backend.Seq{sc}); err == nil || c.Len() != 60 {
		t.Errorf("Forward over a closed pool's cache: %v (len %d), want an error", err, c.Len())
	}
	if err := c.SetTable([]int32{1}, 0); err == nil {
		t.Error("SetTable on a closed pool's cache: accepted")
	}
	if _, err := pager.NewBlockPool(0); err == nil || errors.Is(err, backend.ErrOutOfMemory) {
		t.Errorf("a pool of 0 blocks: %v, want a refusal", err)
	}
}

// TestPagedEngineNoLeakOnGPU (issue 15): an engine on the GPU under a KV
// budget of 48 blocks, 300 requests over prompts sharing starts (so that
// blocks are shared, copied and evicted), a third of them cancelled at a
// random moment or ended by their callback; afterwards no block is used
// and cached + free are all of them, the pool's memory is within the
// budget, and the probes give what a fresh engine gives.
func TestPagedEngineNoLeakOnGPU(t *testing.T) {
	needGPU(t)
	m := writeModel(t, "qwen2-micro", testmodel.Q4_K_M)
	gpu := gpuBackend(t, m)
	tok := modelTokenizer(t, m)
	kvBefore := gpu.Memory().KVCache
	perPos := gpu.KVBytesPerPosition()
	opts := engine.Options{Parallel: 8, QueueSize: 400, BatchTokens: 64, CtxLen: 256, KVMemory: 48 * cuda.KVBlockLen * perPos}
	e, err := engine.New(gpu, tok, opts)
	if err != nil {
		t.Fatal(err)
	}
	vocab := int32(m.Config.VocabSize)
	bases := make([][]int32, 3)
	for i := range bases {
		bases[i] = make([]int32, 120)
		for j := range bases[i] {
			bases[i][j] = (int32(i)*977 + int32(j)*31 + 7) % vocab
		}
	}
	request := func(i int) engine.Request {
		b := bases[i%3]
		prompt := append(slices.Clone(b[:20+(i*13)%90]), (int32(i)*101+3)%vocab)
		return engine.Request{Prompt: prompt, Params: sample.GreedyParams(), MaxTokens: 4 + i%24, IgnoreEOS: true}
	}
	errGone := errors.New("client gone")
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if i%3 == 1 {
				go func() { time.Sleep(time.Duration(i%7) * time.Millisecond); cancel() }()
			}
			n := 0
			_, err := e.Generate(ctx, request(i), func(engine.Token) error {
				if n++; i%3 == 2 && n == 1+i%5 {
					return errGone
				}
				return nil
			})
			if err != nil && !errors.Is(err, engine.ErrCancelled) && !errors.Is(err, errGone) && !errors.Is(err, engine.ErrKVMemory) {
				t.Errorf("request %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for st := e.Stats(); st.Active > 0 || st.Queued > 0; st = e.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("the engine is not idle after the churn: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
	st := e.Stats()
	if !st.KVPaged || st.KVBlocksUsed != 0 || st.KVBlocksCached+st.KVBlocksFree != st.KVBlocksTotal || st.KVBlocksTotal != 48 {
		t.Errorf("KV blocks after the churn: paged %v, %d used, %d cached, %d free of %d (want 48)",
			st.KVPaged, st.KVBlocksUsed, st.KVBlocksCached, st.KVBlocksFree, st.KVBlocksTotal)
	}
	if st.PrefixHitTokens == 0 || st.KVEvictedBlocks == 0 {
		t.Errorf("the churn took %d prompt tokens from the cache and evicted %d blocks: want both", st.PrefixHitTokens, st.KVEvictedBlocks)
	}
	probes := []engine.Request{request(0), request(1), request(5)}
	var after [][]int32
	for _, r := range probes {
		res, err := e.Generate(context.Background(), r, nil)
		if err != nil {
			t.Fatal(err)
		}
		after = append(after, res.IDs)
	}
	// The pool's blocks keep their memory once used: no more than the
	// budget (and the tables), no less than the cached blocks'.
	if got := gpu.Memory().KVCache - kvBefore; got > opts.KVMemory+1<<20 || got < int64(st.KVBlocksCached)*st.KVBlockBytes {
		t.Errorf("KV cache memory after the churn: %d bytes, for a budget of %d and %d cached blocks of %d bytes",
			got, opts.KVMemory, st.KVBlocksCached, st.KVBlockBytes)
	}
	if err := e.Close(); err != nil { // closes the backend too
		t.Fatal(err)
	}
	fresh, err := engine.New(gpuBackend(t, m), tok, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for i, r := range probes {
		res, err := fresh.Generate(context.Background(), r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.IDs, after[i]) {
			t.Errorf("probe %d: %v after the churn, %v on a fresh engine", i, after[i], res.IDs)
		}
	}
}
