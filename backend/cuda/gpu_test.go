package cuda_test

import (
	"errors"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/backend/cuda"
	"worker-orcd/internal/testmodel"
)

// TestGraphCacheOnGPU: decode steps are captured into CUDA graphs and
// replayed, without a capture failure, and GraphStats says so.
func TestGraphCacheOnGPU(t *testing.T) {
	m := writeModel(t, "qwen2-micro", testmodel.Q8_0)
	gpu := gpuBackend(t, m)
	prompt := []int32{1, 2, 3, 4, 5}
	run(t, gpu, prompt, 6)
	// Batches of 2 and 3 decoding sequences: other layouts, other graphs.
	for _, n := range []int{2, 3, 2} {
		var seqs []*backend.Seq
		for range n {
			kv, err := gpu.NewKVCache(16)
			if err != nil {
				t.Fatal(err)
			}
			defer kv.Free()
			seqs = append(seqs, &backend.Seq{Tokens: prompt, KV: kv, Prefill: true})
		}
		if err := gpu.Forward(seqs); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			for _, s := range seqs {
				s.Tokens, s.Prefill = []int32{7}, false
			}
			if err := gpu.Forward(seqs); err != nil {
				t.Fatal(err)
			}
		}
	}
	st := gpu.GraphStats()
	t.Logf("graph stats %+v", st)
	if st.CaptureFailures != 0 || st.Disabled {
		t.Fatalf("a capture failed: %s", st.LastFailure)
	}
	// Layouts: 1, 2 and 3 decode rows (prompts may be graphs too without
	// cuBLAS); growing the scratch buffers for a longer batch drops the
	// graphs, so some are captured again and fewer stay cached.
	if st.Captures < 3 || st.Replays < 6+3+3+3 || st.Cached < 1 || st.Cached > cuda.GraphCacheSize {
		t.Errorf("stats %+v: want ≥ 3 captures, ≥ 15 replays", st)
	}
}

// TestCloseOnGPU: after Close, KV caches can still be freed (a no-op),
// every other call returns ErrDeviceClosed, and Close again is harmless.
func TestCloseOnGPU(t *testing.T) {
	needGPU(t)
	m := writeModel(t, "qwen2-micro", testmodel.Q8_0)
	gpu, err := cuda.New(m, cuda.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := gpu.NewKVCache(16)
	if err != nil {
		t.Fatal(err)
	}
	kv2, err := gpu.NewKVCache(16)
	if err != nil {
		t.Fatal(err)
	}
	if err := gpu.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	kv.Free()
	if err := gpu.Forward([]*backend.Seq{{Tokens: []int32{1}, KV: kv2}}); !errors.Is(err, cuda.ErrDeviceClosed) {
		t.Errorf("Forward after Close: %v", err)
	}
	if _, err := gpu.NewKVCache(8); !errors.Is(err, cuda.ErrDeviceClosed) {
		t.Errorf("NewKVCache after Close: %v", err)
	}
	kv2.Free()
	if err := gpu.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestOutOfMemoryOnGPU: an allocation beyond the card's memory fails with
// an AllocationError that matches backend.ErrOutOfMemory, and the backend
// keeps working.
func TestOutOfMemoryOnGPU(t *testing.T) {
	m := writeModel(t, "qwen2-micro", testmodel.Q8_0)
	gpu := gpuBackend(t, m)
	_, err := gpu.NewKVCache(1 << 30) // 275 GB of KV for this shape (2 layers × K,V × 32 F16), beyond any one GPU
	var ae *cuda.AllocationError
	if !errors.As(err, &ae) || !errors.Is(err, backend.ErrOutOfMemory) || errors.Is(err, backend.ErrDevice) {
		t.Fatalf("huge KV cache: %v; want an AllocationError matching backend.ErrOutOfMemory only", err)
	}
	run(t, gpu, []int32{1, 2, 3}, 2)
}
