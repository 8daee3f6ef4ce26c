package testmodel

import (
	"bytes"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"worker-orcd/gguf"
	"worker-orcd/internal/fixtures"
	"worker-orcd/quant"
)

func micro(t *testing.T, name string, r Recipe, seed uint64) Spec {
	t.Helper()
	s, err := Preset(name)
	if err != nil {
		t.Fatal(err)
	}
	s.Type, s.Seed = r, seed
	return s
}

func TestDeterministic(t *testing.T) {
	for _, name := range []string{"qwen2-micro", "phi3-micro", "llama-micro"} {
		for _, r := range []Recipe{F16, Q4_K_M} {
			t.Run(name+"/"+string(r), func(t *testing.T) {
				s := micro(t, name, r, 42)
				a, err := s.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				b, err := s.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a, b) {
					t.Fatal("same spec and seed gave different bytes")
				}
				s.Seed = 43
				c, err := s.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				if len(c) != len(a) {
					t.Fatalf("seed changed the size: %d vs %d", len(c), len(a))
				}
				if bytes.Equal(a, c) {
					t.Fatal("different seeds gave the same bytes")
				}
			})
		}
	}
}

// TestWriteReadBack writes every micro preset under every recipe and checks
// each tensor's name, type, dims and size through the gguf reader, and the
// metadata the model loader needs.
func TestWriteReadBack(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"qwen2-micro", "phi3-micro", "llama-micro"} {
		for _, r := range Recipes() {
			t.Run(name+"/"+string(r), func(t *testing.T) {
				s := micro(t, name, r, 1)
				path := filepath.Join(dir, name+"-"+string(r)+".gguf")
				if err := s.Write(path); err != nil {
					t.Fatal(err)
				}
				f, err := gguf.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				want, err := s.Tensors()
				if err != nil {
					t.Fatal(err)
				}
				if len(f.Tensors) != len(want) {
					t.Fatalf("%d tensors, want %d", len(f.Tensors), len(want))
				}
				for i, w := range want {
					g := f.Tensors[i]
					if g.Name != w.Name || g.Type != w.Type || !slices.Equal(g.Dims, w.Dims) || g.Size != w.Bytes() {
						t.Errorf("tensor %d: got %s %s %v %d bytes, want %s %s %v %d bytes",
							i, g.Name, g.Type, g.Dims, g.Size, w.Name, w.Type, w.Dims, w.Bytes())
					}
					if g.Offset%32 != 0 {
						t.Errorf("%s at offset %d, not 32-aligned", g.Name, g.Offset)
					}
				}
				if got := f.Architecture(); got != s.Arch {
					t.Errorf("architecture %q, want %q", got, s.Arch)
				}
				ft, _ := f.Uint32("general.file_type")
				if ft != r.FileType() {
					t.Errorf("file_type %d, want %d", ft, r.FileType())
				}
				toks, err := f.Strings("tokenizer.ggml.tokens")
				if err != nil {
					t.Fatal(err)
				}
				emb, _ := f.Tensor("token_embd.weight")
				if int(emb.Dims[1]) != len(toks) {
					t.Errorf("token_embd has %d rows, vocabulary %d tokens", emb.Dims[1], len(toks))
				}
				for _, k := range []string{"block_count", "context_length", "embedding_length", "feed_forward_length",
					"attention.head_count", "attention.head_count_kv"} {
					if _, err := f.Uint32(s.Arch + "." + k); err != nil {
						t.Error(err)
					}
				}
				for _, k := range []string{"rope.freq_base", "attention.layer_norm_rms_epsilon"} {
					if _, err := f.Float32(s.Arch + "." + k); err != nil {
						t.Error(err)
					}
				}
				_, hasOut := f.Tensor("output.weight")
				if hasOut == s.Tied {
					t.Errorf("output.weight present = %v with Tied = %v", hasOut, s.Tied)
				}
				checkValues(t, f, s)
			})
		}
	}
}

// checkValues dequantizes a few tensors and checks their distribution.
func checkValues(t *testing.T, f *gguf.File, s Spec) {
	t.Helper()
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		if !strings.HasPrefix(ti.Name, "blk.0.") && ti.Name != "output_norm.weight" {
			continue
		}
		x := make([]float32, ti.Elements())
		if err := quant.Dequantize(ti.Type, f.TensorData(ti), x); err != nil {
			t.Fatalf("%s: %v", ti.Name, err)
		}
		var sum, sq float64
		for _, v := range x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s holds %v", ti.Name, v)
			}
			sum += float64(v)
			sq += float64(v) * float64(v)
		}
		n := float64(len(x))
		mean := sum / n
		std := math.Sqrt(sq/n - mean*mean)
		wantMean, wantStd := s.distribution(Tensor{Name: ti.Name, Dims: ti.Dims})
		if math.Abs(mean-wantMean) > 4*wantStd/math.Sqrt(n)+0.01 || math.Abs(std-wantStd) > 0.25*wantStd {
			t.Errorf("%s (%s): mean %.4f std %.4f, want about %.4f and %.4f", ti.Name, ti.Type, mean, std, wantMean, wantStd)
		}
	}
}

// TestSameWeightsAcrossRecipes: F32 and Q8_0 of one seed hold the same
// numbers up to Q8_0's rounding.
func TestSameWeightsAcrossRecipes(t *testing.T) {
	a, err := micro(t, "qwen2-micro", F32, 5).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	b, err := micro(t, "qwen2-micro", Q8_0, 5).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	fa, _ := gguf.Parse(a)
	fb, _ := gguf.Parse(b)
	for _, name := range []string{"blk.1.ffn_down.weight", "token_embd.weight"} {
		ta, _ := fa.Tensor(name)
		tb, _ := fb.Tensor(name)
		xa := make([]float32, ta.Elements())
		xb := make([]float32, tb.Elements())
		if err := quant.Dequantize(ta.Type, fa.TensorData(ta), xa); err != nil {
			t.Fatal(err)
		}
		if err := quant.Dequantize(tb.Type, fb.TensorData(tb), xb); err != nil {
			t.Fatal(err)
		}
		var maxA, maxD float64
		for i := range xa {
			maxA = max(maxA, math.Abs(float64(xa[i])))
			maxD = max(maxD, math.Abs(float64(xa[i]-xb[i])))
		}
		if maxD > maxA/100 {
			t.Errorf("%s: F32 and Q8_0 differ by %g (max |x| %g)", name, maxD, maxA)
		}
	}
}

func TestTinyModelIsFast(t *testing.T) {
	s := micro(t, "qwen2-micro", Q4_K_M, 3)
	path := filepath.Join(t.TempDir(), "m.gguf")
	s.Write(path) // warm up (tables, page cache)
	start := time.Now()
	if err := s.Write(path); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("writing a micro model took %v, want < 100ms", d)
	}
}

// typeMix is the expected type of each tensor of a preset under a recipe,
// written out by hand from llama.cpp's rules; the fixture test below checks
// the same rules against llama-quantize's real output.
func TestRecipeTypes(t *testing.T) {
	q05 := MustPreset("qwen2.5-0.5b")
	q05.Type = Q4_K_M
	phi := MustPreset("phi3-mini-4k")
	phi.Type = Q4_K_M
	q4 := MustPreset("qwen2-small")
	q4.Type = Q4_0
	q8 := MustPreset("phi3-small")
	q8.Type = Q8_0
	cases := []struct {
		s    Spec
		name string
		want quant.Type
	}{
		{q05, "token_embd.weight", quant.Q8_0}, // tied head, 896 % 256 != 0
		{q05, "blk.0.attn_q.weight", quant.Q5_0},
		{q05, "blk.0.attn_v.weight", quant.Q8_0}, // more bits, fallback
		{q05, "blk.3.attn_v.weight", quant.Q5_0},
		{q05, "blk.5.attn_v.weight", quant.Q8_0},
		{q05, "blk.0.ffn_down.weight", quant.Q6_K}, // rows of 4864 = 19*256
		{q05, "blk.4.ffn_down.weight", quant.Q4_K},
		{q05, "blk.20.ffn_down.weight", quant.Q6_K},
		{q05, "blk.21.ffn_down.weight", quant.Q6_K},
		{q05, "blk.19.ffn_down.weight", quant.Q4_K},
		{q05, "blk.7.ffn_up.weight", quant.Q5_0},
		{q05, "blk.7.attn_q.bias", quant.F32},
		{phi, "output.weight", quant.Q6_K},
		{phi, "token_embd.weight", quant.Q4_K},
		{phi, "blk.3.attn_qkv.weight", quant.Q6_K},
		{phi, "blk.4.attn_qkv.weight", quant.Q4_K},
		{phi, "blk.6.attn_qkv.weight", quant.Q6_K},
		{phi, "blk.28.ffn_down.weight", quant.Q6_K},
		{phi, "blk.26.ffn_down.weight", quant.Q4_K},
		{phi, "blk.27.ffn_down.weight", quant.Q6_K}, // (27-4)%3 == 2
		{phi, "blk.8.ffn_up.weight", quant.Q4_K},
		{q4, "token_embd.weight", quant.Q6_K},
		{q4, "blk.1.attn_v.weight", quant.Q4_0},
		{q8, "output.weight", quant.Q8_0},
		{q8, "blk.1.attn_qkv.weight", quant.Q8_0},
	}
	for _, c := range cases {
		ts := c.s.tensors(c.s.VocabSize)
		i := slices.IndexFunc(ts, func(t Tensor) bool { return t.Name == c.name })
		if i < 0 {
			t.Errorf("%s %s: no such tensor", c.s.Name, c.name)
			continue
		}
		if ts[i].Type != c.want {
			t.Errorf("%s %s %s: %s, want %s", c.s.Name, c.s.Type, c.name, ts[i].Type, c.want)
		}
	}
	// 24-layer "more bits" layers: 0,1,2, 5,8,...,20, 21,22,23.
	var more []int
	for i := range 24 {
		if useMoreBits(i, 24) {
			more = append(more, i)
		}
	}
	if want := []int{0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23}; !slices.Equal(more, want) {
		t.Errorf("useMoreBits(·, 24) = %v, want %v", more, want)
	}
}

// TestFixtureTypeMix checks that the Q4_K_M recipe reproduces every tensor
// (name, order, shape, type) of the llama-quantize'd fixture models, and
// their hyperparameters.
func TestFixtureTypeMix(t *testing.T) {
	for _, m := range fixtures.Models {
		name := m.Preset
		t.Run(name, func(t *testing.T) {
			f, err := gguf.Open(fixtures.ModelPath(t, m.Name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			s := MustPreset(name)
			s.Type = Q4_K_M
			want := s.tensors(s.VocabSize)
			if len(f.Tensors) != len(want) {
				t.Fatalf("fixture has %d tensors, spec %d", len(f.Tensors), len(want))
			}
			for i, w := range want {
				g := f.Tensors[i]
				if g.Name != w.Name || g.Type != w.Type || !slices.Equal(g.Dims, w.Dims) || g.Size != w.Bytes() {
					t.Errorf("tensor %d: fixture %s %s %v, spec %s %s %v", i, g.Name, g.Type, g.Dims, w.Name, w.Type, w.Dims)
				}
			}
			kvs, _, err := s.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range kvs {
				if strings.HasPrefix(e.Key, "tokenizer.") {
					continue
				}
				g, ok := f.Get(e.Key)
				if !ok {
					t.Errorf("fixture lacks %s", e.Key)
				} else if g.String() != e.Value.String() || g.Type != e.Value.Type {
					t.Errorf("%s: fixture %s %s, spec %s %s", e.Key, g.TypeName(), g, e.Value.TypeName(), e.Value)
				}
			}
			for _, e := range f.KV {
				if !strings.HasPrefix(e.Key, "tokenizer.") && !slices.ContainsFunc(kvs, func(k gguf.KV) bool { return k.Key == e.Key }) {
					t.Errorf("spec lacks fixture key %s", e.Key)
				}
			}

			// With the fixture's tokenizer the whole header (metadata, tensor
			// infos, offsets) is byte-identical to llama-quantize's.
			s.VocabFile = fixtures.Path(t, "vocab", s.VocabName())
			kvs, _, err = s.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			b := gguf.NewBuilder()
			for _, e := range kvs {
				b.Set(e.Key, e.Value)
			}
			var maxBytes uint64
			for _, w := range want {
				maxBytes = max(maxBytes, w.Bytes())
			}
			zero := make([]byte, maxBytes)
			for _, w := range want {
				if err := b.AddTensor(w.Name, w.Type, w.Dims, zero[:w.Bytes()]); err != nil {
					t.Fatal(err)
				}
			}
			data, err := b.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(data)) != f.Size {
				t.Errorf("file size %d, fixture %d", len(data), f.Size)
			}
			if !bytes.Equal(data[:f.DataOffset], f.Bytes()[:f.DataOffset]) {
				t.Errorf("header (first %d bytes) differs from the fixture's", f.DataOffset)
			}
		})
	}
}

// TestVocabFile copies a real tokenizer and checks the keys are verbatim.
func TestVocabFile(t *testing.T) {
	for _, c := range []struct{ preset, vocab string }{{"qwen2-tiny", "qwen2.gguf"}, {"phi3-small", "phi3.gguf"}} {
		t.Run(c.vocab, func(t *testing.T) {
			path := fixtures.Path(t, "vocab", c.vocab)
			s := MustPreset(c.preset)
			if s.VocabName() != c.vocab {
				t.Errorf("VocabName = %q, want %q", s.VocabName(), c.vocab)
			}
			s.VocabFile = path
			kvs, n, err := s.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if n != s.VocabSize {
				t.Errorf("vocab size %d, want %d", n, s.VocabSize)
			}
			v, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			count := 0
			for _, e := range v.KV {
				if !strings.HasPrefix(e.Key, "tokenizer.") {
					continue
				}
				count++
				i := slices.IndexFunc(kvs, func(k gguf.KV) bool { return k.Key == e.Key })
				if i < 0 {
					t.Errorf("%s not copied", e.Key)
					continue
				}
				if kvs[i].Value.Type != e.Value.Type || kvs[i].Value.ArrayType != e.Value.ArrayType ||
					kvs[i].Value.Len() != e.Value.Len() || kvs[i].Value.String() != e.Value.String() {
					t.Errorf("%s changed: %s vs %s", e.Key, kvs[i].Value, e.Value)
				}
			}
			if count < 8 {
				t.Errorf("only %d tokenizer keys in %s", count, path)
			}
			s.VocabSize = 1000
			if _, _, err := s.Metadata(); !errors.Is(err, ErrSpec) {
				t.Errorf("vocab size mismatch: err %v, want ErrSpec", err)
			}
		})
	}
}

func TestBuiltinBPE(t *testing.T) {
	s := MustPreset("qwen2-micro")
	kvs, n, err := s.TokenizerKV()
	if err != nil {
		t.Fatal(err)
	}
	if n < 300 || n > 400 {
		t.Errorf("built-in BPE has %d tokens, want about 300", n)
	}
	f := parseKVs(t, kvs)
	toks, _ := f.Strings("tokenizer.ggml.tokens")
	types, _ := f.Int32s("tokenizer.ggml.token_type")
	merges, _ := f.Strings("tokenizer.ggml.merges")
	if toks[0] != "!" || toks[188] != "Ā" || toks[188+32] != "Ġ" {
		t.Errorf("byte-level order: %q %q %q", toks[0], toks[188], toks[220])
	}
	index := map[string]int{}
	for i, tok := range toks {
		if _, dup := index[tok]; dup {
			t.Errorf("token %q repeated", tok)
		}
		index[tok] = i
	}
	seen := map[rune]bool{}
	for _, tok := range toks[:256] {
		r := []rune(tok)
		if len(r) != 1 || seen[r[0]] {
			t.Fatalf("byte token %q", tok)
		}
		seen[r[0]] = true
	}
	for _, m := range merges {
		a, b, ok := strings.Cut(m, " ")
		_, okA := index[a]
		_, okB := index[b]
		_, okAB := index[a+b]
		if !ok || !okA || !okB || !okAB {
			t.Errorf("merge %q: sides or result missing", m)
		}
	}
	for _, c := range []struct {
		key  string
		tok  string
		typ  int32
		want bool
	}{{"tokenizer.ggml.eos_token_id", ImEnd, TokenControl, true}, {"tokenizer.ggml.bos_token_id", EndOfText, TokenControl, true}} {
		id, err := f.Uint32(c.key)
		if err != nil {
			t.Fatal(err)
		}
		if toks[id] != c.tok || types[id] != c.typ {
			t.Errorf("%s = %d (%q type %d), want %q type %d", c.key, id, toks[id], types[id], c.tok, c.typ)
		}
	}
	if i := index[ByteLevel(" world")]; i == 0 {
		t.Error(`no " world" token`)
	}
	if m, _ := f.String("tokenizer.ggml.model"); m != "gpt2" {
		t.Errorf("model %q", m)
	}

	// Grown to a real size: padding of type 5.
	s.VocabSize = 1000
	kvs, n, err = s.TokenizerKV()
	if err != nil || n != 1000 {
		t.Fatalf("grown: n %d, err %v", n, err)
	}
	f = parseKVs(t, kvs)
	toks, _ = f.Strings("tokenizer.ggml.tokens")
	types, _ = f.Int32s("tokenizer.ggml.token_type")
	if toks[999] != "[PAD999]" || types[999] != TokenUnused {
		t.Errorf("last token %q type %d", toks[999], types[999])
	}
	s.VocabSize = 10
	if _, _, err := s.TokenizerKV(); !errors.Is(err, ErrSpec) {
		t.Errorf("vocab of 10: err %v, want ErrSpec", err)
	}
}

func TestBuiltinSPM(t *testing.T) {
	for _, arch := range []string{"phi3", "llama"} {
		t.Run(arch, func(t *testing.T) {
			s := MustPreset(arch + "-micro")
			kvs, n, err := s.TokenizerKV()
			if err != nil {
				t.Fatal(err)
			}
			f := parseKVs(t, kvs)
			toks, _ := f.Strings("tokenizer.ggml.tokens")
			types, _ := f.Int32s("tokenizer.ggml.token_type")
			scores, err := f.Float32s("tokenizer.ggml.scores")
			if err != nil || len(scores) != n || len(types) != n || len(toks) != n {
				t.Fatalf("lengths: tokens %d types %d scores %d (%v)", len(toks), len(types), len(scores), err)
			}
			if toks[0] != SPMUnk || toks[1] != SPMBos || toks[2] != SPMEos || toks[3] != "<0x00>" || toks[258] != "<0xFF>" {
				t.Errorf("first tokens %q", toks[:4])
			}
			for i := 3; i < 259; i++ {
				if types[i] != TokenByte {
					t.Fatalf("token %d %q type %d", i, toks[i], types[i])
				}
			}
			index := map[string]int{}
			for i, tok := range toks {
				if _, dup := index[tok]; dup {
					t.Errorf("token %q repeated", tok)
				}
				index[tok] = i
			}
			// Every multi-character normal piece splits into two pieces.
			for i, tok := range toks {
				r := []rune(tok)
				if types[i] != TokenNormal || len(r) < 2 {
					continue
				}
				if _, ok := index[string(r[:len(r)-1])]; !ok {
					t.Errorf("piece %q is unreachable", tok)
				}
			}
			if _, ok := index["▁Hello"]; !ok {
				t.Error("no ▁Hello")
			}
			eos, _ := f.Uint32("tokenizer.ggml.eos_token_id")
			wantEOS := SPMEos
			if arch == "phi3" {
				wantEOS = Phi3EndOfTxt
				if _, ok := index[Phi3End]; !ok {
					t.Error("no <|end|>")
				}
			}
			if toks[eos] != wantEOS {
				t.Errorf("eos %d %q, want %q", eos, toks[eos], wantEOS)
			}
			if add, _ := f.Bool("tokenizer.ggml.add_bos_token"); !add {
				t.Error("add_bos_token false")
			}
		})
	}
}

// parseKVs writes metadata into a tensor-less GGUF and parses it back.
func parseKVs(t *testing.T, kvs []gguf.KV) *gguf.File {
	t.Helper()
	b := gguf.NewBuilder()
	for _, e := range kvs {
		b.Set(e.Key, e.Value)
	}
	data, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestValidate(t *testing.T) {
	base := MustPreset("qwen2-micro")
	cases := []struct {
		name string
		edit func(*Spec)
		want string
	}{
		{"arch", func(s *Spec) { s.Arch = "gpt2" }, "architecture"},
		{"heads", func(s *Spec) { s.Heads = 3 }, "multiple of n_head"},
		{"gqa", func(s *Spec) { s.HeadsKV = 3 }, "multiple of n_head_kv"},
		{"zero", func(s *Spec) { s.Layers = 0 }, "positive"},
		{"recipe", func(s *Spec) { s.Type = "Q3_K_S" }, "unknown weight type"},
		{"block", func(s *Spec) { s.Type = Q4_0; s.FF = 100 }, "multiples of 32"},
	}
	for _, c := range cases {
		s := base
		c.edit(&s)
		err := s.Validate()
		if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want ErrSpec mentioning %q", c.name, err, c.want)
		}
		if _, err := s.Bytes(); err == nil {
			t.Errorf("%s: Bytes succeeded", c.name)
		}
	}
	s := base
	s.Type = F32
	s.FF = 100
	if err := s.Validate(); err != nil {
		t.Errorf("F32 with n_ff 100: %v", err)
	}
}

func TestOmit(t *testing.T) {
	s := MustPreset("llama-micro")
	s.Omit = []string{"blk.1.attn_k.weight"}
	data, err := s.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Tensor("blk.1.attn_k.weight"); ok {
		t.Error("omitted tensor present")
	}
	if _, ok := f.Tensor("blk.0.attn_k.weight"); !ok {
		t.Error("blk.0.attn_k.weight missing")
	}
}

func TestPresets(t *testing.T) {
	for _, name := range Presets() {
		s, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		for _, r := range Recipes() {
			s.Type = r
			if err := s.Validate(); err != nil {
				t.Errorf("%s %s: %v", name, r, err)
			}
		}
	}
	if _, err := Preset("nope"); !errors.Is(err, ErrSpec) {
		t.Errorf("unknown preset: %v", err)
	}
	// The real shapes' parameter counts.
	for _, c := range []struct {
		name   string
		params uint64
	}{{"qwen2.5-0.5b", 494032768}, {"phi3-mini-4k", 3821079552}} {
		s := MustPreset(c.name)
		var n uint64
		for _, t := range s.tensors(s.VocabSize) {
			n += t.Elements()
		}
		if n != c.params {
			t.Errorf("%s: %d parameters, want %d", c.name, n, c.params)
		}
	}
}

func BenchmarkWriteQwen2Small(b *testing.B) {
	s := MustPreset("qwen2-small")
	s.Type = Q4_K_M
	path := filepath.Join(b.TempDir(), "m.gguf")
	for b.Loop() {
		if err := s.Write(path); err != nil {
			b.Fatal(err)
		}
	}
}
