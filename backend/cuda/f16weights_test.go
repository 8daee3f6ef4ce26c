package cuda_test

import (
	"slices"
	"testing"

	"worker-orcd/backend/cuda"
	"worker-orcd/internal/testmodel"
	"worker-orcd/model"
	"worker-orcd/quant"
)

// TestF16WeightsOnGPU: with WORKER_CUDA_F16_WEIGHTS=1, and by default (auto)
// for a model this small, the quantized matrices' F16 copies are made once
// at load (weights memory grows by 2 bytes a weight of the layers' and the
// LM head's matrices beside WORKER_CUDA_F16_WEIGHTS=0) and every logit —
// prompt rows, which read the copies, and decode rows — is bit for bit what
// the backend without them gives; a bad value is refused.
func TestF16WeightsOnGPU(t *testing.T) {
	needGPU(t)
	m := writeModel(t, "llama-tiny", testmodel.Q4_K_M)
	prompt := make([]int32, 70)
	for i := range prompt {
		prompt[i] = int32(i*53 + 5)
	}
	t.Setenv("WORKER_CUDA_F16_WEIGHTS", "0")
	plain := gpuBackend(t, m)
	want := run(t, plain, prompt, 6)
	before := plain.Memory().Weights
	var copies int64
	w := m.Weights
	mats := []*model.Matrix{&w.Output}
	for i := range w.Layers {
		l := &w.Layers[i]
		mats = append(mats, &l.Q, &l.K, &l.V, &l.O, &l.Gate, &l.Up, &l.Down)
	}
	for _, mm := range mats {
		if mm.Type != quant.F16 {
			copies += int64(mm.Rows) * int64(mm.Cols) * 2
		}
	}
	if copies == 0 {
		t.Fatal("the test model has no quantized matrix to copy")
	}
	for _, setting := range []string{"1", ""} {
		t.Setenv("WORKER_CUDA_F16_WEIGHTS", setting)
		withCopies := gpuBackend(t, m)
		if got := withCopies.Memory().Weights - before; got != copies {
			t.Errorf("WORKER_CUDA_F16_WEIGHTS=%q: weights memory grew by %d bytes, want %d (the F16 copies: 2 bytes a weight)", setting, got, copies)
		}
		got := run(t, withCopies, prompt, 6)
		for i := range want {
			if !slices.Equal(got[i], want[i]) {
				t.Fatalf("WORKER_CUDA_F16_WEIGHTS=%q, row %d: logits differ with the F16 copies (prompt rows read them; the values must be the same)", setting, i)
			}
		}
	}

	t.Setenv("WORKER_CUDA_F16_WEIGHTS", "yes")
	if b, err := cuda.New(m, cuda.Options{}); err == nil {
		b.Close()
		t.Error("WORKER_CUDA_F16_WEIGHTS=yes accepted")
	}
}
