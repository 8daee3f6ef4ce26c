// Package model describes the llama-family decoders this worker runs
// (Qwen2/Qwen2.5, Phi-3, Llama): the architecture table, the hyperparameters
// read from GGUF metadata, and the weights looked up by their GGUF names with
// their shapes checked. Backends execute the one decoder described here:
//
//	x = token_embd[id]
//	for each layer:
//	    h = rms_norm(x) * attn_norm
//	    q, k, v = h·Q (+bq), h·K (+bk), h·V (+bv)      // qwen2 has biases
//	    q, k = rope(q, pos), rope(k, pos)              // NeoX or interleaved
//	    a = softmax(q·kᵀ/√head_dim + causal mask)·v    // GQA: kv head = head / (n_head/n_head_kv)
//	    x = x + a·O
//	    h = rms_norm(x) * ffn_norm
//	    x = x + (silu(h·Gate) ⊙ (h·Up))·Down
//	logits = (rms_norm(x) * output_norm)·Output        // Output tied to token_embd when absent
package model

import (
	"fmt"
	"sort"
	"strings"
)

// RopeKind selects how rotary position embedding pairs the elements of a
// head.
type RopeKind int

const (
	// RopeNeoX rotates element i with element i + rot_dim/2 (Qwen2, Phi-3).
	RopeNeoX RopeKind = iota
	// RopeNormal rotates adjacent pairs (2i, 2i+1) (Llama GGUFs, whose
	// converter permutes Q and K for this layout).
	RopeNormal
)

func (r RopeKind) String() string {
	if r == RopeNeoX {
		return "neox"
	}
	return "normal"
}

// Arch is one architecture's row in the table: everything the decoder needs
// to know about how the architecture differs from the common form.
type Arch struct {
	Name         string
	Rope         RopeKind
	QKVBias      bool // optional q/k/v biases are looked for
	FusedQKV     bool // one attn_qkv tensor: rows Q, then K, then V
	FusedGateUp  bool // one ffn_up of 2·ffn rows: gate, then up
	TiedOutputOK bool // output.weight may be absent (then token_embd is used)
}

var archs = map[string]Arch{
	"qwen2": {Name: "qwen2", Rope: RopeNeoX, QKVBias: true, TiedOutputOK: true},
	"phi3":  {Name: "phi3", Rope: RopeNeoX, FusedQKV: true, FusedGateUp: true, TiedOutputOK: true},
	"llama": {Name: "llama", Rope: RopeNormal, TiedOutputOK: true},
}

// Supported lists the architecture names this worker runs, sorted.
func Supported() []string {
	names := make([]string, 0, len(archs))
	for n := range archs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LookupArch returns the table row for an architecture name.
func LookupArch(name string) (Arch, error) {
	a, ok := archs[name]
	if !ok {
		shown := name
		if shown == "" {
			shown = "(missing general.architecture)"
		}
		return Arch{}, &Error{Code: "InvalidModelType", Kind: ErrInvalidModelType,
			Msg: fmt.Sprintf("architecture %q is not supported (supported: %s): use a GGUF of a supported architecture",
				shown, strings.Join(Supported(), ", "))}
	}
	return a, nil
}
