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

// TestCPUKVBudgetEndsOnlyThatRequest: on the CPU backend, a request whose
// KV cache would exceed the backend's budget ends with an error matching
// backend.ErrOutOfMemory (not an allocation that kills the process), and
// the engine goes on serving.
func TestCPUKVBudgetEndsOnlyThatRequest(t *testing.T) {
	m, tok := openSpec(t, testmodel.MustPreset("qwen2-micro"))
	be := cpu.New(m, 1)
	perPos := int64(m.Config.NLayer) * 2 * int64(m.Config.KVDim()) * 4
	be.SetKVBudget(40 * perPos)
	e, err := New(be, tok, Options{Parallel: 1})
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
	var ae *cpu.AllocationError
	if !errors.As(err, &ae) || !errors.Is(err, backend.ErrOutOfMemory) || !errors.Is(err, ErrForward) || res.StopReason != StopError {
		t.Fatalf("request beyond the budget: %v (result %+v), want a cpu.AllocationError matching backend.ErrOutOfMemory", err, res)
	}
	if ae.Bytes != 103*perPos || ae.Budget != 40*perPos {
		t.Errorf("AllocationError %+v, want %d bytes asked of a %d-byte budget", *ae, 103*perPos, 40*perPos)
	}
	if res, err := e.Generate(context.Background(), req(8), nil); err != nil || len(res.IDs) != 8 {
		t.Fatalf("after the failure: %+v, %v", res, err)
	}
}
