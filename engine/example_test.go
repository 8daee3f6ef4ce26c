package engine_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"worker-orcd/engine"
	"worker-orcd/internal/testmodel"
	"worker-orcd/sample"
	"worker-orcd/tokenizer"
)

// tinyModel writes a small synthetic Qwen2 model (random weights, built-in
// byte-level BPE tokenizer) to a temporary directory and returns its path.
// With a real model, pass the path of its .gguf file instead.
func tinyModel() (path string, cleanup func()) {
	dir, err := os.MkdirTemp("", "engine-example")
	if err != nil {
		log.Fatal(err)
	}
	s := testmodel.MustPreset("qwen2-micro")
	s.Type = testmodel.Q8_0
	s.Seed = 1
	path = filepath.Join(dir, "model.gguf")
	if err := s.Write(path); err != nil {
		log.Fatal(err)
	}
	return path, func() { os.RemoveAll(dir) }
}

// Load a GGUF model on the CPU and look at what was loaded.
func ExampleLoad() {
	path, cleanup := tinyModel()
	defer cleanup()

	m, err := engine.Load(path, engine.LoadOptions{Device: "cpu", Engine: engine.Options{Parallel: 2, CtxLen: 256}})
	if err != nil {
		log.Fatal(err) // a *gguf.Error or *model.Error says what is wrong and what to do
	}
	defer m.Close()

	c := m.Model.Config
	fmt.Println("architecture:", c.Arch.Name)
	fmt.Println("layers:", c.NLayer, "vocabulary:", c.VocabSize, "trained context:", c.CtxLen)
	fmt.Println("backend:", m.Backend().Name())
	fmt.Println("slots:", m.Options().Parallel, "context per slot:", m.Options().CtxLen)
	// Output:
	// architecture: qwen2
	// layers: 2 vocabulary: 322 trained context: 512
	// backend: cpu
	// slots: 2 context per slot: 256
}

// Tokenize a prompt with the model's own tokenizer, and turn the ids back
// into text.
func ExampleModel_tokenize() {
	path, cleanup := tinyModel()
	defer cleanup()
	m, err := engine.Load(path, engine.LoadOptions{Device: "cpu"})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	tok := m.Tokenizer()
	ids, err := tok.Encode("hello world", tokenizer.EncodeOptions{AddSpecial: true})
	if err != nil {
		log.Fatal(err)
	}
	text, err := tok.Decode(ids, tokenizer.DecodeOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(ids) > 0, text == "hello world")
	// Output: true true
}

// Generate with a seed: the same model, prompt, parameters and seed give the
// same tokens on every run. onToken receives each token as it is produced,
// with its text already decoded as complete UTF-8.
func ExampleEngine_Generate() {
	path, cleanup := tinyModel()
	defer cleanup()
	m, err := engine.Load(path, engine.LoadOptions{Device: "cpu"})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	prompt, err := m.Tokenizer().Encode("The capital of France is", tokenizer.EncodeOptions{AddSpecial: true})
	if err != nil {
		log.Fatal(err)
	}
	seed := uint64(42)
	params := sample.DefaultParams()
	params.Temperature = 0.8
	params.Seed = &seed
	req := engine.Request{Prompt: prompt, Params: params, MaxTokens: 8, IgnoreEOS: true}

	var streamed strings.Builder
	first, err := m.Generate(context.Background(), req, func(t engine.Token) error {
		streamed.WriteString(t.Text) // e.g. write an SSE event here
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	again, err := m.Generate(context.Background(), req, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("tokens:", len(first.IDs), "stop:", first.StopReason, "seed:", first.Seed)
	fmt.Println("streamed text = result text:", streamed.String() == first.Text)
	fmt.Println("same tokens with the same seed:", slices.Equal(first.IDs, again.IDs))
	// Output:
	// tokens: 8 stop: length seed: 42
	// streamed text = result text: true
	// same tokens with the same seed: true
}

// Decode ids that arrive one at a time (as from a network stream) into text
// that never splits a UTF-8 character.
func ExampleModel_streamDecode() {
	path, cleanup := tinyModel()
	defer cleanup()
	m, err := engine.Load(path, engine.LoadOptions{Device: "cpu"})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	tok := m.Tokenizer()
	ids, err := tok.Encode("naïve café ☕", tokenizer.EncodeOptions{})
	if err != nil {
		log.Fatal(err)
	}
	dec := tok.NewStreamingDecoder(tokenizer.DecodeOptions{})
	var pieces []string
	for _, id := range ids {
		s, err := dec.Add(id)
		if err != nil {
			log.Fatal(err)
		}
		if s != "" {
			pieces = append(pieces, s)
		}
	}
	pieces = append(pieces, dec.Flush())
	fmt.Println(strings.Join(pieces, ""))
	// Output: naïve café ☕
}

// Read how much memory the model holds, by purpose, and the engine's load.
func ExampleEngine_Backend_memory() {
	path, cleanup := tinyModel()
	defer cleanup()
	m, err := engine.Load(path, engine.LoadOptions{Device: "cpu", Engine: engine.Options{Parallel: 1, CtxLen: 128}})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	prompt, _ := m.Tokenizer().Encode("hello", tokenizer.EncodeOptions{AddSpecial: true})
	if _, err := m.Generate(context.Background(), engine.Request{Prompt: prompt, Params: sample.GreedyParams(), MaxTokens: 4}, nil); err != nil {
		log.Fatal(err)
	}

	mem := m.Backend().Memory() // bytes by purpose: Weights, KVCache, Activations, Workspace (what /health reports)
	st := m.Stats()
	fmt.Println("weights bytes = file's weight bytes:", mem.Weights == m.Model.Weights.Bytes())
	fmt.Println("KV cache held by the slots:", st.KVCacheSize > 0, "slots:", st.Slots, "active:", st.Active)
	// Output:
	// weights bytes = file's weight bytes: true
	// KV cache held by the slots: true slots: 1 active: 0
}
