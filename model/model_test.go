package model

import (
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"worker-orcd/gguf"
	"worker-orcd/internal/testmodel"
	"worker-orcd/quant"
)

// build writes a qwen2-micro model after edit changes its builder.
func build(t *testing.T, spec testmodel.Spec, edit func(b *gguf.Builder)) string {
	t.Helper()
	b, err := spec.Builder()
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(b)
	}
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := b.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenGoodModels(t *testing.T) {
	for _, name := range []string{"qwen2-micro", "phi3-micro", "llama-micro"} {
		spec := testmodel.MustPreset(name)
		m, err := Open(build(t, spec, nil))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c := m.Config
		if c.Arch.Name != spec.Arch || c.NLayer != spec.Layers || c.NEmbd != spec.Embd || c.NHead != spec.Heads ||
			c.HeadDim != spec.Embd/spec.Heads || c.VocabSize == 0 || len(m.Weights.Layers) != spec.Layers {
			t.Errorf("%s: config %+v", name, c)
		}
		if spec.FusedQKV {
			l := m.Weights.Layers[0]
			if l.Q.Rows != c.QDim() || l.K.Rows != c.KVDim() || l.V.Rows != c.KVDim() || l.Gate.Rows != c.NFF || l.Up.Rows != c.NFF {
				t.Errorf("%s: fused views %d %d %d %d %d", name, l.Q.Rows, l.K.Rows, l.V.Rows, l.Gate.Rows, l.Up.Rows)
			}
		}
		if spec.Tied != m.Weights.TiedOutput {
			t.Errorf("%s: tied %v, want %v", name, m.Weights.TiedOutput, spec.Tied)
		}
		m.Close()
	}
}

// TestBadModels: every way a file can fail to describe a runnable model is
// a typed error whose message names the problem.
func TestBadModels(t *testing.T) {
	qwen := testmodel.MustPreset("qwen2-micro")
	omit := func(name string) testmodel.Spec { s := qwen; s.Omit = []string{name}; return s }
	cases := []struct {
		name string
		spec testmodel.Spec
		edit func(b *gguf.Builder)
		kind error
		want string
	}{
		{"tensor removed", omit("blk.1.attn_q.weight"), nil, ErrMapping,
			`WeightMappingError: Tensor not found: "blk.1.attn_q.weight"`},
		{"wrong shape", omit("blk.0.ffn_down.weight"), func(b *gguf.Builder) {
			// [ffn, d] expected; write [d, ffn] instead (F32).
			if err := b.AddTensor("blk.0.ffn_down.weight", quant.F32, []uint64{64, 128}, make([]byte, 4*64*128)); err != nil {
				t.Fatal(err)
			}
		}, ErrMapping, `tensor "blk.0.ffn_down.weight" has shape [64 128], want [128 64]`},
		{"unsupported architecture", qwen, func(b *gguf.Builder) { b.Set("general.architecture", "gpt2") }, ErrInvalidModelType,
			`InvalidModelType: architecture "gpt2" is not supported (supported: llama, phi3, qwen2)`},
		{"missing hyperparameter", qwen, func(b *gguf.Builder) { b.Delete("qwen2.block_count") }, ErrConfig,
			`Metadata key not found: "qwen2.block_count"`},
		{"heads do not divide", qwen, func(b *gguf.Builder) { b.Set("qwen2.attention.head_count_kv", uint32(3)) }, ErrConfig,
			"head_count 4 is not a multiple of head_count_kv 3"},
		{"LongRoPE", qwen, func(b *gguf.Builder) {
			if err := b.AddTensor("rope_factors_long.weight", quant.F32, []uint64{8}, make([]byte, 32)); err != nil {
				t.Fatal(err)
			}
		}, ErrUnsupported, "LongRoPE scaling"},
		{"unknown rope scaling", qwen, func(b *gguf.Builder) { b.Set("qwen2.rope.scaling.type", "yarn") }, ErrUnsupported,
			`RoPE scaling type "yarn"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Open(build(t, c.spec, c.edit))
			if err == nil {
				m.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v, want %v containing %q", err, c.kind, c.want)
			}
		})
	}
}

// TestCountsBoundedByFile: a header whose counts exceed what the file holds
// fails with a WeightMappingError before anything sized by those counts is
// allocated (a crafted block_count of 2^24−1 once reserved ~10 GB).
func TestCountsBoundedByFile(t *testing.T) {
	qwen := testmodel.MustPreset("qwen2-micro") // 2 layers
	phi := testmodel.MustPreset("phi3-micro")
	cases := []struct {
		name string
		spec testmodel.Spec
		edit func(b *gguf.Builder)
		want string
	}{
		{"block_count 2^24-1", qwen, func(b *gguf.Builder) { b.Set("qwen2.block_count", uint32(1<<24-1)) },
			"qwen2.block_count is 16777215 but the file holds tensors of 2 blocks"},
		{"block_count one too many", qwen, func(b *gguf.Builder) { b.Set("qwen2.block_count", uint32(3)) },
			"qwen2.block_count is 3 but the file holds tensors of 2 blocks"},
		{"phi3 block_count 2^24-1", phi, func(b *gguf.Builder) { b.Set("phi3.block_count", uint32(1<<24-1)) },
			"phi3.block_count is 16777215 but the file holds tensors of 2 blocks"},
		{"one stray far block", qwen, func(b *gguf.Builder) {
			b.Set("qwen2.block_count", uint32(1<<24-1))
			if err := b.AddTensor("blk.16777214.attn_norm.weight", quant.F32, []uint64{64}, make([]byte, 4*64)); err != nil {
				t.Fatal(err)
			}
		}, "qwen2.block_count is 16777215 but the file holds tensors of 3 blocks"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := build(t, c.spec, c.edit)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			m, err := Open(path)
			runtime.ReadMemStats(&after)
			if err == nil {
				m.Close()
				t.Fatal("Open succeeded, want a WeightMappingError")
			}
			if !errors.Is(err, ErrMapping) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v\nwant a WeightMappingError containing %q", err, c.want)
			}
			const limit = 64 << 20
			if got := after.TotalAlloc - before.TotalAlloc; got > limit {
				t.Errorf("Open allocated %d bytes before failing, want at most %d (allocation sized by an unchecked count)", got, limit)
			}
		})
	}
}
