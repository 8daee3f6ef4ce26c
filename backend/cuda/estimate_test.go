package cuda

import (
	"path/filepath"
	"testing"

	"worker-orcd/internal/testmodel"
	"worker-orcd/model"
)

// TestEstimateMemory: the estimate follows the layout the backend
// allocates (no GPU needed): weights are the file's data section and the
// small vectors, the KV cache halves with F16, the activations are the
// scratch for the batch, and the workspace holds at least the F16 copy of
// the largest matrix (the LM head of a tied model).
func TestEstimateMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	spec := testmodel.MustPreset("qwen2-micro")
	spec.Type = testmodel.Q8_0
	if err := spec.Write(path); err != nil {
		t.Fatal(err)
	}
	m, err := model.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := &m.Config
	f16, err := EstimateMemory(m, 512, 4, 512, "")
	if err != nil {
		t.Fatal(err)
	}
	f32, err := EstimateMemory(m, 512, 4, 512, "f32")
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(c.NLayer) * 2 * int64(c.KVDim()) * 2 * 512 * 4; f16.KVCache != want || f32.KVCache != 2*want {
		t.Errorf("KV cache %d (f16) and %d (f32), want %d and %d", f16.KVCache, f32.KVCache, want, 2*want)
	}
	if data := int64(len(m.File.Bytes())) - m.File.DataOffset; f16.Weights <= data || f16.Weights > data+1<<20 {
		t.Errorf("weights %d, want the %d-byte data section plus the small vectors", f16.Weights, data)
	}
	if _, scratch := scratchLayout(c, 512, 4); f16.Activations != scratch {
		t.Errorf("activations %d, want the scratch layout's %d", f16.Activations, scratch)
	}
	if head := int64(c.VocabSize) * int64(c.NEmbd) * 2; f16.Workspace < head {
		t.Errorf("workspace %d is less than the F16 copy of the LM head (%d)", f16.Workspace, head)
	}
	if _, err := EstimateMemory(m, 512, 4, 512, "q8"); err == nil {
		t.Error("an unknown KV type was accepted")
	}
}
