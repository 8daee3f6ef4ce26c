// Package testmodel writes synthetic GGUF models of the llama family
// (qwen2, phi3, llama) with real tensor names, shapes and llama-quantize's
// type mixes, seeded random weights, and either a real tokenizer copied from
// a vocab-only GGUF or a small built-in one.
//
// A Spec describes the shape; Preset gives named shapes (the real
// Qwen2.5-0.5B and Phi-3-mini-4k, the three fixture models, and micro models
// for unit tests). Write, Bytes and Builder produce the file; the same Spec
// (Seed included) always gives the same bytes, and two recipes of the same
// Seed quantize the same underlying float weights.
//
//	s := testmodel.MustPreset("qwen2-micro")
//	s.Type = testmodel.Q4_K_M
//	s.Seed = 7
//	path := filepath.Join(t.TempDir(), "m.gguf")
//	if err := s.Write(path); err != nil { t.Fatal(err) }
//
// The command internal/testmodel/cmd/synth writes presets from the shell.
package testmodel
