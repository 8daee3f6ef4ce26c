package main

import (
	"context"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"worker-orcd/engine"
	"worker-orcd/gguf"
	"worker-orcd/sample"
	"worker-orcd/tokenizer"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args   []string
		layers int
		vocab  int
	}{
		{[]string{"--shape", "qwen2-micro", "--type", "Q4_K_M"}, 2, 322},
		{[]string{"--shape", "phi3-micro", "--type", "q8_0", "--layers", "3", "--seed", "9"}, 3, 403},
		{[]string{"--shape", "llama-tiny", "--type", "F16", "--layers", "1"}, 1, 32000},
		{[]string{"--shape", "qwen2-tiny", "--type", "Q4_0", "--layers", "1", "--vocab", "builtin"}, 1, 151936},
	}
	for i, c := range cases {
		out := filepath.Join(dir, "m.gguf")
		if err := run(append(c.args, "-o", out)); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		f, err := gguf.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		arch := f.Architecture()
		n, _ := f.Uint32(arch + ".block_count")
		toks, _ := f.Strings("tokenizer.ggml.tokens")
		if int(n) != c.layers || len(toks) != c.vocab {
			t.Errorf("case %d: %d layers, %d tokens; want %d, %d", i, n, len(toks), c.layers, c.vocab)
		}
		f.Close()
	}
	for _, bad := range [][]string{
		{"--shape", "nope", "-o", filepath.Join(dir, "x.gguf")},
		{"--shape", "qwen2-micro", "--type", "Q3_K", "-o", filepath.Join(dir, "x.gguf")},
		{"--shape", "qwen2-micro"},
	} {
		if err := run(bad); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

// TestVisibleText: with the built-in tokenizer (a fresh clone has no
// ../shared), the model's greedy gibberish is visible text: the padding
// tokens that fill the shape's vocabulary are made-up words, not tokens
// that decode to nothing.
func TestVisibleText(t *testing.T) {
	for _, shape := range []string{"qwen2-tiny", "llama-tiny"} {
		out := filepath.Join(t.TempDir(), "m.gguf")
		if err := run([]string{"--shape", shape, "--type", "Q8_0", "--layers", "1", "--vocab", "builtin", "-o", out}); err != nil {
			t.Fatal(err)
		}
		m, err := engine.Load(out, engine.LoadOptions{Device: "cpu", Engine: engine.Options{Parallel: 1, CtxLen: 64}})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := m.Tokenizer().Encode("Hello, my name is", tokenizer.EncodeOptions{AddSpecial: true})
		if err != nil {
			t.Fatal(err)
		}
		res, err := m.Generate(context.Background(), engine.Request{Prompt: ids, MaxTokens: 8, Params: greedy(), IgnoreEOS: true}, func(engine.Token) error { return nil })
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(strings.TrimSpace(res.Text)) < 8 || !strings.Contains(res.Text, " ") || strings.ContainsAny(res.Text, "▁Ġ") {
			t.Errorf("%s: 8 greedy tokens gave the text %q (ids %v): want visible gibberish, words with spaces", shape, res.Text, res.IDs)
		}
	}
}

func TestHelpExitsZero(t *testing.T) {
	if err := run([]string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v (main exits 0 only on flag.ErrHelp)", err)
	}
}

func greedy() sample.Params {
	p := sample.DefaultParams()
	p.Temperature = 0
	return p
}
