package cuda_test

import (
	"math"
	"slices"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/internal/testmodel"
)

// embedOnce runs one Embed sequence (alone, or beside a decoding one) and
// returns its hidden states.
func embedOnce(t *testing.T, be backend.Embedder, b backend.Backend, prompt []int32, withOther bool) []float32 {
	t.Helper()
	kv, err := b.NewKVCache(len(prompt))
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Free()
	s := &backend.Seq{Tokens: prompt, KV: kv, Prefill: true, Embed: true}
	batch := []*backend.Seq{s}
	if withOther {
		okv, err := b.NewKVCache(8)
		if err != nil {
			t.Fatal(err)
		}
		defer okv.Free()
		other := &backend.Seq{Tokens: []int32{5, 6, 7}, KV: okv, Prefill: true, TopK: 4}
		batch = []*backend.Seq{other, s}
		if err := be.ForwardEmbed(batch); err != nil {
			t.Fatal(err)
		}
		if !other.HasTop && len(other.Logits) == 0 {
			t.Fatal("the generating sequence beside the embedding got no logits")
		}
		return slices.Clone(s.Hidden)
	}
	if err := be.ForwardEmbed(batch); err != nil {
		t.Fatal(err)
	}
	if len(s.Logits) != 0 || s.HasTop {
		t.Errorf("an Embed sequence got logits")
	}
	return slices.Clone(s.Hidden)
}

// TestEmbedParityWithCPU: the GPU's final hidden states (ForwardEmbed, for
// /v1/embeddings) agree with the CPU backend's, and a row's are bit for bit
// the same alone or beside another sequence.
func TestEmbedParityWithCPU(t *testing.T) {
	for _, recipe := range []testmodel.Recipe{testmodel.F16, testmodel.Q8_0, testmodel.Q4_K_M} {
		t.Run(string(recipe), func(t *testing.T) {
			needGPU(t)
			m := writeModel(t, "qwen2-micro", recipe)
			gpu := gpuBackend(t, m)
			cb := cpu.New(m, 0)
			defer cb.Close()
			prompt := make([]int32, 19)
			for i := range prompt {
				prompt[i] = int32((i*7919 + 13) % m.Config.VocabSize)
			}
			want := embedOnce(t, cb, cb, prompt, false)
			got := embedOnce(t, gpu, gpu, prompt, false)
			if len(got) != len(prompt)*m.Config.NEmbd || len(want) != len(got) {
				t.Fatalf("hidden states: %d values from the GPU, %d from the CPU, want %d", len(got), len(want), len(prompt)*m.Config.NEmbd)
			}
			var num, den float64
			for i := range want {
				d := float64(got[i] - want[i])
				num += d * d
				den += float64(want[i]) * float64(want[i])
			}
			rel := math.Sqrt(num / den)
			t.Logf("relative error of the hidden states %.2e", rel)
			// The CPU rounds activations to 8 bits for quantized weights, the
			// GPU to F16: the same bound as the logits' parity test.
			if rel > 5e-2 || math.IsNaN(rel) {
				t.Errorf("GPU vs CPU hidden states: relative %.3g (bound 5e-2)", rel)
			}
			if beside := embedOnce(t, gpu, gpu, prompt, true); !slices.Equal(beside, got) {
				t.Errorf("hidden states differ alone and beside another sequence")
			}
		})
	}
}
