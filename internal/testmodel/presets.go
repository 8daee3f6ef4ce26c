package testmodel

import (
	"fmt"
	"slices"
	"strings"
)

// presets are named model shapes. VocabSize is the real model's; without a
// VocabFile the built-in tokenizer is padded to it.
var presets = map[string]Spec{
	// Qwen2.5-0.5B: d 896 is not a multiple of 256, so Q4_K_M falls back to
	// Q5_0/Q8_0 on every tensor whose rows are 896 long (as in the real file).
	"qwen2.5-0.5b": {
		Name: "synthetic-qwen2.5-0.5b", Arch: "qwen2",
		Embd: 896, FF: 4864, Layers: 24, Heads: 14, HeadsKV: 2,
		VocabSize: 151936, Context: 32768, RopeBase: 1e6, RMSEps: 1e-6,
		Tied: true, QKVBias: true,
	},
	"phi3-mini-4k": {
		Name: "synthetic-phi3-mini-4k", Arch: "phi3",
		Embd: 3072, FF: 8192, Layers: 32, Heads: 32, HeadsKV: 32,
		VocabSize: 32064, Context: 4096, RopeBase: 1e4, RMSEps: 1e-5,
		RopeDim: 96, OrigContext: 4096,
		FusedQKV: true, FusedGateUp: true,
	},
	// The three fixture shapes (../shared/fixtures/models).
	"qwen2-tiny": {
		Name: "synthetic-qwen2-tiny", Arch: "qwen2",
		Embd: 128, FF: 352, Layers: 2, Heads: 4, HeadsKV: 2,
		VocabSize: 151936, Context: 4096, RopeBase: 1e6, RMSEps: 1e-6,
		Tied: true, QKVBias: true,
	},
	"qwen2-small": {
		Name: "synthetic-qwen2-small", Arch: "qwen2",
		Embd: 256, FF: 768, Layers: 2, Heads: 4, HeadsKV: 2,
		VocabSize: 151936, Context: 4096, RopeBase: 1e6, RMSEps: 1e-6,
		Tied: true, QKVBias: true,
	},
	"phi3-small": {
		Name: "synthetic-phi3-small", Arch: "phi3",
		Embd: 256, FF: 512, Layers: 2, Heads: 4, HeadsKV: 4,
		VocabSize: 32064, Context: 4096, RopeBase: 1e4, RMSEps: 1e-5,
		RopeDim: 64, OrigContext: 4096,
		FusedQKV: true, FusedGateUp: true,
	},
	// A small llama (interleaved RoPE, no biases, untied output).
	"llama-tiny": {
		Name: "synthetic-llama-tiny", Arch: "llama",
		Embd: 256, FF: 768, Layers: 2, Heads: 4, HeadsKV: 2,
		VocabSize: 32000, Context: 4096, RopeBase: 1e4, RMSEps: 1e-5,
	},
	// Micro models for unit tests: d 64, 2 layers, the built-in vocabulary
	// at its natural size (a few hundred tokens). They build in milliseconds.
	"qwen2-micro": {
		Name: "synthetic-qwen2-micro", Arch: "qwen2",
		Embd: 64, FF: 128, Layers: 2, Heads: 4, HeadsKV: 2,
		Context: 512, RopeBase: 1e6, RMSEps: 1e-6,
		Tied: true, QKVBias: true,
	},
	"phi3-micro": {
		Name: "synthetic-phi3-micro", Arch: "phi3",
		Embd: 64, FF: 128, Layers: 2, Heads: 4, HeadsKV: 4,
		Context: 512, RopeBase: 1e4, RMSEps: 1e-5,
		FusedQKV: true, FusedGateUp: true,
	},
	"llama-micro": {
		Name: "synthetic-llama-micro", Arch: "llama",
		Embd: 64, FF: 128, Layers: 2, Heads: 4, HeadsKV: 2,
		Context: 512, RopeBase: 1e4, RMSEps: 1e-5,
	},
}

// Preset returns a named shape (see Presets) with Type F16 and Seed 0;
// set Type, Seed and VocabFile on the result as needed.
func Preset(name string) (Spec, error) {
	s, ok := presets[strings.ToLower(name)]
	if !ok {
		return Spec{}, fmt.Errorf("%w: unknown shape %q (known: %s)", ErrSpec, name, strings.Join(Presets(), ", "))
	}
	s.Type = F16
	return s, nil
}

// MustPreset is Preset for names known to exist; it panics otherwise.
func MustPreset(name string) Spec {
	s, err := Preset(name)
	if err != nil {
		panic(err)
	}
	return s
}

// Presets lists the preset names, sorted.
func Presets() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// VocabName is the name of the fixture vocabulary that fits the spec
// ("qwen2.gguf" or "phi3.gguf"): a qwen2 spec of 151936 tokens or a phi3
// spec of 32064. Otherwise "" (llama and the micro shapes use the built-in
// tokenizer).
func (s Spec) VocabName() string {
	switch s.Arch {
	case "qwen2":
		if s.VocabSize == 151936 {
			return "qwen2.gguf"
		}
	case "phi3":
		if s.VocabSize == 32064 {
			return "phi3.gguf"
		}
	}
	return ""
}
