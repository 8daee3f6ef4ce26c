package model

import (
	"fmt"
	"strconv"
	"strings"

	"worker-orcd/gguf"
	"worker-orcd/quant"
)

// Matrix is a 2-D weight kept in its file encoding: Rows rows of Cols
// elements, each row RowBytes bytes of Type, rows contiguous. Data is a view
// of the mapped file; nothing is copied or dequantized at load.
type Matrix struct {
	Name     string
	Type     quant.Type
	Cols     int // ne0: input width
	Rows     int // ne1: output width
	RowBytes int
	Data     []byte
}

// Row returns the bytes of row i.
func (m *Matrix) Row(i int) []byte { return m.Data[i*m.RowBytes : (i+1)*m.RowBytes] }

// rows returns a view of rows [lo, hi) as its own matrix.
func (m *Matrix) rows(name string, lo, hi int) Matrix {
	return Matrix{Name: name, Type: m.Type, Cols: m.Cols, Rows: hi - lo, RowBytes: m.RowBytes,
		Data: m.Data[lo*m.RowBytes : hi*m.RowBytes]}
}

// Layer is one decoder block. Shapes in GGUF order [ne0, ne1].
type Layer struct {
	AttnNorm []float32 // blk.N.attn_norm.weight   [d]
	Q        Matrix    // blk.N.attn_q.weight      [d, n_head*hd]   (phi3: rows of attn_qkv)
	K        Matrix    // blk.N.attn_k.weight      [d, n_head_kv*hd]
	V        Matrix    // blk.N.attn_v.weight      [d, n_head_kv*hd]
	QBias    []float32 // blk.N.attn_q.bias        [n_head*hd]     (qwen2; nil when absent)
	KBias    []float32 // blk.N.attn_k.bias        [n_head_kv*hd]
	VBias    []float32 // blk.N.attn_v.bias        [n_head_kv*hd]
	O        Matrix    // blk.N.attn_output.weight [n_head*hd, d]
	FFNNorm  []float32 // blk.N.ffn_norm.weight    [d]
	Gate     Matrix    // blk.N.ffn_gate.weight    [d, ffn]         (phi3: first half of ffn_up)
	Up       Matrix    // blk.N.ffn_up.weight      [d, ffn]         (phi3: second half of ffn_up)
	Down     Matrix    // blk.N.ffn_down.weight    [ffn, d]
}

// Weights are all tensors of the decoder.
type Weights struct {
	TokenEmbd  Matrix    // token_embd.weight  [d, vocab]
	OutputNorm []float32 // output_norm.weight [d]
	Output     Matrix    // output.weight      [d, vocab]; token_embd when the file has none (tied)
	TiedOutput bool
	RopeFreqs  []float32 // rope_freqs.weight  [rope_dim/2], optional per-frequency divisors (Llama 3.1)
	Layers     []Layer
}

// Bytes returns the bytes of all matrices.
func (w *Weights) Bytes() int64 {
	n := w.DecodeBytes()
	if !w.TiedOutput {
		n += int64(len(w.TokenEmbd.Data))
	}
	return n
}

// DecodeBytes returns the bytes one decode step must read: every layer's
// matrices and the LM head (of the embedding, only one row).
func (w *Weights) DecodeBytes() int64 {
	n := int64(len(w.Output.Data))
	for i := range w.Layers {
		l := &w.Layers[i]
		for _, m := range []*Matrix{&l.Q, &l.K, &l.V, &l.O, &l.Gate, &l.Up, &l.Down} {
			n += int64(len(m.Data))
		}
	}
	return n
}

func missing(name string) error {
	return &Error{Code: "WeightMappingError", Kind: ErrMapping,
		Msg: fmt.Sprintf("Tensor not found: %q (the file is incomplete or not a model of this architecture)", name)}
}

func badShape(name string, got, want []uint64) error {
	ws := fmt.Sprint(want)
	if len(want) == 2 && want[1] == 0 {
		ws = fmt.Sprintf("[%d *]", want[0])
	}
	return &Error{Code: "WeightMappingError", Kind: ErrMapping,
		Msg: fmt.Sprintf("tensor %q has shape %v, want %s (the file does not match its own hyperparameters)", name, got, ws)}
}

// loader looks tensors up by name and checks shapes and types.
type loader struct{ f *gguf.File }

func (l loader) tensor(name string, want ...uint64) (*gguf.TensorInfo, error) {
	t, ok := l.f.Tensor(name)
	if !ok {
		return nil, missing(name)
	}
	ok = len(t.Dims) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = t.Dims[i] == want[i]
	}
	if !ok {
		return nil, badShape(name, t.Dims, want)
	}
	return t, nil
}

func (l loader) matrix(name string, cols, rows int) (Matrix, error) {
	t, err := l.tensor(name, uint64(cols), uint64(rows))
	if err != nil {
		return Matrix{}, err
	}
	if !quant.CanVecDot(t.Type) {
		return Matrix{}, unsupported("tensor %q has type %s, which the CPU backend cannot multiply yet: use a Q4_K_M, Q8_0 or F16 file", name, t.Type)
	}
	rb, err := quant.RowBytes(t.Type, cols)
	if err != nil {
		return Matrix{}, &Error{Code: "WeightMappingError", Kind: ErrMapping, Msg: fmt.Sprintf("tensor %q: %v", name, err), Err: err}
	}
	return Matrix{Name: name, Type: t.Type, Cols: cols, Rows: rows, RowBytes: rb, Data: l.f.TensorData(t)}, nil
}

// vector loads a 1-D tensor as float32 (norms and biases are small).
func (l loader) vector(name string, n int) ([]float32, error) {
	t, err := l.tensor(name, uint64(n))
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	if err := quant.Dequantize(t.Type, l.f.TensorData(t), out); err != nil {
		return nil, unsupported("tensor %q: %v", name, err)
	}
	return out, nil
}

func (l loader) optionalVector(name string, n int) ([]float32, error) {
	if _, ok := l.f.Tensor(name); !ok {
		return nil, nil
	}
	return l.vector(name, n)
}

// blocksPresent counts the distinct block indices below limit that have at
// least one tensor named "blk.<i>.…" in f. It is at most the number of
// tensors, which the file's size bounds.
func blocksPresent(f *gguf.File, limit int) int {
	seen := make(map[int]struct{})
	for i := range f.Tensors {
		rest, ok := strings.CutPrefix(f.Tensors[i].Name, "blk.")
		if !ok {
			continue
		}
		num, _, ok := strings.Cut(rest, ".")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(num)
		if err != nil || n < 0 || n >= limit {
			continue
		}
		seen[n] = struct{}{}
	}
	return len(seen)
}

// LoadWeights maps every tensor the decoder needs, checking names, shapes
// and types against the config. Phi-3's fused attn_qkv and ffn_up are split
// into row views here, so backends see one layout for every architecture.
func LoadWeights(f *gguf.File, c *Config) (*Weights, error) {
	l := loader{f}
	d, qd, kvd, ff := c.NEmbd, c.QDim(), c.KVDim(), c.NFF
	// Every count that sizes an allocation is bounded by what the file
	// holds: block_count comes from the metadata, so check it against the
	// blocks that have tensors before making a slice of that length.
	if n := blocksPresent(f, c.NLayer); n < c.NLayer {
		return nil, &Error{Code: "WeightMappingError", Kind: ErrMapping,
			Msg: fmt.Sprintf("%s.block_count is %d but the file holds tensors of %d blocks: the metadata is corrupt or the file is incomplete (re-download or re-convert the model)",
				c.Arch.Name, c.NLayer, n)}
	}
	w := &Weights{Layers: make([]Layer, c.NLayer)}
	var err error
	if w.TokenEmbd, err = l.matrix("token_embd.weight", d, c.VocabSize); err != nil {
		return nil, err
	}
	if w.OutputNorm, err = l.vector("output_norm.weight", d); err != nil {
		return nil, err
	}
	if _, ok := f.Tensor("output.weight"); ok || !c.Arch.TiedOutputOK {
		if w.Output, err = l.matrix("output.weight", d, c.VocabSize); err != nil {
			return nil, err
		}
	} else {
		w.Output, w.TiedOutput = w.TokenEmbd, true
	}
	if w.RopeFreqs, err = l.optionalVector("rope_freqs.weight", c.RopeDim/2); err != nil {
		return nil, err
	}
	for i := range w.Layers {
		ly := &w.Layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		if ly.AttnNorm, err = l.vector(p+"attn_norm.weight", d); err != nil {
			return nil, err
		}
		if ly.FFNNorm, err = l.vector(p+"ffn_norm.weight", d); err != nil {
			return nil, err
		}
		if c.Arch.FusedQKV {
			qkv, err := l.matrix(p+"attn_qkv.weight", d, qd+2*kvd)
			if err != nil {
				return nil, err
			}
			ly.Q = qkv.rows(p+"attn_qkv.weight[q]", 0, qd)
			ly.K = qkv.rows(p+"attn_qkv.weight[k]", qd, qd+kvd)
			ly.V = qkv.rows(p+"attn_qkv.weight[v]", qd+kvd, qd+2*kvd)
		} else {
			if ly.Q, err = l.matrix(p+"attn_q.weight", d, qd); err != nil {
				return nil, err
			}
			if ly.K, err = l.matrix(p+"attn_k.weight", d, kvd); err != nil {
				return nil, err
			}
			if ly.V, err = l.matrix(p+"attn_v.weight", d, kvd); err != nil {
				return nil, err
			}
		}
		if c.Arch.QKVBias {
			if ly.QBias, err = l.optionalVector(p+"attn_q.bias", qd); err != nil {
				return nil, err
			}
			if ly.KBias, err = l.optionalVector(p+"attn_k.bias", kvd); err != nil {
				return nil, err
			}
			if ly.VBias, err = l.optionalVector(p+"attn_v.bias", kvd); err != nil {
				return nil, err
			}
		}
		if ly.O, err = l.matrix(p+"attn_output.weight", qd, d); err != nil {
			return nil, err
		}
		if c.Arch.FusedGateUp {
			up, err := l.matrix(p+"ffn_up.weight", d, 2*ff)
			if err != nil {
				return nil, err
			}
			ly.Gate = up.rows(p+"ffn_up.weight[gate]", 0, ff)
			ly.Up = up.rows(p+"ffn_up.weight[up]", ff, 2*ff)
		} else {
			if ly.Gate, err = l.matrix(p+"ffn_gate.weight", d, ff); err != nil {
				return nil, err
			}
			if ly.Up, err = l.matrix(p+"ffn_up.weight", d, ff); err != nil {
				return nil, err
			}
		}
		if ly.Down, err = l.matrix(p+"ffn_down.weight", ff, d); err != nil {
			return nil, err
		}
	}
	return w, nil
}
