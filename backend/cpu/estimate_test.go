package cpu

import (
	"testing"

	"worker-orcd/backend"
	"worker-orcd/internal/testmodel"
)

// TestEstimateMemory: the estimate the doctor prints holds what the backend
// really takes for the same workload — the same weights, KV cache and step
// scratch, and at least the quantized activations it allocated — on a
// model whose matrices mix quantization types.
func TestEstimateMemory(t *testing.T) {
	spec, err := testmodel.Preset("qwen2-micro")
	if err != nil {
		t.Fatal(err)
	}
	spec.Type, spec.Seed = testmodel.Q4_K_M, 5
	m := openSpec(t, spec)
	const ctx, parallel, batch = 64, 2, 24
	est := EstimateMemory(&m.Config, m.Weights, ctx, parallel, batch)

	b := New(m, 2)
	defer b.Close()
	var seqs []*backend.Seq
	var kvBytes int64
	for i := range parallel {
		kv, err := b.NewKVCache(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer kv.Free()
		kvBytes += kv.Bytes()
		toks := make([]int32, batch/parallel)
		for j := range toks {
			toks[j] = int32(7*i + j + 1)
		}
		seqs = append(seqs, &backend.Seq{Tokens: toks, KV: kv, Prefill: true})
	}
	if err := b.Forward(seqs); err != nil {
		t.Fatal(err)
	}
	got := b.Memory()
	if est.Weights != got.Weights || est.KVCache != kvBytes || est.Activations != got.Activations {
		t.Errorf("estimate weights %d, KV %d, activations %d; the backend took %d, %d, %d",
			est.Weights, est.KVCache, est.Activations, got.Weights, kvBytes, got.Activations)
	}
	if est.Workspace < got.Workspace {
		t.Errorf("estimated workspace %d < the %d bytes of quantized activations allocated", est.Workspace, got.Workspace)
	}
	if noW := EstimateMemory(&m.Config, nil, ctx, parallel, batch); noW.Weights != 0 || noW.KVCache != est.KVCache || noW.Workspace >= est.Workspace {
		t.Errorf("without weights: %+v (with: %+v)", noW, est)
	}
}
