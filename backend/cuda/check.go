package cuda

import (
	"fmt"
	"unsafe"

	"worker-orcd/model"
	"worker-orcd/quant"
)

// tensorOffset returns where matrix m's bytes start in data, the file's
// tensor data section (uploaded verbatim, so the same offset on the
// device), after checking that they lie inside it and hold m.Rows rows of
// m.RowBytes bytes: a kernel reads rows·row_bytes bytes from there, and a
// wrong offset would read another tensor's bytes or past the allocation.
func tensorOffset(data []byte, m *model.Matrix) (int64, error) {
	bad := func(format string, v ...any) error {
		return &model.Error{Code: "WeightMappingError", Kind: model.ErrMapping,
			Msg: fmt.Sprintf("tensor %q: ", m.Name) + fmt.Sprintf(format, v...) + ": the file is damaged or was written by a buggy tool; download it again"}
	}
	if m.Rows < 1 || m.RowBytes < 1 {
		return 0, bad("%d rows of %d bytes", m.Rows, m.RowBytes)
	}
	if want, err := quant.RowBytes(m.Type, m.Cols); err != nil || want != m.RowBytes {
		return 0, bad("rows of %d %s elements take %d bytes, the tensor says %d (%v)", m.Cols, m.Type, want, m.RowBytes, err)
	}
	need := int64(m.Rows) * int64(m.RowBytes)
	if int64(len(m.Data)) < need {
		return 0, bad("%d bytes of data, %d rows of %d bytes need %d", len(m.Data), m.Rows, m.RowBytes, need)
	}
	if len(data) == 0 {
		return 0, bad("the file has no tensor data")
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(m.Data)))
	if p < base || p-base > uintptr(len(data)) || int64(p-base)+need > int64(len(data)) {
		return 0, bad("its %d bytes are not inside the file's tensor data (%d bytes)", need, len(data))
	}
	return int64(p - base), nil
}

// unsupported is the error of a model the kernels cannot compute correctly.
func unsupported(format string, v ...any) error {
	return &model.Error{Code: "UnsupportedOperation", Kind: model.ErrUnsupported,
		Msg: fmt.Sprintf(format, v...) + ": run this model with --device cpu"}
}

// mismatch is the error of a tensor whose shape disagrees with the config.
func mismatch(name string, what string, want, got int) error {
	return &model.Error{Code: "WeightMappingError", Kind: model.ErrMapping,
		Msg: fmt.Sprintf("tensor %q: %s %d, want %d from the model's hyperparameters: the file is inconsistent", name, what, got, want)}
}

// checkModel refuses, before the GPU is touched, a model the kernels would
// compute garbage from (or read past their buffers for): every assumption
// of kernels/*.cu that a model's shape decides is checked here.
//
//   - matrix kernels (mmu_, mmt_, dequant_f16_): a row is whole 32-element
//     units, so every multiplied matrix has cols % 32 == 0;
//   - rms_norm_f32 reads rows in 16-byte pieces: n_embd % 4 == 0;
//   - attention: head_dim a multiple of 4, ≤ 128 (a lane holds 4 elements), KV heads divide
//     heads (GQA groups), a non-negative window;
//   - rope_store: an even count of rotated elements, at most the head;
//   - shapes: each matrix's rows and cols and each vector's length as the
//     hyperparameters say (kernels index with them), the LM head exactly
//     vocab rows (the logits buffer holds vocab a row), the embedding at
//     least vocab rows (token ids are checked against vocab).
func checkModel(c *model.Config, w *model.Weights) error {
	if c.HeadDim < 1 || c.HeadDim > maxHeadDim || c.HeadDim%4 != 0 {
		return unsupported("head dimension %d: the CUDA attention kernel handles multiples of 4 up to %d", c.HeadDim, maxHeadDim)
	}
	if c.NHead < 1 || c.NHeadKV < 1 || c.NHead%c.NHeadKV != 0 {
		return unsupported("%d attention heads and %d KV heads: the CUDA attention kernel needs the KV heads to divide the heads", c.NHead, c.NHeadKV)
	}
	if c.RopeDim < 2 || c.RopeDim%2 != 0 || c.RopeDim > c.HeadDim {
		return unsupported("%d rotated elements of a %d-element head: the CUDA RoPE kernel needs an even count of at most the head dimension", c.RopeDim, c.HeadDim)
	}
	if c.SlidingWindow < 0 {
		return unsupported("sliding window %d", c.SlidingWindow)
	}
	if c.NEmbd < 4 || c.NEmbd%4 != 0 {
		return unsupported("embedding length %d: the CUDA RMS norm kernel reads rows in 16-byte pieces and needs a multiple of 4", c.NEmbd)
	}
	if c.VocabSize < 1 || c.NLayer != len(w.Layers) {
		return unsupported("vocabulary of %d, %d layers for %d in the weights", c.VocabSize, c.NLayer, len(w.Layers))
	}
	d, qd, kvd, ff := c.NEmbd, c.QDim(), c.KVDim(), c.NFF
	type want struct {
		m          *model.Matrix
		rows, cols int
	}
	mats := []want{{&w.Output, c.VocabSize, d}}
	for i := range w.Layers {
		l := &w.Layers[i]
		mats = append(mats, want{&l.Q, qd, d}, want{&l.K, kvd, d}, want{&l.V, kvd, d}, want{&l.O, d, qd},
			want{&l.Gate, ff, d}, want{&l.Up, ff, d}, want{&l.Down, d, ff})
	}
	for _, x := range mats {
		m := x.m
		if _, ok := kernelSuffix[m.Type]; !ok {
			return &model.Error{Code: "UnsupportedOperation", Kind: model.ErrUnsupported,
				Msg: fmt.Sprintf("tensor %q has type %s, which the CUDA backend cannot multiply yet: use --device cpu or a Q4_K_M/Q8_0/F16 file", m.Name, m.Type)}
		}
		if m.Rows != x.rows {
			return mismatch(m.Name, "rows", x.rows, m.Rows)
		}
		if m.Cols != x.cols {
			return mismatch(m.Name, "columns", x.cols, m.Cols)
		}
		if m.Cols%32 != 0 {
			return unsupported("tensor %q has rows of %d elements: the CUDA matrix kernels take rows in 32-element units and need a multiple of 32", m.Name, m.Cols)
		}
	}
	if e := &w.TokenEmbd; e.Rows < c.VocabSize || e.Cols != d {
		return &model.Error{Code: "WeightMappingError", Kind: model.ErrMapping,
			Msg: fmt.Sprintf("tensor %q is %d×%d, want at least %d rows (the vocabulary) of %d: the file is inconsistent", e.Name, e.Rows, e.Cols, c.VocabSize, d)}
	}
	if _, ok := kernelSuffix[w.TokenEmbd.Type]; !ok {
		return &model.Error{Code: "UnsupportedOperation", Kind: model.ErrUnsupported,
			Msg: fmt.Sprintf("tensor %q has type %s, which the CUDA backend cannot read yet: use --device cpu or a Q4_K_M/Q8_0/F16 file", w.TokenEmbd.Name, w.TokenEmbd.Type)}
	}
	vec := func(name string, v []float32, n int, optional bool) error {
		if optional && v == nil {
			return nil
		}
		if len(v) != n {
			return mismatch(name, "length", n, len(v))
		}
		return nil
	}
	if err := vec("output_norm.weight", w.OutputNorm, d, false); err != nil {
		return err
	}
	for i := range w.Layers {
		l := &w.Layers[i]
		for _, v := range []struct {
			name     string
			v        []float32
			n        int
			optional bool
		}{{"attn_norm.weight", l.AttnNorm, d, false}, {"ffn_norm.weight", l.FFNNorm, d, false},
			{"attn_q.bias", l.QBias, qd, true}, {"attn_k.bias", l.KBias, kvd, true}, {"attn_v.bias", l.VBias, kvd, true}} {
			if err := vec(fmt.Sprintf("blk.%d.%s", i, v.name), v.v, v.n, v.optional); err != nil {
				return err
			}
		}
	}
	if w.RopeFreqs != nil && len(w.RopeFreqs) < c.RopeDim/2 {
		return mismatch("rope_freqs.weight", "length", c.RopeDim/2, len(w.RopeFreqs))
	}
	return nil
}

// loadAlign is the alignment in bytes the unit functions' widest loads need
// from a row of each type (16-byte vector loads of f32, f16, bf16, q4_k and
// q5_k rows, a 4-byte load in q5_1 blocks, aligned 4-byte words joined in
// registers from 2-byte-aligned blocks elsewhere: checkAlign also wants the
// tensor to start 4-byte aligned);
// embedAlign that of the element-wise deq_ functions of embed_ (a float, or
// 2-byte halves).
var loadAlign = map[string]int64{"f32": 16, "f16": 16, "bf16": 16, "q4_0": 2, "q4_1": 2, "q5_0": 2, "q5_1": 4,
	"q8_0": 2, "q4_k": 16, "q5_k": 16, "q6_k": 2}

var embedAlign = map[string]int64{"f32": 4}

// checkAlign refuses a matrix whose rows would not be aligned for the
// kernels' loads on the device (the data section's start is 256-byte
// aligned there, so the file offset decides). embedOnly: the matrix is
// only read by embed_ (an untied token embedding).
func checkAlign(name, suffix string, off, rowBytes int64, embedOnly bool) error {
	a := loadAlign[suffix]
	if embedOnly {
		a = max(embedAlign[suffix], 2)
	}
	if a == 0 {
		a = 16
	}
	if off%a != 0 || rowBytes%a != 0 {
		return unsupported("tensor %q (%s) starts at byte %d of the tensor data with rows of %d bytes: the CUDA kernels load its rows in %d-byte pieces and need both to be multiples of %d (a GGUF file written with general.alignment 32, the default, satisfies this)",
			name, suffix, off, rowBytes, a, a)
	}
	if off%4 != 0 && !embedOnly {
		// ld_words (quant.cuh) reads 4-byte words, from up to 2 bytes
		// before a 2-byte-aligned unit: within the tensor only when the
		// tensor itself starts 4-byte aligned.
		return unsupported("tensor %q (%s) starts at byte %d of the tensor data: the CUDA kernels read its rows in aligned 4-byte words and need the tensor to start at a multiple of 4 (a GGUF file written with general.alignment 32, the default, satisfies this)",
			name, suffix, off)
	}
	return nil
}
