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
		if kv, ok := s.KV.(*tightKV); ok {
			s.KV = kv.KVCache
			defer func(s *backend.Seq) { s.KV = kv }(s)
		}
	}
	return t.Backend.Forward(batch)
}

// TestOutOfMemoryEndsOnlyThatRequest: a request whose KV cache does not fit
// ends with the allocation error (the server answers VRAM_OOM) and the
// engine goes on serving the next one.
func TestOutOfMemoryEndsOnlyThatRequest(t *testing.T) {
	m, tok := openSpec(t, testmodel.MustPreset("qwen2-micro"))
	e, err := New(&tightBackend{Backend: cpu.New(m, 1), limit: 40}, tok, Options{Parallel: 1})
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
		t.Fatalf("big request: %v (reason %v), want an AllocationError", err, res)
	}
	if res, err := e.Generate(context.Background(), req(8), nil); err != nil || len(res.IDs) != 8 {
		t.Fatalf("after the failure: %v, %v", res, err)
	}
}

// TestCPUKVBudgetEndsOnlyThatRequest: on the CPU backend, the budget the
// backend was given (SetKVBudget, as WORKER_CPU_KV_BUDGET sets it) is the
// engine's KV memory budget: a request that outgrows it ends with an error
// matching backend.ErrOutOfMemory (not an allocation that kills the
// process) once its cache holds the whole budget, with the tokens it
// generated so far, and the engine goes on serving.
func TestCPUKVBudgetEndsOnlyThatRequest(t *testing.T) {
	m, tok := openSpec(t, testmodel.MustPreset("qwen2-micro"))
	be := cpu.New(m, 1)
	perPos := int64(m.Config.NLayer) * 2 * int64(m.Config.KVDim()) * 4
	be.SetKVBudget(40 * perPos)
	e, err := New(be, tok, Options{Parallel: 1, KVBlock: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if st := e.Stats(); st.KVBlocksTotal != 5 || st.KVMemory != 40*perPos {
		t.Fatalf("budget %d bytes in %d blocks, want the backend's %d bytes in 5 blocks of 8 positions", st.KVMemory, st.KVBlocksTotal, 40*perPos)
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
	// 40 positions: the 3 of the prompt and 37 fed tokens; the 38th token
	// came from the last of them.
	if len(res.IDs) != 38 || ke.Positions != 41 || ke.TotalBlocks != 5 || ke.Budget != 40*perPos {
		t.Errorf("%d tokens before the error %+v, want 38 tokens and position 40 refused of a 5-block budget", len(res.IDs), *ke)
	}
	if res, err := e.Generate(context.Background(), req(8), nil); err != nil || len(res.IDs) != 8 {
		t.Fatalf("after the failure: %+v, %v", res, err)
	}
}
