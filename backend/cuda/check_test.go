package cuda

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"worker-orcd/internal/fixtures"
	"worker-orcd/internal/testmodel"
	"worker-orcd/model"
	"worker-orcd/quant"
)

// synthModel is a model description (no data) of the given shape: what
// checkModel reads.
func synthModel(c model.Config) (*model.Config, *model.Weights) {
	mat := func(name string, rows, cols int) model.Matrix {
		return model.Matrix{Name: name, Type: quant.F16, Rows: rows, Cols: cols, RowBytes: 2 * cols}
	}
	d, qd, kvd, ff := c.NEmbd, c.QDim(), c.KVDim(), c.NFF
	w := &model.Weights{TokenEmbd: mat("token_embd.weight", c.VocabSize, d), OutputNorm: make([]float32, d),
		Output: mat("output.weight", c.VocabSize, d)}
	for range c.NLayer {
		w.Layers = append(w.Layers, model.Layer{AttnNorm: make([]float32, d), FFNNorm: make([]float32, d),
			Q: mat("blk.0.attn_q.weight", qd, d), K: mat("blk.0.attn_k.weight", kvd, d), V: mat("blk.0.attn_v.weight", kvd, d),
			O: mat("blk.0.attn_output.weight", d, qd), Gate: mat("blk.0.ffn_gate.weight", ff, d),
			Up: mat("blk.0.ffn_up.weight", ff, d), Down: mat("blk.0.ffn_down.weight", d, ff)})
	}
	return &c, w
}

var goodConfig = model.Config{NLayer: 2, NEmbd: 128, NFF: 352, NHead: 4, NHeadKV: 2, HeadDim: 32, RopeDim: 32, VocabSize: 100}

// TestCheckModelRefuses: a model whose shape breaks what a kernel assumes is
// refused at load with an error saying what was expected, what was found
// and what to do, before any GPU work.
func TestCheckModelRefuses(t *testing.T) {
	if err := checkModel(synthModel(goodConfig)); err != nil {
		t.Fatalf("a good shape is refused: %v", err)
	}
	for _, c := range []struct {
		name   string
		change func(*model.Config, *model.Weights)
		kind   error
		want   string
	}{
		{"n_embd not a multiple of 4", func(c *model.Config, w *model.Weights) { *c, *w = cw(func(c *model.Config) { c.NEmbd = 90 }) },
			model.ErrUnsupported, "embedding length 90"},
		{"rows not whole 32-element units", func(c *model.Config, w *model.Weights) { *c, *w = cw(func(c *model.Config) { c.NEmbd = 100 }) },
			model.ErrUnsupported, "multiple of 32"},
		{"ffn width not whole units", func(c *model.Config, w *model.Weights) { *c, *w = cw(func(c *model.Config) { c.NFF = 300 }) },
			model.ErrUnsupported, `"blk.0.ffn_down.weight" has rows of 300 elements`},
		{"head dimension above 128", func(c *model.Config, w *model.Weights) {
			*c, *w = cw(func(c *model.Config) { c.NEmbd, c.HeadDim, c.RopeDim = 1024, 256, 256 })
		}, model.ErrUnsupported, "head dimension 256"},
		{"head dimension not a multiple of 4", func(c *model.Config, w *model.Weights) {
			*c, *w = cw(func(c *model.Config) { c.HeadDim, c.RopeDim = 30, 30 })
		}, model.ErrUnsupported, "head dimension 30"},
		{"KV heads not dividing heads", func(c *model.Config, w *model.Weights) {
			*c, *w = cw(func(c *model.Config) { c.NHead, c.NHeadKV = 4, 3 })
		},
			model.ErrUnsupported, "KV heads to divide"},
		{"odd RoPE width", func(c *model.Config, w *model.Weights) { c.RopeDim = 31 }, model.ErrUnsupported, "31 rotated"},
		{"RoPE wider than a head", func(c *model.Config, w *model.Weights) { c.RopeDim = 64 }, model.ErrUnsupported, "64 rotated"},
		{"LM head rows other than the vocabulary", func(c *model.Config, w *model.Weights) { w.Output.Rows = 101 },
			model.ErrMapping, `"output.weight": rows 101, want 100`},
		{"embedding smaller than the vocabulary", func(c *model.Config, w *model.Weights) { w.TokenEmbd.Rows = 99 },
			model.ErrMapping, "token_embd.weight"},
		{"norm of the wrong length", func(c *model.Config, w *model.Weights) { w.Layers[1].FFNNorm = w.Layers[1].FFNNorm[:64] },
			model.ErrMapping, "blk.1.ffn_norm.weight"},
		{"bias of the wrong length", func(c *model.Config, w *model.Weights) { w.Layers[0].KBias = make([]float32, 63) },
			model.ErrMapping, "blk.0.attn_k.bias"},
		{"short rope_freqs", func(c *model.Config, w *model.Weights) { w.RopeFreqs = make([]float32, 3) },
			model.ErrMapping, "rope_freqs.weight"},
		{"layers missing", func(c *model.Config, w *model.Weights) { w.Layers = w.Layers[:1] }, model.ErrUnsupported, "1 in the weights"},
	} {
		cfg, w := synthModel(goodConfig)
		c.change(cfg, w)
		err := checkModel(cfg, w)
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %v mentioning %q", c.name, err, c.kind, c.want)
			continue
		}
		if errors.Is(err, model.ErrUnsupported) && !strings.Contains(err.Error(), "--device cpu") {
			t.Errorf("%s: %v does not say what to do", c.name, err)
		}
	}
}

// cw is a consistent model of goodConfig changed by f.
func cw(f func(*model.Config)) (model.Config, model.Weights) {
	c := goodConfig
	f(&c)
	cfg, w := synthModel(c)
	return *cfg, *w
}

// TestCheckAlign: rows misaligned for the kernels' loads are refused.
func TestCheckAlign(t *testing.T) {
	for _, c := range []struct {
		suffix    string
		off, rb   int64
		embedOnly bool
		ok        bool
	}{
		{"f16", 32, 64, false, true}, {"f16", 8, 64, false, false}, {"f16", 8, 64, true, true},
		{"q4_k", 144*3 + 8, 144, false, false}, {"q4_k", 288, 144, false, true}, {"q5_1", 2, 24, false, false},
		{"q8_0", 68, 34, false, true}, {"q8_0", 34, 34, false, false}, // rows 2-byte aligned; the tensor's start 4-byte aligned (ld_words)
		{"q6_k", 420, 210, false, true}, {"q6_k", 210, 210, false, false},
		{"f32", 4, 128, true, true}, {"f32", 2, 128, true, false},
	} {
		err := checkAlign("t", c.suffix, c.off, c.rb, c.embedOnly)
		if (err == nil) != c.ok {
			t.Errorf("%s at %d, rows of %d, embed only %v: error %v, want ok %v", c.suffix, c.off, c.rb, c.embedOnly, err, c.ok)
		}
		if err != nil && !errors.Is(err, model.ErrUnsupported) {
			t.Errorf("%v is not an UnsupportedOperation", err)
		}
	}
}

// TestRealShapesPassChecks: the checks refuse no model the backend ran
// before: every small synthetic preset in every recipe, and the fixture
// models when present, pass checkModel and planWeights (the micro presets in
// every recipe, the tiny and small ones in Q8_0).
func TestRealShapesPassChecks(t *testing.T) {
	var paths []string
	dir := t.TempDir()
	for _, name := range testmodel.Presets() {
		if !strings.Contains(name, "tiny") && !strings.Contains(name, "small") && !strings.Contains(name, "micro") {
			continue
		}
		for _, r := range testmodel.Recipes() {
			if !strings.Contains(name, "micro") && r != testmodel.Q8_0 {
				continue // the larger presets in the usual recipe only (time)
			}
			spec, err := testmodel.Preset(name)
			if err != nil {
				t.Fatal(err)
			}
			spec.Type, spec.Seed = r, 1
			path := filepath.Join(dir, name+"-"+string(r)+".gguf")
			if err := spec.Write(path); err != nil {
				t.Fatalf("%s %s: %v", name, r, err)
			}
			paths = append(paths, path)
		}
	}
	var real []string
	if dir, err := fixtures.Dir(); err == nil { // the real files too, where the fixtures are
		real, _ = filepath.Glob(filepath.Join(dir, "models", "*.gguf"))
		paths = append(paths, real...)
	} else if !errors.Is(err, fixtures.ErrAbsent) {
		t.Fatal(err)
	}
	for _, path := range paths {
		m, err := model.Open(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if err := checkModel(&m.Config, m.Weights); err != nil {
			t.Errorf("%s: %v", filepath.Base(path), err)
		}
		b := &Backend{m: m, c: &m.Config}
		if _, err := b.planWeights(); err != nil {
			t.Errorf("%s: %v", filepath.Base(path), err)
		}
		m.Close()
	}
	t.Logf("%d models checked (%d fixtures)", len(paths), len(real))
}
