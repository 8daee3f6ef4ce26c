package engine

import (
	"context"
	"errors"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/backend/cuda"
	"worker-orcd/internal/testmodel"
	"worker-orcd/sample"
)

// tightBackend is the CPU backend with a device-like memory limit on KV
// caches: asking for more than limit positions fails as a GPU allocation
// does.
type tightBackend struct {
	*cpu.Backend
	limit int
}

type tightKV struct {
	backend.KVCache
	limit int
}

func oom(n int) error {
	return &cuda.AllocationError{Bytes: int64(n) * 1024, Free: 0, Total: 1 << 30, GPU: 0, Purpose: cuda.PurposeKVCache}
}

func (t *tightBackend) NewKVCache(n int) (backend.KVCache, error) {
	if n > t.limit {
		return nil, oom(n)
	}
	kv, err := t.Backend.NewKVCache(n)
	return &tightKV{kv, t.limit}, err
}

func (k *tightKV) Reserve(n int) error {
	if n > k.limit {
		return oom(n)
	}
	return k.KVCache.Reserve(n)
}

func (t *tightBackend) Forward(batch []*backend.Seq) error {
	for _, s := range batch {
		switch kv := s.KV.(type) {
		case *tightKV:
			s.KV = kv.KVCache
			defer func(s *backend.Seq) { s.KV = kv }(s)
		case *tightPaged:
			s.KV = kv.PagedCache
			defer func(s *backend.Seq) { s.KV = kv }(s)
		}
	}
	return t.Backend.Forward(batch)
}

// NewBlockPool is the CPU backend's pool, whose caches fail as a GPU
// allocation does when a table would hold more than limit positions.
func (t *tightBackend) NewBlockPool(blocks int) (backend.BlockPool, error) {
	p, err := t.Backend.NewBlockPool(blocks)
	return &tightPool{p, t.limit}, err
}

type tightPool struct {
	backend.BlockPool
	limit int
}

func (p *tightPool) NewCache() backend.PagedCache {
	return &tightPaged{p.BlockPool.NewCache(), p.limit}
}

type tightPaged struct {
	backend.PagedCache
	limit int
}

func (k *tightPaged) SetTable(table []int32, n int) error {
	if len(table)*cpu.KVBlockLen > k.limit {
		return oom(len(table) * cpu.KVBlockLen)
	}
	return k.PagedCache.SetTable(table, n)
}

// noPagerTight is tightBackend on the slot path (see noPager).
type noPagerTight struct {
	*tightBackend
	KVBlockLen, NewBlockPool struct{}
}

// TestOutOfMemoryEndsOnlyThatRequest: a request whose KV cache does not fit
// ends with the allocation error (the server answers VRAM_OOM) and the
// engine goes on serving the next one; on the paged path (a block table
// that the device has no memory for) and the slot path.
func TestOutOfMemoryEndsOnlyThatRequest(t *testing.T) {
	m, tok := openSpec(t, testmodel.MustPreset("qwen2-micro"))
	for _, path := range kvPaths {
		t.Run(path.String(), func(t *testing.T) {
			tight := &tightBackend{Backend: cpu.New(m, 1), limit: 40}
			var be backend.Backend = tight
			if !path.paged {
				be = noPagerTight{tightBackend: tight}
			}
			e, err := New(be, tok, Options{Parallel: 1, KVMemory: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			req := func(n int) Request {
				return Request{Prompt: []int32{1, 2, 3}, Params: sample.GreedyParams(), MaxTokens: n, IgnoreEOS: true}
			}
			if _, err := e.Generate(context.Background(), req(8), nil); err != nil {
				t.Fatal(err)
			}
			res, err := e.Generate(context.Background(), req(100), nil)
			var ae *cuda.AllocationError
			if !errors.As(err, &ae) || !errors.Is(err, ErrForward) || res.StopReason != StopError {
				t.Fatalf("big request: %v (reason %v), want an AllocationError", err, res.StopReason)
			}
			if res, err := e.Generate(context.Background(), req(8), nil); err != nil || len(res.IDs) != 8 {
				t.Fatalf("after the failure: %v, %v", res, err)
			}
			st := e.Stats()
			checkBlocks(t, st)
			if st.KVBlocksUsed != 0 {
				t.Errorf("afterwards: %d blocks used", st.KVBlocksUsed)
			}
		})
	}
}

// TestCPUKVBudgetEndsOnlyThatRequest: on the CPU backend, the budget the
// backend was given (SetKVBudget, as WORKER_CPU_KV_BUDGET sets it) is the
// engine's KV memory budget: a request that outgrows it ends with an error
// matching backend.ErrOutOfMemory (not an allocation that kills the
// process) once its cache holds the whole budget, with the tokens it
// generated so far, and the engine goes on serving. On the paged path
// (blocks of 16 positions) and the slot path (of 8).
func TestCPUKVBudgetEndsOnlyThatRequest(t *testing.T) {
	m, tok := openSpec(t, testmodel.MustPreset("qwen2-micro"))
	for _, path := range kvPaths {
		t.Run(path.String(), func(t *testing.T) {
			be := cpu.New(m, 1)
			perPos := int64(m.Config.NLayer) * 2 * int64(m.Config.KVDim()) * 4
			be.SetKVBudget(40 * perPos)
			var b backend.Backend = be
			if !path.paged {
				b = noPager{hookBackend: &hookBackend{Backend: be}}
			}
			e, err := New(b, tok, Options{Parallel: 1, KVBlock: 8})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			blocks := 40 / path.block
			if st := e.Stats(); st.KVBlocksTotal != blocks || st.KVMemory != 40*perPos {
				t.Fatalf("budget %d bytes in %d blocks, want the backend's %d bytes in %d blocks of %d positions", st.KVMemory, st.KVBlocksTotal, 40*perPos, blocks, path.block)
			}
			req := func(n int) Request {
				return Request{Prompt: []int32{1, 2, 3}, Params: sample.GreedyParams(), MaxTokens: n, IgnoreEOS: true}
			}
			if _, err := e.Generate(context.Background(), req(8), nil); err != nil {
				t.Fatal(err)
			}
			res, err := e.Generate(context.Background(), req(100), nil)
			var ke *KVMemoryError
			if !errors.As(err, &ke) || !ke.Grow || !errors.Is(err, backend.ErrOutOfMemory) || !errors.Is(err, ErrKVMemory) || res.StopReason != StopError {
				t.Fatalf("request beyond the budget: %v (result %+v), want a KVMemoryError matching backend.ErrOutOfMemory", err, res)
			}
			// The budget's positions: the 3 of the prompt and the fed
			// tokens; the last token came from the last of them.
			n := blocks * path.block
			if len(res.IDs) != n-2 || ke.Positions != n+1 || ke.TotalBlocks != blocks || ke.Budget != 40*perPos {
				t.Errorf("%d tokens before the error %+v, want %d tokens and position %d refused of a %d-block budget", len(res.IDs), *ke, n-2, n, blocks)
			}
			if res, err := e.Generate(context.Background(), req(8), nil); err != nil || len(res.IDs) != 8 {
				t.Fatalf("after the failure: %+v, %v", res, err)
			}
		})
	}
}
