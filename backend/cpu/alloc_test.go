package cpu

import (
	"testing"

	"worker-orcd/backend"
	"worker-orcd/internal/testmodel"
)

// A decode step allocates a few objects per step (the batch's row and cache
// lists), none per layer or per matrix product.
func TestDecodeAllocations(t *testing.T) {
	spec, err := testmodel.Preset("qwen2-micro")
	if err != nil {
		t.Fatal(err)
	}
	spec.Type, spec.Seed = testmodel.Q4_K_M, 5
	m := openSpec(t, spec)
	b := New(m, 2)
	defer b.Close()
	kv := NewKVCache(&m.Config, 512)
	s := &backend.Seq{Tokens: []int32{1}, KV: kv}
	step := func() {
		if err := b.Forward([]*backend.Seq{s}); err != nil {
			t.Fatal(err)
		}
	}
	step()
	allocs := testing.AllocsPerRun(50, step)
	t.Logf("%.1f allocations per decode step (%d layers)", allocs, m.Config.NLayer)
	if limit := 8.0; allocs > limit {
		t.Errorf("%.1f allocations per decode step, want ≤ %.0f", allocs, limit)
	}
}
