// Command synth writes a synthetic GGUF model with a real model's tensor
// names, shapes and quantization mix and seeded random weights.
//
//	go run ./internal/testmodel/cmd/synth --shape qwen2.5-0.5b --type Q4_K_M -o qwen05.gguf
//
// Without --vocab it copies the tokenizer of ../shared/fixtures/vocab/
// (qwen2.gguf or phi3.gguf) when that file is found next to the current
// directory or the repository root, and otherwise uses the built-in
// synthetic tokenizer padded to the shape's vocabulary size. --vocab builtin
// forces the latter. synth gives the padding tokens visible made-up words
// (" kalomi"), so that the random model's gibberish shows as text instead
// of decoding to nothing.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"worker-orcd/gguf"
	"worker-orcd/internal/testmodel"
	"worker-orcd/quant"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // --help: the usage was printed
		}
		fmt.Fprintln(os.Stderr, "synth:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("synth", flag.ContinueOnError)
	shape := fs.String("shape", "qwen2.5-0.5b", "model shape: "+strings.Join(testmodel.Presets(), ", "))
	typ := fs.String("type", "Q4_K_M", "weight types: Q4_K_M, Q8_0, Q4_0, F16, BF16, F32")
	vocab := fs.String("vocab", "", `vocab-only GGUF whose tokenizer.* keys are copied; "builtin" for the synthetic tokenizer; default: ../shared/fixtures/vocab/<arch>.gguf if found`)
	seed := fs.Uint64("seed", 1234, "random seed")
	layers := fs.Int("layers", 0, "override the number of layers")
	window := fs.Int("sliding-window", 0, "write <arch>.attention.sliding_window with this value (0: none)")
	context := fs.Int("context", 0, "override <arch>.context_length (0: the shape's)")
	out := fs.String("o", "", "output file (required)")
	list := fs.Bool("list", false, "list the shapes and exit")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: synth --shape NAME --type TYPE [--vocab FILE|builtin] [--seed N] [--layers N] [--sliding-window N] [--context N] -o OUT.gguf")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *list {
		for _, n := range testmodel.Presets() {
			s := testmodel.MustPreset(n)
			fmt.Printf("%-14s %-5s d=%-5d ffn=%-5d layers=%-3d heads=%d/%d vocab=%d ctx=%d tied=%v\n",
				n, s.Arch, s.Embd, s.FF, s.Layers, s.Heads, s.HeadsKV, s.VocabSize, s.Context, s.Tied)
		}
		return nil
	}
	if *out == "" {
		fs.Usage()
		return fmt.Errorf("-o is required")
	}
	s, err := testmodel.Preset(*shape)
	if err != nil {
		return err
	}
	if s.Type, err = testmodel.ParseRecipe(*typ); err != nil {
		return err
	}
	s.Seed = *seed
	if *layers > 0 {
		s.Layers = *layers
	}
	s.SlidingWindow = *window
	if *context < 0 {
		return fmt.Errorf("--context %d: want 0 (the shape's) or a positive length", *context)
	}
	if *context > 0 {
		s.Context = *context
	}
	var vocabNote string
	switch *vocab {
	case "builtin", "none":
		vocabNote = "built-in synthetic tokenizer (--vocab builtin)"
	case "":
		if p := findVocab(s.VocabName()); p != "" {
			s.VocabFile = p
			vocabNote = "tokenizer copied from " + p
		} else if s.VocabName() != "" {
			vocabNote = fmt.Sprintf("built-in synthetic tokenizer (../shared/fixtures/vocab/%s not found)", s.VocabName())
		} else {
			vocabNote = "built-in synthetic tokenizer"
		}
	default:
		s.VocabFile = *vocab
		vocabNote = "tokenizer copied from " + *vocab
	}

	if s.VocabFile == "" {
		// The built-in tokenizer, with visible padding tokens.
		dir, err := os.MkdirTemp("", "synth-vocab-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		n, err := writeVisibleVocab(s, filepath.Join(dir, "vocab.gguf"))
		if err != nil {
			return err
		}
		if n > 0 {
			s.VocabFile = filepath.Join(dir, "vocab.gguf")
			vocabNote += fmt.Sprintf(", %d padding tokens as made-up words", n)
		}
	}

	start := time.Now()
	ts, err := s.Tensors()
	if err != nil {
		return err
	}
	if err := s.Write(*out); err != nil {
		return err
	}
	elapsed := time.Since(start)
	st, err := os.Stat(*out)
	if err != nil {
		return err
	}

	var params uint64
	count := map[quant.Type]int{}
	for _, t := range ts {
		params += t.Elements()
		count[t.Type]++
	}
	var mix []string
	for _, t := range slices.Sorted(func(yield func(quant.Type) bool) {
		for t := range count {
			if !yield(t) {
				return
			}
		}
	}) {
		mix = append(mix, fmt.Sprintf("%s %d", t, count[t]))
	}
	vocabSize := s.VocabSize
	if vocabSize == 0 {
		vocabSize = int(ts[slices.IndexFunc(ts, func(t testmodel.Tensor) bool { return t.Name == "token_embd.weight" })].Dims[1])
	}
	fmt.Printf("wrote %s (random weights: its text is gibberish): %s %s, %d layers, %d bytes (%.1f MiB), %d tensors (%s), %d parameters\n",
		*out, *shape, s.Type, s.Layers, st.Size(), float64(st.Size())/(1<<20), len(ts), strings.Join(mix, ", "), params)
	fmt.Printf("vocab: %d tokens, %s\n", vocabSize, vocabNote)
	fmt.Printf("seed %d, %.2fs\n", s.Seed, elapsed.Seconds())
	return nil
}

// findVocab looks for ../shared/fixtures/vocab/name next to the current
// directory and next to the repository root (the nearest parent holding
// go.mod).
func findVocab(name string) string {
	if name == "" {
		return ""
	}
	cwd, err := os.Getwd()
	if err != nil {
		return ""
	}
	dirs := []string{cwd}
	for d := cwd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			dirs = append(dirs, d)
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "..", "shared", "fixtures", "vocab", name)
		if _, err := os.Stat(p); err == nil {
			return filepath.Clean(p)
		}
	}
	return ""
}

// syllables make up the padding words: distinct indices give distinct words.
var syllables = [16]string{"ka", "lo", "mi", "ne", "su", "ta", "ri", "vo", "ba", "de", "fu", "go", "ji", "pe", "zu", "wa"}

// padWord is the made-up word of padding token i.
func padWord(i int) string {
	var b strings.Builder
	for {
		b.WriteString(syllables[i%16])
		i /= 16
		if i == 0 {
			return b.String()
		}
	}
}

// writeVisibleVocab writes a vocabulary-only GGUF with the spec's built-in
// tokenizer in which every padding token ("[PADn]", type unused, which
// decodes to nothing) is a normal token with a made-up word and a leading
// space (byte-level "Ġ" for BPE, "▁" for SentencePiece). It returns how many
// tokens it changed (0: none, and nothing is written).
func writeVisibleVocab(s testmodel.Spec, path string) (int, error) {
	kvs, _, err := s.TokenizerKV()
	if err != nil {
		return 0, err
	}
	space := "▁"
	for _, kv := range kvs {
		if m, _ := kv.Value.Any().(string); kv.Key == "tokenizer.ggml.model" && m == "gpt2" {
			space = testmodel.ByteLevel(" ")
		}
	}
	var tokens []string
	var types []int32
	for _, kv := range kvs {
		switch kv.Key {
		case "tokenizer.ggml.tokens":
			for i := range kv.Value.Len() {
				tokens = append(tokens, kv.Value.Index(i).Any().(string))
			}
		case "tokenizer.ggml.token_type":
			for i := range kv.Value.Len() {
				types = append(types, kv.Value.Index(i).Any().(int32))
			}
		}
	}
	if len(tokens) != len(types) {
		return 0, fmt.Errorf("built-in tokenizer: %d tokens but %d token types", len(tokens), len(types))
	}
	seen := make(map[string]bool, len(tokens))
	for _, t := range tokens {
		seen[t] = true
	}
	changed := 0
	for i, t := range tokens {
		if types[i] != testmodel.TokenUnused || !strings.HasPrefix(t, "[PAD") {
			continue
		}
		w := space + padWord(changed)
		for seen[w] {
			w += "s"
		}
		seen[w] = true
		tokens[i], types[i] = w, testmodel.TokenNormal
		changed++
	}
	if changed == 0 {
		return 0, nil
	}
	b := gguf.NewBuilder()
	for _, kv := range kvs {
		switch kv.Key {
		case "tokenizer.ggml.tokens":
			b.Set(kv.Key, tokens)
		case "tokenizer.ggml.token_type":
			b.Set(kv.Key, types)
		default:
			b.Set(kv.Key, kv.Value)
		}
	}
	return changed, b.WriteFile(path)
}
