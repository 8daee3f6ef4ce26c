package cuda

import (
	"errors"
	"strings"
	"testing"
	"time"

	"worker-orcd/backend"
	"worker-orcd/model"
	"worker-orcd/quant"
)

// fakeDevice is a Device whose goroutine runs without a driver: calls that
// touch no driver entry point work, and Close releases nothing.
func fakeDevice(t *testing.T) *Device {
	d := newDevice(0)
	go d.serve()
	t.Cleanup(func() { d.Close() })
	return d
}

// within fails the test if f does not return in time (a call that blocks
// forever is the bug being tested for).
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return in 5 s", what)
	}
}

// TestDeviceAfterClose: calls on a closed Device return ErrDeviceClosed
// instead of blocking forever; Close can be called twice.
func TestDeviceAfterClose(t *testing.T) {
	d := fakeDevice(t)
	ran := false
	if err := d.do(func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("do before Close: ran %v, error %v", ran, err)
	}
	within(t, "Close", func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	within(t, "calls after Close", func() {
		if err := d.do(func() error { t.Error("ran after Close"); return nil }); !errors.Is(err, ErrDeviceClosed) {
			t.Errorf("do after Close: %v, want ErrDeviceClosed", err)
		}
		if _, _, err := d.MemInfo(); !errors.Is(err, ErrDeviceClosed) {
			t.Errorf("MemInfo after Close: %v", err)
		}
		if _, err := d.Alloc(64, PurposeWorkspace); !errors.Is(err, ErrDeviceClosed) {
			t.Errorf("Alloc after Close: %v", err)
		}
		if err := d.Free(&Buffer{Ptr: 0x1000, Bytes: 64}); !errors.Is(err, ErrDeviceClosed) {
			t.Errorf("Free after Close: %v", err)
		}
		if err := d.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// TestBackendAfterClose: a KV cache freed after its backend was closed is
// a no-op (it dereferenced a nil device before), and every other call
// returns ErrDeviceClosed rather than panicking or blocking.
func TestBackendAfterClose(t *testing.T) {
	d := fakeDevice(t)
	c := &model.Config{NLayer: 2, NEmbd: 64, NHead: 4, NHeadKV: 2, HeadDim: 16, VocabSize: 10}
	b := &Backend{dev: d, c: c, kvType: "f16"}
	d.used[PurposeKVCache] = 2 * 64
	kv := &kvCache{b: b, own: &Buffer{Ptr: 0x1000, Bytes: 64, purpose: PurposeKVCache}, ptrs: []uint64{0x1000},
		tab: &Buffer{Ptr: 0x3000, Bytes: 8, purpose: PurposeKVCache}}
	kv2 := &kvCache{b: b, own: &Buffer{Ptr: 0x2000, Bytes: 64, purpose: PurposeKVCache}, ptrs: []uint64{0x2000},
		tab: &Buffer{Ptr: 0x4000, Bytes: 8, purpose: PurposeKVCache}}
	within(t, "Backend.Close", func() {
		if err := b.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})
	within(t, "calls after Close", func() {
		kv.Free()
		if kv.Bytes() != 0 || kv.Cap() != 0 {
			t.Errorf("freed cache: %d bytes, capacity %d", kv.Bytes(), kv.Cap())
		}
		kv.Free() // twice: still nothing
		if err := kv2.Reserve(2 * kvBlockLen); !errors.Is(err, ErrDeviceClosed) {
			t.Errorf("Reserve after Close: %v", err)
		}
		if _, err := b.NewKVCache(8); !errors.Is(err, ErrDeviceClosed) {
			t.Errorf("NewKVCache after Close: %v", err)
		}
		err := b.Forward([]*backend.Seq{{Tokens: []int32{1}, KV: kv2}})
		if !errors.Is(err, ErrDeviceClosed) {
			t.Errorf("Forward after Close: %v", err)
		}
		if m := b.Memory(); m != (backend.Memory{}) {
			t.Errorf("Memory after Close: %+v, want zeros (the context's memory is gone)", m)
		}
		if err := b.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// TestTensorOffsetBounds: a matrix's device offset is checked against the
// tensor data section, and a bad one names the tensor.
func TestTensorOffsetBounds(t *testing.T) {
	backing := make([]byte, 8192)
	data := backing[:4096]
	rb, err := quant.RowBytes(quant.Q8_0, 64)
	if err != nil {
		t.Fatal(err)
	}
	good := model.Matrix{Name: "blk.0.attn_q.weight", Type: quant.Q8_0, Cols: 64, Rows: 4, RowBytes: rb, Data: data[256 : 256+4*rb]}
	if off, err := tensorOffset(data, &good); err != nil || off != 256 {
		t.Fatalf("offset %d, error %v; want 256", off, err)
	}
	elsewhere := make([]byte, 4*rb)
	for _, c := range []struct {
		name string
		m    model.Matrix
	}{
		{"outside the section", model.Matrix{Name: "blk.1.ffn_up.weight", Type: quant.Q8_0, Cols: 64, Rows: 4, RowBytes: rb, Data: elsewhere}},
		{"past its end", model.Matrix{Name: "output.weight", Type: quant.Q8_0, Cols: 64, Rows: 4, RowBytes: rb, Data: backing[4096-2*rb : 4096+2*rb]}},
		{"fewer bytes than rows", model.Matrix{Name: "token_embd.weight", Type: quant.Q8_0, Cols: 64, Rows: 40, RowBytes: rb, Data: data[:4*rb]}},
		{"row bytes of another type", model.Matrix{Name: "blk.2.attn_k.weight", Type: quant.Q4_0, Cols: 64, Rows: 4, RowBytes: rb, Data: data[:4*rb]}},
		{"no rows", model.Matrix{Name: "blk.3.attn_v.weight", Type: quant.Q8_0, Cols: 64, Rows: 0, RowBytes: rb}},
	} {
		_, err := tensorOffset(data, &c.m)
		if !errors.Is(err, model.ErrMapping) || !strings.Contains(err.Error(), c.m.Name) {
			t.Errorf("%s: error %v, want a WeightMappingError naming %s", c.name, err, c.m.Name)
		}
	}
	if _, err := tensorOffset(nil, &good); !errors.Is(err, model.ErrMapping) {
		t.Errorf("empty data section: %v", err)
	}
}

// TestGrowKeepsScratchWhenAllocationFails: when the larger scratch cannot be
// allocated, grow fails and leaves the old buffer, the pointers into it and
// the capacities as they were, so the next step still writes into live
// memory (the old grow freed the old buffer first; after a failed
// allocation the engine kept serving and the next step wrote into freed
// VRAM). No GPU needed: the failure is injected before the driver is asked,
// and freeing anything here would call an unloaded driver.
func TestGrowKeepsScratchWhenAllocationFails(t *testing.T) {
	d := newDevice(0)
	d.failAlloc = func(n int64, purpose string) error {
		return &AllocationError{Bytes: n, GPU: 0, Purpose: purpose}
	}
	c := &model.Config{NLayer: 2, NEmbd: 64, NFF: 128, NHead: 4, NHeadKV: 2, HeadDim: 16, VocabSize: 1000}
	old := &Buffer{Ptr: 0x10000, Bytes: 1 << 20, purpose: PurposeActivations}
	b := &Backend{dev: d, c: c, scratch: old, capT: 8, capSel: 1, x: 0x10000, logits: 0x20000, meta: 0x30000}
	err := b.grow(64, 4)
	if !errors.Is(err, backend.ErrOutOfMemory) {
		t.Fatalf("grow with a failing allocation: %v, want an out-of-memory error", err)
	}
	if b.scratch != old || b.capT != 8 || b.capSel != 1 || b.x != 0x10000 || b.logits != 0x20000 || b.meta != 0x30000 {
		t.Errorf("after the failed grow: scratch %p (old %p), capT %d, capSel %d, x %#x, logits %#x, meta %#x; want all unchanged",
			b.scratch, old, b.capT, b.capSel, b.x, b.logits, b.meta)
	}
	if err := b.grow(8, 1); err != nil { // within the old capacity: nothing to do
		t.Errorf("grow within the capacity: %v", err)
	}
}
