package testmodel

import (
	"fmt"
	"strings"

	"worker-orcd/gguf"
)

// Token types as in llama.cpp's llama_token_type.
const (
	TokenNormal      int32 = 1
	TokenUnknown     int32 = 2
	TokenControl     int32 = 3
	TokenUserDefined int32 = 4
	TokenUnused      int32 = 5
	TokenByte        int32 = 6
)

// Special tokens of the built-in byte-level BPE vocabulary (qwen2).
const (
	EndOfText = "<|endoftext|>" // BOS and padding
	ImStart   = "<|im_start|>"
	ImEnd     = "<|im_end|>" // EOS
)

// Special tokens of the built-in SentencePiece vocabulary (phi3, llama).
const (
	SPMUnk       = "<unk>" // id 0
	SPMBos       = "<s>"   // id 1
	SPMEos       = "</s>"  // id 2: EOS of llama files
	Phi3User     = "<|user|>"
	Phi3Asst     = "<|assistant|>"
	Phi3System   = "<|system|>"
	Phi3End      = "<|end|>"
	Phi3EndOfTxt = "<|endoftext|>" // EOS and padding of phi3 files
)

// chatML is the template of the built-in BPE vocabulary.
const chatML = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
	"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// phi3Template is the template of the built-in phi3 vocabulary.
const phi3Template = "{{ bos_token }}{% for message in messages %}" +
	"{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '<|end|>\\n' }}" +
	"{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '<|end|>\\n' }}" +
	"{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' + message['content'] + '<|end|>\\n' }}{% endif %}" +
	"{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"

// byteToUnicode is GPT-2's byte-level alphabet: printable bytes map to
// themselves, the others to U+0100 upwards. byteOrder is the order of the
// first 256 tokens of GPT-2-style vocabularies ("!" first).
var byteToUnicode, byteOrder = func() ([256]rune, [256]byte) {
	var m [256]rune
	var order [256]byte
	n, k := 0, 0
	printable := func(b int) bool { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255) }
	for b := range 256 {
		if printable(b) {
			m[b] = rune(b)
			order[k] = byte(b)
			k++
		}
	}
	for b := range 256 {
		if !printable(b) {
			m[b] = rune(256 + n)
			n++
			order[k] = byte(b)
			k++
		}
	}
	return m, order
}()

// ByteLevel maps bytes to GPT-2's byte-level symbols (" " → "Ġ", "\n" → "Ċ").
func ByteLevel(s string) string {
	var sb strings.Builder
	for i := range len(s) {
		sb.WriteRune(byteToUnicode[s[i]])
	}
	return sb.String()
}

// bpeMerges are the merges of the built-in BPE vocabulary in rank order,
// written as plain text pairs (mapped to byte-level symbols when used). They
// cover some common English, "Hello", " world" and the golden prompts' words.
var bpeMerges = [][2]string{
	{" ", "t"}, {"h", "e"}, {"i", "n"}, {"e", "r"}, {"a", "n"}, {"o", "n"}, {" ", "a"}, {"r", "e"},
	{" t", "he"}, {"e", "n"}, {" ", "s"}, {"o", "u"}, {" ", "w"}, {"i", "s"}, {"a", "t"}, {"o", "r"},
	{" ", "o"}, {" ", "c"}, {"e", "s"}, {"n", "d"}, {" ", "h"}, {"i", "t"}, {" ", "b"}, {" ", "f"},
	{" ", "m"}, {"l", "l"}, {" ", "p"}, {" ", "i"}, {"a", "r"}, {" ", "an"}, {" an", "d"}, {" ", "n"}, {" o", "f"},
	{" t", "o"}, {"in", "g"}, {" ", "l"}, {"l", "e"}, {" ", "is"}, {" ", "in"}, {"H", "e"}, {"He", "ll"},
	{"Hell", "o"}, {"l", "d"}, {" w", "or"}, {" wor", "ld"}, {" n", "a"}, {" na", "m"}, {" nam", "e"},
	{" m", "y"}, {" c", "a"}, {" ca", "p"}, {" cap", "it"}, {" capit", "a"}, {" capita", "l"},
	{" ", "F"}, {" F", "r"}, {" Fr", "an"}, {" Fran", "c"}, {" Franc", "e"}, {"T", "he"}, {"\n", "\n"},
	{" ", " "}, {"  ", "  "},
}

// spmWords seed the built-in SentencePiece vocabulary: every prefix of
// "▁"+word becomes a piece, so each word is reachable by pairwise merges.
var spmWords = []string{
	"the", "of", "and", "to", "in", "is", "Hello", "hello", "world", "my", "name", "capital",
	"France", "The", "a", "it", "that", "for", "on", "with", "as", "was", "he", "be", "at",
}

// builtinBPE returns the tokenizer keys of the built-in byte-level BPE
// vocabulary ("gpt2" model, "qwen2" pre-tokenizer) grown to size (0 → its
// natural size: 256 bytes + merges + 3 specials).
func builtinBPE(size int) ([]gguf.KV, error) {
	tokens := make([]string, 0, 512)
	index := map[string]int{}
	add := func(s string) {
		index[s] = len(tokens)
		tokens = append(tokens, s)
	}
	for _, b := range byteOrder {
		add(string(byteToUnicode[b]))
	}
	merges := make([]string, 0, len(bpeMerges))
	for _, m := range bpeMerges {
		a, b := ByteLevel(m[0]), ByteLevel(m[1])
		if _, ok := index[a]; !ok {
			panic(fmt.Sprintf("testmodel: merge %q: left side is not a token", m))
		}
		if _, ok := index[b]; !ok {
			panic(fmt.Sprintf("testmodel: merge %q: right side is not a token", m))
		}
		if _, ok := index[a+b]; ok {
			panic(fmt.Sprintf("testmodel: merge %q repeats a token", m))
		}
		merges = append(merges, a+" "+b)
		add(a + b)
	}
	types := make([]int32, len(tokens), 512)
	for i := range types {
		types[i] = TokenNormal
	}
	for _, sp := range []string{EndOfText, ImStart, ImEnd} {
		add(sp)
		types = append(types, TokenControl)
	}
	tokens, types, _, err := pad(tokens, types, nil, size)
	if err != nil {
		return nil, err
	}
	return []gguf.KV{
		kv("tokenizer.ggml.model", "gpt2"),
		kv("tokenizer.ggml.pre", "qwen2"),
		kv("tokenizer.ggml.tokens", tokens),
		kv("tokenizer.ggml.token_type", types),
		kv("tokenizer.ggml.merges", merges),
		kv("tokenizer.ggml.eos_token_id", uint32(index[ImEnd])),
		kv("tokenizer.ggml.padding_token_id", uint32(index[EndOfText])),
		kv("tokenizer.ggml.bos_token_id", uint32(index[EndOfText])),
		kv("tokenizer.ggml.add_bos_token", false),
		kv("tokenizer.chat_template", chatML),
	}, nil
}

// builtinSPM returns the tokenizer keys of the built-in SentencePiece
// vocabulary ("llama" model, "default" pre-tokenizer): <unk> <s> </s>, the
// 256 byte tokens <0x00>…<0xFF>, single characters, word prefixes with
// descending scores, and for phi3 its chat tokens; grown to size (0 → its
// natural size).
func builtinSPM(arch string, size int) ([]gguf.KV, error) {
	var tokens []string
	var scores []float32
	var types []int32
	index := map[string]int{}
	add := func(s string, score float32, typ int32) {
		if _, ok := index[s]; ok {
			return
		}
		index[s] = len(tokens)
		tokens = append(tokens, s)
		scores = append(scores, score)
		types = append(types, typ)
	}
	add(SPMUnk, 0, TokenUnknown)
	add(SPMBos, 0, TokenControl)
	add(SPMEos, 0, TokenControl)
	for b := range 256 {
		add(fmt.Sprintf("<0x%02X>", b), 0, TokenByte)
	}
	score := float32(-1)
	piece := func(s string) {
		if _, ok := index[s]; !ok {
			add(s, score, TokenNormal)
			score--
		}
	}
	piece("▁")
	for _, set := range []string{"etaoinshrdlucmfwypvbgkjqxz", "ETAOINSHRDLUCMFWYPVBGKJQXZ", "0123456789", ".,!?'\"-:;()"} {
		for _, r := range set {
			piece(string(r))
		}
	}
	for _, w := range spmWords {
		for k := 1; k <= len(w); k++ { // the words are ASCII
			piece("▁" + w[:k])
		}
	}
	if arch == "phi3" {
		for _, sp := range []string{Phi3EndOfTxt, Phi3Asst, Phi3System, Phi3End, Phi3User} {
			add(sp, 0, TokenControl)
		}
	}
	tokens, types, scores, err := pad(tokens, types, scores, size)
	if err != nil {
		return nil, err
	}
	kvs := []gguf.KV{
		kv("tokenizer.ggml.model", "llama"),
		kv("tokenizer.ggml.pre", "default"),
		kv("tokenizer.ggml.tokens", tokens),
		kv("tokenizer.ggml.scores", scores),
		kv("tokenizer.ggml.token_type", types),
		kv("tokenizer.ggml.bos_token_id", uint32(index[SPMBos])),
	}
	if arch == "phi3" {
		kvs = append(kvs,
			kv("tokenizer.ggml.eos_token_id", uint32(index[Phi3EndOfTxt])),
			kv("tokenizer.ggml.unknown_token_id", uint32(index[SPMUnk])),
			kv("tokenizer.ggml.padding_token_id", uint32(index[Phi3EndOfTxt])))
	} else {
		kvs = append(kvs,
			kv("tokenizer.ggml.eos_token_id", uint32(index[SPMEos])),
			kv("tokenizer.ggml.unknown_token_id", uint32(index[SPMUnk])))
	}
	kvs = append(kvs,
		kv("tokenizer.ggml.add_bos_token", true),
		kv("tokenizer.ggml.add_eos_token", false))
	if arch == "phi3" {
		kvs = append(kvs, kv("tokenizer.chat_template", phi3Template))
	}
	return kvs, nil
}

// pad grows a vocabulary to size with "[PADn]" tokens of type unused (score
// -1000 when scores are kept).
func pad(tokens []string, types []int32, scores []float32, size int) ([]string, []int32, []float32, error) {
	if size == 0 {
		return tokens, types, scores, nil
	}
	if size < len(tokens) {
		return nil, nil, nil, fmt.Errorf("%w: vocab size %d is smaller than the built-in vocabulary (%d tokens)",
			ErrSpec, size, len(tokens))
	}
	for i := len(tokens); i < size; i++ {
		tokens = append(tokens, fmt.Sprintf("[PAD%d]", i))
		types = append(types, TokenUnused)
		if scores != nil {
			scores = append(scores, -1000)
		}
	}
	return tokens, types, scores, nil
}

func kv(key string, x any) gguf.KV {
	v, err := gguf.ValueOf(x)
	if err != nil {
		panic(err)
	}
	return gguf.KV{Key: key, Value: v}
}

// vocabFromFile copies every tokenizer.* key of a GGUF file, in file order.
func vocabFromFile(path string) ([]gguf.KV, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("testmodel: vocab file: %w", err)
	}
	defer f.Close()
	var kvs []gguf.KV
	for _, e := range f.KV {
		if strings.HasPrefix(e.Key, "tokenizer.") {
			kvs = append(kvs, e)
		}
	}
	if len(kvs) == 0 {
		return nil, fmt.Errorf("testmodel: vocab file %s has no tokenizer.* keys", path)
	}
	return kvs, nil
}

// vocabSize is the length of tokenizer.ggml.tokens.
func vocabSize(kvs []gguf.KV) (int, error) {
	for _, e := range kvs {
		if e.Key == "tokenizer.ggml.tokens" {
			if e.Value.Type != gguf.TypeArray || e.Value.ArrayType != gguf.TypeString {
				return 0, fmt.Errorf("testmodel: tokenizer.ggml.tokens is a %s, want array[string]", e.Value.TypeName())
			}
			return e.Value.Len(), nil
		}
	}
	return 0, fmt.Errorf("testmodel: the tokenizer has no tokenizer.ggml.tokens")
}

// TokenizerKV returns the tokenizer.* metadata the spec writes, in file
// order, and the vocabulary size.
//
// With VocabFile set, every tokenizer.* key of that file is copied verbatim
// (VocabSize, if set, must equal its token count). Otherwise a built-in
// synthetic tokenizer is used, grown to VocabSize with "[PADn]" tokens of
// type 5 (unused):
//
//   - qwen2: byte-level BPE. tokenizer.ggml.model "gpt2", pre "qwen2",
//     tokens (the 256 byte-level symbols in GPT-2 order, the merge results,
//     then <|endoftext|> <|im_start|> <|im_end|> of type 3), token_type,
//     merges, eos_token_id (<|im_end|>), padding_token_id and bos_token_id
//     (<|endoftext|>), add_bos_token false, chat_template (ChatML).
//   - phi3, llama: SentencePiece. tokenizer.ggml.model "llama", pre
//     "default", tokens (<unk> <s> </s>, <0x00>…<0xFF> of type 6, single
//     characters and "▁word" prefixes with scores -1, -2, …; phi3 adds
//     <|endoftext|> <|assistant|> <|system|> <|end|> <|user|> of type 3),
//     scores, token_type, bos_token_id (<s>), eos_token_id (</s>; phi3:
//     <|endoftext|>), unknown_token_id, padding_token_id (phi3 only),
//     add_bos_token true, add_eos_token false, chat_template (phi3 only).
func (s Spec) TokenizerKV() ([]gguf.KV, int, error) {
	var kvs []gguf.KV
	var err error
	switch {
	case s.VocabFile != "":
		kvs, err = vocabFromFile(s.VocabFile)
	case s.Arch == "qwen2":
		kvs, err = builtinBPE(s.VocabSize)
	default:
		kvs, err = builtinSPM(s.Arch, s.VocabSize)
	}
	if err != nil {
		return nil, 0, err
	}
	n, err := vocabSize(kvs)
	if err != nil {
		return nil, 0, err
	}
	if s.VocabSize != 0 && n != s.VocabSize {
		return nil, 0, fmt.Errorf("%w: vocab size %d, but %s has %d tokens", ErrSpec, s.VocabSize, s.VocabFile, n)
	}
	return kvs, n, nil
}
