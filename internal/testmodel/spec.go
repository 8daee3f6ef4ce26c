package testmodel

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"worker-orcd/quant"
)

// Spec describes a llama-family decoder to synthesize. The zero values of
// the optional fields mean "derive it"; see each field.
type Spec struct {
	Name string // general.name; "" → "synthetic-<Arch>"
	Arch string // general.architecture: "qwen2", "phi3" or "llama"

	Embd    int // n_embd (d)
	FF      int // n_ff (feed-forward length)
	Layers  int // n_layer (block_count)
	Heads   int // n_head; head dim = Embd / Heads
	HeadsKV int // n_head_kv (GQA); 0 → Heads

	VocabSize int     // n_vocab; 0 → the tokenizer's own size
	Context   int     // context_length; 0 → 4096
	RopeBase  float32 // rope.freq_base; 0 → 10000
	RMSEps    float32 // attention.layer_norm_rms_epsilon; 0 → 1e-5

	// RopeDim is written as <arch>.rope.dimension_count for phi3 and llama
	// (0 → the head dim); qwen2 files do not carry the key.
	RopeDim int
	// OrigContext is phi3.rope.scaling.original_context_length (phi3 only;
	// 0 → Context).
	OrigContext int
	// SlidingWindow, when > 0, is written as <arch>.attention.sliding_window.
	SlidingWindow int

	Tied        bool // no output.weight: the LM head is token_embd.weight
	QKVBias     bool // attn_q/k/v biases (qwen2)
	FusedQKV    bool // one attn_qkv [d, (heads+2*kv)*hd], rows Q then K then V (phi3)
	FusedGateUp bool // one ffn_up [d, 2*ff], gate rows then up rows, no ffn_gate (phi3)

	Type Recipe // weight type mix; "" → F16
	Seed uint64 // weights are a pure function of Seed and tensor name

	// VocabFile is a GGUF whose tokenizer.* keys are copied verbatim (e.g.
	// ../shared/fixtures/vocab/qwen2.gguf). "" → the built-in synthetic
	// tokenizer for Arch (see TokenizerKV).
	VocabFile string
	// Omit lists tensor names to leave out of the file (for tests of
	// missing-tensor errors).
	Omit []string
}

// Recipe is a weight type mix, named like llama-quantize's file types.
type Recipe string

// The recipes. F32/F16/BF16 are what a converter writes (every 2-D weight
// in that type, norms and biases F32). Q8_0, Q4_0 and Q4_K_M follow
// llama.cpp's llama-quantize rules for these architectures:
//
//   - Q8_0: every 2-D weight Q8_0.
//   - Q4_0: Q4_0, except the LM head (output.weight, or token_embd.weight
//     when tied) which is Q6_K.
//   - Q4_K_M: Q4_K, except the LM head (Q6_K) and attn_v / attn_qkv /
//     ffn_down on the "more bits" layers i < n/8 || i >= 7n/8 ||
//     (i-n/8)%3 == 2, which are Q6_K.
//
// A K-quant whose row length is not a multiple of 256 falls back as in
// llama.cpp: Q4_K → Q5_0, Q6_K → Q8_0.
const (
	F32    Recipe = "F32"
	F16    Recipe = "F16"
	BF16   Recipe = "BF16"
	Q8_0   Recipe = "Q8_0"
	Q4_0   Recipe = "Q4_0"
	Q4_K_M Recipe = "Q4_K_M"
)

// Recipes lists the supported recipes.
func Recipes() []Recipe { return []Recipe{F32, F16, BF16, Q8_0, Q4_0, Q4_K_M} }

// ParseRecipe accepts a recipe name in any case ("q4_k_m", "f16").
func ParseRecipe(s string) (Recipe, error) {
	for _, r := range Recipes() {
		if equalFold(string(r), s) {
			return r, nil
		}
	}
	return "", fmt.Errorf("testmodel: unknown weight type %q (want one of %v)", s, Recipes())
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// FileType is the general.file_type value llama.cpp writes for the recipe.
func (r Recipe) FileType() uint32 {
	switch r {
	case F32:
		return 0
	case F16:
		return 1
	case Q4_0:
		return 2
	case Q8_0:
		return 7
	case Q4_K_M:
		return 15
	case BF16:
		return 32
	}
	return 1
}

// Tensor is one tensor of a spec: name, type and dims in GGUF order (row
// length first).
type Tensor struct {
	Name string
	Type quant.Type
	Dims []uint64
}

// Elements is the product of the dims.
func (t Tensor) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// Bytes is the size of the tensor's data.
func (t Tensor) Bytes() uint64 {
	rb, err := quant.RowBytes(t.Type, int(t.Dims[0]))
	if err != nil {
		return 0
	}
	return uint64(rb) * t.Elements() / t.Dims[0]
}

// ErrSpec is wrapped by every error about an invalid Spec.
var ErrSpec = errors.New("testmodel: invalid spec")

// withDefaults fills the derived fields.
func (s Spec) withDefaults() Spec {
	if s.Name == "" {
		s.Name = "synthetic-" + s.Arch
	}
	if s.HeadsKV == 0 {
		s.HeadsKV = s.Heads
	}
	if s.Context == 0 {
		s.Context = 4096
	}
	if s.RopeBase == 0 {
		s.RopeBase = 10000
	}
	if s.RMSEps == 0 {
		s.RMSEps = 1e-5
	}
	if s.RopeDim == 0 && s.Heads > 0 {
		s.RopeDim = s.Embd / s.Heads
	}
	if s.OrigContext == 0 {
		s.OrigContext = s.Context
	}
	if s.Type == "" {
		s.Type = F16
	}
	return s
}

// HeadDim is Embd / Heads.
func (s Spec) HeadDim() int {
	if s.Heads == 0 {
		return 0
	}
	return s.Embd / s.Heads
}

// Validate checks the spec's shape (not the vocabulary, which Write reads).
func (s Spec) Validate() error {
	s = s.withDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrSpec, fmt.Sprintf(format, args...))
	}
	switch s.Arch {
	case "qwen2", "phi3", "llama":
	default:
		return bad("architecture %q is not one of qwen2, phi3, llama", s.Arch)
	}
	if s.Embd <= 0 || s.FF <= 0 || s.Layers <= 0 || s.Heads <= 0 || s.HeadsKV <= 0 {
		return bad("n_embd %d, n_ff %d, n_layer %d, n_head %d, n_head_kv %d must all be positive",
			s.Embd, s.FF, s.Layers, s.Heads, s.HeadsKV)
	}
	if s.Embd%s.Heads != 0 {
		return bad("n_embd %d is not a multiple of n_head %d", s.Embd, s.Heads)
	}
	if s.Heads%s.HeadsKV != 0 {
		return bad("n_head %d is not a multiple of n_head_kv %d", s.Heads, s.HeadsKV)
	}
	if s.HeadDim()%2 != 0 {
		return bad("head dim %d is odd (RoPE rotates pairs)", s.HeadDim())
	}
	if s.VocabSize < 0 || s.Context <= 0 {
		return bad("vocab size %d and context %d must be positive", s.VocabSize, s.Context)
	}
	if !slices.Contains(Recipes(), s.Type) {
		return bad("unknown weight type %q (want one of %v)", s.Type, Recipes())
	}
	if blk := s.Type.minBlock(); blk > 1 {
		for _, n := range []int{s.Embd, s.FF, s.HeadDim() * s.Heads} {
			if n%blk != 0 {
				return bad("%s needs row lengths that are multiples of %d; n_embd %d, n_ff %d, n_head*head_dim %d",
					s.Type, blk, s.Embd, s.FF, s.HeadDim()*s.Heads)
			}
		}
	}
	return nil
}

// minBlock is the block size every row must be a multiple of (after the
// K-quant fallbacks, which need only 32).
func (r Recipe) minBlock() int {
	switch r {
	case Q8_0, Q4_0, Q4_K_M:
		return quant.QK
	}
	return 1
}

// useMoreBits is llama.cpp's rule for the layers that get a bigger type.
func useMoreBits(i, n int) bool {
	return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2
}

// typeFor picks a 2-D weight's type. kind is the tensor's base name
// ("attn_v", "ffn_down", "output", ...); layer is -1 for global tensors.
func (s Spec) typeFor(kind string, layer, rowLen int) quant.Type {
	head := kind == "output" || (kind == "token_embd" && s.Tied)
	var t quant.Type
	switch s.Type {
	case F32:
		return quant.F32
	case F16:
		return quant.F16
	case BF16:
		return quant.BF16
	case Q8_0:
		return quant.Q8_0
	case Q4_0:
		t = quant.Q4_0
		if head {
			t = quant.Q6_K
		}
	case Q4_K_M:
		t = quant.Q4_K
		switch {
		case head:
			t = quant.Q6_K
		case (kind == "attn_v" || kind == "attn_qkv" || kind == "ffn_down") && useMoreBits(layer, s.Layers):
			t = quant.Q6_K
		}
	}
	if rowLen%quant.QKK != 0 {
		switch t {
		case quant.Q4_K:
			t = quant.Q5_0
		case quant.Q6_K:
			t = quant.Q8_0
		}
	}
	return t
}

// Tensors lists the tensors the spec writes, in file order: the global
// tensors sorted by name, then each block's tensors sorted by name (the order
// of the fixture files). vocab is the vocabulary size to use.
func (s Spec) tensors(vocab int) []Tensor {
	s = s.withDefaults()
	d, hd := s.Embd, s.HeadDim()
	qDim, kvDim := s.Heads*hd, s.HeadsKV*hd
	u := func(xs ...int) []uint64 {
		out := make([]uint64, len(xs))
		for i, x := range xs {
			out[i] = uint64(x)
		}
		return out
	}
	mat := func(name, kind string, layer, rowLen, rows int) Tensor {
		return Tensor{Name: name, Type: s.typeFor(kind, layer, rowLen), Dims: u(rowLen, rows)}
	}
	vec := func(name string, n int) Tensor { return Tensor{Name: name, Type: quant.F32, Dims: u(n)} }

	var global []Tensor
	if !s.Tied {
		global = append(global, mat("output.weight", "output", -1, d, vocab))
	}
	global = append(global,
		vec("output_norm.weight", d),
		mat("token_embd.weight", "token_embd", -1, d, vocab))
	out := global
	for i := range s.Layers {
		p := "blk." + strconv.Itoa(i) + "."
		blk := []Tensor{
			vec(p+"attn_norm.weight", d),
			mat(p+"attn_output.weight", "attn_output", i, qDim, d),
			vec(p+"ffn_norm.weight", d),
			mat(p+"ffn_down.weight", "ffn_down", i, s.FF, d),
		}
		if s.FusedQKV {
			blk = append(blk, mat(p+"attn_qkv.weight", "attn_qkv", i, d, qDim+2*kvDim))
		} else {
			blk = append(blk,
				mat(p+"attn_q.weight", "attn_q", i, d, qDim),
				mat(p+"attn_k.weight", "attn_k", i, d, kvDim),
				mat(p+"attn_v.weight", "attn_v", i, d, kvDim))
			if s.QKVBias {
				blk = append(blk, vec(p+"attn_q.bias", qDim), vec(p+"attn_k.bias", kvDim), vec(p+"attn_v.bias", kvDim))
			}
		}
		if s.FusedGateUp {
			blk = append(blk, mat(p+"ffn_up.weight", "ffn_up", i, d, 2*s.FF))
		} else {
			blk = append(blk, mat(p+"ffn_gate.weight", "ffn_gate", i, d, s.FF), mat(p+"ffn_up.weight", "ffn_up", i, d, s.FF))
		}
		slices.SortFunc(blk, func(a, b Tensor) int {
			switch {
			case a.Name < b.Name:
				return -1
			case a.Name > b.Name:
				return 1
			}
			return 0
		})
		out = append(out, blk...)
	}
	if len(s.Omit) > 0 {
		out = slices.DeleteFunc(out, func(t Tensor) bool { return slices.Contains(s.Omit, t.Name) })
	}
	return out
}
