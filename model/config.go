package model

import (
	"errors"
	"fmt"

	"worker-orcd/gguf"
)

// Config holds the hyperparameters of a model, read from the `<arch>.*`
// metadata keys.
type Config struct {
	Arch          Arch
	Name          string  // general.name, "" if absent
	NLayer        int     // <arch>.block_count
	NEmbd         int     // <arch>.embedding_length (d)
	NFF           int     // <arch>.feed_forward_length
	NHead         int     // <arch>.attention.head_count
	NHeadKV       int     // <arch>.attention.head_count_kv (default NHead)
	HeadDim       int     // <arch>.attention.key_length (default NEmbd/NHead)
	RopeDim       int     // <arch>.rope.dimension_count (default HeadDim): elements of each head rotated
	RopeBase      float32 // <arch>.rope.freq_base (default 10000)
	RopeScale     float32 // linear position scale: positions are divided by it (1 = none)
	RMSEps        float32 // <arch>.attention.layer_norm_rms_epsilon
	CtxLen        int     // <arch>.context_length: the context the model was trained for
	SlidingWindow int     // <arch>.attention.sliding_window (0 = none): keys further back are masked
	VocabSize     int     // rows of token_embd
}

// KVDim is the width of one token's keys (or values) in one layer.
func (c *Config) KVDim() int { return c.NHeadKV * c.HeadDim }

// QDim is the width of one token's queries in one layer.
func (c *Config) QDim() int { return c.NHead * c.HeadDim }

// hp reads hyperparameters with the `<arch>.` prefix added.
type hp struct {
	f    *gguf.File
	arch string
}

func (h hp) key(k string) string { return h.arch + "." + k }

func (h hp) required(k string) (int, error) {
	v, err := h.f.Uint32(h.key(k))
	if err != nil {
		return 0, configErr(h.key(k), err)
	}
	if v == 0 || v > 1<<24 {
		return 0, &Error{Code: "ModelConfigError", Kind: ErrConfig,
			Msg: fmt.Sprintf("%s is %d, want a positive count below 2^24: the file's metadata is corrupt", h.key(k), v)}
	}
	return int(v), nil
}

func (h hp) optional(k string, def int) (int, error) {
	if !h.f.Has(h.key(k)) {
		return def, nil
	}
	v, err := h.f.Uint32(h.key(k))
	if err != nil {
		return 0, configErr(h.key(k), err)
	}
	return int(v), nil
}

func (h hp) optionalFloat(k string, def float32) (float32, error) {
	if !h.f.Has(h.key(k)) {
		return def, nil
	}
	v, err := h.f.Float32(h.key(k))
	if err != nil {
		return 0, configErr(h.key(k), err)
	}
	return v, nil
}

func configErr(key string, err error) error {
	msg := err.Error()
	if errors.Is(err, gguf.ErrKeyNotFound) {
		msg = fmt.Sprintf("Metadata key not found: %q (the file lacks a required hyperparameter; was it converted for this architecture?)", key)
	}
	return &Error{Code: "ModelConfigError", Kind: ErrConfig, Msg: msg, Err: err}
}

// LoadConfig reads the architecture and hyperparameters of a GGUF file and
// checks that they are consistent. Variants the worker cannot run exactly
// (unknown RoPE scaling types) are refused here, not run wrong.
func LoadConfig(f *gguf.File) (Config, error) {
	archName := f.Architecture()
	arch, err := LookupArch(archName)
	if err != nil {
		return Config{}, err
	}
	h := hp{f: f, arch: archName}
	c := Config{Arch: arch}
	c.Name, _ = f.String("general.name")
	if c.NLayer, err = h.required("block_count"); err != nil {
		return c, err
	}
	if c.NEmbd, err = h.required("embedding_length"); err != nil {
		return c, err
	}
	if c.NFF, err = h.required("feed_forward_length"); err != nil {
		return c, err
	}
	if c.NHead, err = h.required("attention.head_count"); err != nil {
		return c, err
	}
	if c.NHeadKV, err = h.optional("attention.head_count_kv", c.NHead); err != nil {
		return c, err
	}
	if c.HeadDim, err = h.optional("attention.key_length", c.NEmbd/c.NHead); err != nil {
		return c, err
	}
	if vl, err := h.optional("attention.value_length", c.HeadDim); err != nil {
		return c, err
	} else if vl != c.HeadDim {
		return c, unsupported("%s (%d) differs from the key length (%d): separate key and value head sizes are not supported",
			h.key("attention.value_length"), vl, c.HeadDim)
	}
	if c.RopeDim, err = h.optional("rope.dimension_count", c.HeadDim); err != nil {
		return c, err
	}
	if c.RopeBase, err = h.optionalFloat("rope.freq_base", 10000); err != nil {
		return c, err
	}
	eps := float32(1e-5)
	if c.RMSEps, err = h.optionalFloat("attention.layer_norm_rms_epsilon", eps); err != nil {
		return c, err
	}
	if c.CtxLen, err = h.optional("context_length", 2048); err != nil {
		return c, err
	}
	if c.SlidingWindow, err = h.optional("attention.sliding_window", 0); err != nil {
		return c, err
	}
	c.RopeScale = 1
	if f.Has(h.key("rope.scaling.type")) {
		typ, err := f.String(h.key("rope.scaling.type"))
		if err != nil {
			return c, configErr(h.key("rope.scaling.type"), err)
		}
		switch typ {
		case "none", "":
		case "linear":
			factor, err := h.optionalFloat("rope.scaling.factor", 1)
			if err != nil {
				return c, err
			}
			if factor > 0 {
				c.RopeScale = factor
			}
		default:
			return c, unsupported("RoPE scaling type %q (%s) is not supported (supported: none, linear): use a model without it",
				typ, h.key("rope.scaling.type"))
		}
	}
	if t, ok := f.Tensor("rope_factors_long.weight"); ok {
		return c, unsupported("tensor %q: LongRoPE scaling (Phi-3 128k variants) is not supported: use a 4k-context variant", t.Name)
	}
	switch {
	case c.NHeadKV == 0 || c.NHead%c.NHeadKV != 0:
		return c, &Error{Code: "ModelConfigError", Kind: ErrConfig,
			Msg: fmt.Sprintf("head_count %d is not a multiple of head_count_kv %d", c.NHead, c.NHeadKV)}
	case c.HeadDim == 0 || c.HeadDim%2 != 0:
		return c, &Error{Code: "ModelConfigError", Kind: ErrConfig,
			Msg: fmt.Sprintf("head dimension %d must be even and positive", c.HeadDim)}
	case c.RopeDim > c.HeadDim || c.RopeDim%2 != 0:
		return c, &Error{Code: "ModelConfigError", Kind: ErrConfig,
			Msg: fmt.Sprintf("rope.dimension_count %d must be even and at most the head dimension %d", c.RopeDim, c.HeadDim)}
	case !(c.RMSEps > 0 && c.RMSEps < 1):
		return c, &Error{Code: "ModelConfigError", Kind: ErrConfig,
			Msg: fmt.Sprintf("%s is %g, want a small positive number", h.key("attention.layer_norm_rms_epsilon"), c.RMSEps)}
	case !(c.RopeBase > 0):
		return c, &Error{Code: "ModelConfigError", Kind: ErrConfig,
			Msg: fmt.Sprintf("%s is %g, want a positive number", h.key("rope.freq_base"), c.RopeBase)}
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok {
		return c, missing("token_embd.weight")
	}
	if len(emb.Dims) != 2 || emb.Dims[0] != uint64(c.NEmbd) {
		return c, badShape("token_embd.weight", emb.Dims, []uint64{uint64(c.NEmbd), 0})
	}
	c.VocabSize = int(emb.Dims[1])
	return c, nil
}

func unsupported(format string, args ...any) error {
	return &Error{Code: "UnsupportedOperation", Kind: ErrUnsupported, Msg: fmt.Sprintf(format, args...)}
}
