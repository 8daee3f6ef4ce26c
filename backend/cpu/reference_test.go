package cpu

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/internal/testmodel"
	"worker-orcd/model"
)

// TestQuantizedPathMatchesFloatReference: the whole forward pass with the
// integer dot products (activations quantized as ggml does) against the same
// pass with float64 products over dequantized weights, for every
// architecture and recipe. Bound: top-5 logprobs within 0.1 nats.
func TestQuantizedPathMatchesFloatReference(t *testing.T) {
	for _, preset := range []string{"qwen2-micro", "phi3-micro", "llama-micro", "llama-tiny"} {
		for _, recipe := range []testmodel.Recipe{testmodel.F16, testmodel.Q8_0, testmodel.Q4_0, testmodel.Q4_K_M} {
			t.Run(fmt.Sprintf("%s-%s", preset, recipe), func(t *testing.T) {
				spec, err := testmodel.Preset(preset)
				if err != nil {
					t.Fatal(err)
				}
				spec.Type, spec.Seed = recipe, 99
				path := filepath.Join(t.TempDir(), "m.gguf")
				if err := spec.Write(path); err != nil {
					t.Fatal(err)
				}
				m, err := model.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				prompt := make([]int32, 12)
				for i := range prompt {
					prompt[i] = int32((i*7919 + 13) % m.Config.VocabSize)
				}
				logits := func(ref bool) []float32 {
					b := New(m, 0)
					defer b.Close()
					b.ReferenceMatmul = ref
					s := &backend.Seq{Tokens: prompt, KV: NewKVCache(&m.Config, len(prompt)), AllLogits: true}
					if err := b.Forward([]*backend.Seq{s}); err != nil {
						t.Fatal(err)
					}
					return slices.Clone(s.Logits)
				}
				got, want := logits(false), logits(true)
				V := m.Config.VocabSize
				worst := 0.0
				for p := range prompt {
					lg, lr := logSoftmax(got[p*V:(p+1)*V]), logSoftmax(want[p*V:(p+1)*V])
					idx := make([]int, V)
					for i := range idx {
						idx[i] = i
					}
					slices.SortFunc(idx, func(a, b int) int {
						if lr[a] > lr[b] {
							return -1
						}
						if lr[a] < lr[b] {
							return 1
						}
						return 0
					})
					for _, i := range idx[:5] {
						worst = math.Max(worst, math.Abs(lg[i]-lr[i]))
					}
				}
				t.Logf("worst top-5 |Δlogprob| %.4f nats", worst)
				if worst > 0.1 || math.IsNaN(worst) {
					t.Errorf("quantized path vs float reference: %.3f nats", worst)
				}
			})
		}
	}
}
