package main

import (
	"path/filepath"
	"testing"

	"worker-orcd/gguf"
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
