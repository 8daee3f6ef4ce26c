package tokenizer

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// tinyBPE is a byte-level BPE vocabulary: the 256 bytes, a few merges and
// two special tokens.
func tinyBPE(t testing.TB, pre string) *Tokenizer {
	t.Helper()
	var toks []string
	for b := 0; b < 256; b++ {
		toks = append(toks, byteLevelEncode([]byte{byte(b)}))
	}
	merges := []string{"h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d"}
	for _, m := range merges {
		toks = append(toks, strings.ReplaceAll(m, " ", ""))
	}
	types := make([]TokenType, len(toks))
	for i := range types {
		types[i] = TypeNormal
	}
	toks = append(toks, "<|im_start|>", "<|im_end|>", "<think>")
	types = append(types, TypeControl, TypeControl, TypeUserDefined)
	tok, err := New(&Vocab{Model: ModelBPE, Pre: pre, Tokens: toks, Types: types, Merges: merges,
		BOS: -1, EOS: int32(len(toks) - 2), EOT: -1, EOM: -1, PAD: -1, UNK: -1})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tinySPM is a SentencePiece vocabulary with byte fallback.
func tinySPM(t testing.TB) *Tokenizer {
	t.Helper()
	toks := []string{"<unk>", "<s>", "</s>"}
	types := []TokenType{TypeUnknown, TypeControl, TypeControl}
	for b := 0; b < 256; b++ {
		toks = append(toks, byteTokName(byte(b)))
		types = append(types, TypeByte)
	}
	pieces := []string{"▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "he", "ll", "▁he", "▁hell", "▁hello", "▁w", "or", "▁wor", "ld", "▁world", "é"}
	for _, p := range pieces {
		toks = append(toks, p)
		types = append(types, TypeNormal)
	}
	scores := make([]float32, len(toks))
	for i := range scores {
		scores[i] = -float32(i)
	}
	toks = append(toks, "<|end|>")
	types = append(types, TypeControl)
	scores = append(scores, 0)
	tok, err := New(&Vocab{Model: ModelSPM, Tokens: toks, Types: types, Scores: scores,
		BOS: 1, EOS: 2, EOT: -1, EOM: -1, PAD: -1, UNK: 0, AddBOS: true, AddSpacePrefix: true})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func byteTokName(b byte) string {
	const hex = "0123456789ABCDEF"
	return "<0x" + string(hex[b>>4]) + string(hex[b&15]) + ">"
}

func pieces(t testing.TB, tok *Tokenizer, ids []int32) []string {
	var out []string
	for _, id := range ids {
		s, err := tok.Token(id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func TestTinyBPE(t *testing.T) {
	tok := tinyBPE(t, "qwen2")
	ids, err := tok.Encode("hello world", EncodeOptions{AddSpecial: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := pieces(t, tok, ids); !slices.Equal(got, []string{"hello", "Ġworld"}) {
		t.Errorf("pieces %q", got)
	}
	// Special tokens only with ParseSpecial.
	text := "<|im_start|>hello<think>"
	ids, _ = tok.Encode(text, EncodeOptions{})
	if slices.Contains(ids, tok.EOS()-1) || len(ids) < 5 {
		t.Errorf("special token matched in raw text: %q", pieces(t, tok, ids))
	}
	if s, _ := tok.Decode(ids, DecodeOptions{}); s != text {
		t.Errorf("round trip %q", s)
	}
	ids, _ = tok.Encode(text, EncodeOptions{ParseSpecial: true})
	if got := pieces(t, tok, ids); !slices.Equal(got, []string{"<|im_start|>", "hello", "<think>"}) {
		t.Errorf("ParseSpecial pieces %q", got)
	}
	if s, _ := tok.Decode(ids, DecodeOptions{SkipSpecial: true}); s != "hello<think>" {
		t.Errorf("SkipSpecial decode %q (user-defined tokens keep their text)", s)
	}
	if !tok.IsEOG(tok.EOS()) || tok.IsEOG(ids[1]) {
		t.Error("IsEOG")
	}
}

func TestTinySPM(t *testing.T) {
	tok := tinySPM(t)
	ids, err := tok.Encode("hello world", EncodeOptions{AddSpecial: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := pieces(t, tok, ids); !slices.Equal(got, []string{"<s>", "▁hello", "▁world"}) {
		t.Errorf("pieces %q", got)
	}
	// Byte fallback for characters that are no piece.
	ids, _ = tok.Encode("hé€", EncodeOptions{})
	if got := pieces(t, tok, ids); !slices.Equal(got, []string{"▁h", "é", "<0xE2>", "<0x82>", "<0xAC>"}) {
		t.Errorf("byte fallback pieces %q", got)
	}
	if s, _ := tok.Decode(ids, DecodeOptions{StripSpacePrefix: true}); s != "hé€" {
		t.Errorf("decode %q", s)
	}
	if s, _ := tok.Decode(ids, DecodeOptions{}); s != " hé€" {
		t.Errorf("decode without strip %q", s)
	}
	// A space prefix after each special token, as llama.cpp and HF (legacy) do.
	ids, _ = tok.Encode("<|end|>hello", EncodeOptions{ParseSpecial: true})
	if got := pieces(t, tok, ids); !slices.Equal(got, []string{"<|end|>", "▁hello"}) {
		t.Errorf("after special %q", got)
	}
	if ids, _ := tok.Encode("", EncodeOptions{AddSpecial: true}); !slices.Equal(ids, []int32{1}) {
		t.Errorf("empty text: %v, want [BOS]", ids)
	}
}

func TestUnknownPre(t *testing.T) {
	_, err := New(&Vocab{Model: ModelBPE, Pre: "klingon", Tokens: []string{"a"}, Merges: []string{"a a"}})
	if !errors.Is(err, ErrTokenizer) || !strings.Contains(err.Error(), `"klingon"`) {
		t.Errorf("err = %v, want a TokenizerError naming the pre-tokenizer", err)
	}
	_, err = New(&Vocab{Model: "wordpiece", Tokens: []string{"a"}})
	if !errors.Is(err, ErrTokenizer) || !strings.Contains(err.Error(), "wordpiece") {
		t.Errorf("err = %v", err)
	}
}

func TestErrors(t *testing.T) {
	for _, tok := range []*Tokenizer{tinyBPE(t, "gpt2"), tinySPM(t)} {
		_, err := tok.Decode([]int32{1, int32(tok.VocabSize())}, DecodeOptions{})
		var te *Error
		if !errors.As(err, &te) || !errors.Is(err, ErrIDNotFound) || te.ID != int32(tok.VocabSize()) || te.VocabSize != tok.VocabSize() {
			t.Errorf("Decode(out of range) err = %v", err)
		}
		if !strings.HasPrefix(err.Error(), "IdNotFound: ") {
			t.Errorf("message %q", err)
		}
		if _, err := tok.Piece(-1); !errors.Is(err, ErrIDNotFound) {
			t.Errorf("Piece(-1) err = %v", err)
		}
		_, err = tok.Encode("ok\xffno", EncodeOptions{})
		if !errors.Is(err, ErrInvalidUTF8) || !errors.As(err, &te) || te.Offset != 2 {
			t.Errorf("Encode(invalid) err = %v", err)
		}
		if _, err := tok.TokenID("<|nope|>"); !errors.Is(err, ErrTokenNotFound) || !strings.HasPrefix(err.Error(), "TokenNotFound: ") {
			t.Errorf("TokenID err = %v", err)
		}
		d := tok.NewStreamingDecoder(DecodeOptions{})
		if _, err := d.Add(-5); !errors.Is(err, ErrIDNotFound) {
			t.Errorf("stream Add err = %v", err)
		}
	}
}

// Pre-tokenizer splits, checked by hand against the regular expressions.
func TestPreTokenizers(t *testing.T) {
	cases := []struct {
		pre  preTokenizer
		text string
		want []string
	}{
		{preQwen2, "Hello world", []string{"Hello", " world"}},
		{preQwen2, "I'M can't", []string{"I", "'M", " can", "'t"}},
		{preQwen2, "12345", []string{"1", "2", "3", "4", "5"}},
		{preLlama3, "12345", []string{"123", "45"}},
		{preQwen2, "a  b", []string{"a", " ", " b"}},
		{preQwen2, "a \n\n b", []string{"a", " \n\n", " b"}},
		{preQwen2, "x   ", []string{"x", "   "}},
		{preQwen2, "(hi) ...\n\nok", []string{"(hi", ")", " ...\n\n", "ok"}},
		{preQwen2, "\tfoo", []string{"\tfoo"}},
		{preQwen2, "a\u3000\u3000b", []string{"a", "\u3000", "\u3000b"}},
		{preGPT2, "Hello  world's 42!!", []string{"Hello", " ", " world", "'s", " 42", "!!"}},
		{preGPT2, "x  ", []string{"x", "  "}},
		{preGPT2, " ", []string{" "}},
	}
	for _, c := range cases {
		var got []string
		c.pre.split(c.text, func(s string) { got = append(got, s) })
		if !slices.Equal(got, c.want) {
			t.Errorf("%d %q: %q, want %q", c.pre, c.text, got, c.want)
		}
	}
}

func TestValidUTF8Repair(t *testing.T) {
	cases := []struct{ in, want string }{
		{"abc", "abc"},
		{"\xe2\x82", "\uFFFD"},
		{"\xe2\x82A", "\uFFFDA"},
		{"\xff\xfe", "\uFFFD\uFFFD"},
		{"\xf0\x9f\x91\x8b", "👋"},
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // surrogate: 0xED then 0xA0 is out of range
		{"\xc0\xaf", "\uFFFD\uFFFD"},
	}
	for _, c := range cases {
		if got := string(appendValidUTF8(nil, []byte(c.in), true)); got != c.want {
			t.Errorf("%q: %q, want %q", c.in, got, c.want)
		}
	}
}

// Streaming decode of any id sequence equals Decode.
func TestStreamingEqualsDecode(t *testing.T) {
	toks := map[string]*Tokenizer{"tinyBPE": tinyBPE(t, "qwen2"), "tinySPM": tinySPM(t)}
	for _, name := range presentVocabs(t) {
		toks[name] = vocabTokenizer(t, name)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for name, tok := range toks {
		n := tok.VocabSize()
		for iter := 0; iter < 300; iter++ {
			ids := make([]int32, rng.IntN(20))
			for i := range ids {
				if rng.IntN(2) == 0 && n > 300 {
					ids[i] = int32(rng.IntN(n))
				} else {
					ids[i] = int32(rng.IntN(min(n, 300))) // byte tokens
				}
			}
			for _, opts := range []DecodeOptions{{}, {SkipSpecial: true}, {SkipSpecial: true, StripSpacePrefix: true}} {
				full, err := tok.Decode(ids, opts)
				if err != nil {
					t.Fatal(err)
				}
				d := tok.NewStreamingDecoder(opts)
				var s strings.Builder
				for _, id := range ids {
					p, err := d.Add(id)
					if err != nil {
						t.Fatal(err)
					}
					if !utf8.ValidString(p) {
						t.Fatalf("%s: streamed invalid UTF-8 %q", name, p)
					}
					s.WriteString(p)
				}
				s.WriteString(d.Flush())
				if s.String() != full {
					t.Fatalf("%s %v %+v: streaming %q != Decode %q", name, ids, opts, s.String(), full)
				}
			}
		}
	}
}

// A character split over byte tokens is held, never shown as U+FFFD.
func TestStreamingHoldsSplitCharacter(t *testing.T) {
	tok := tinySPM(t)
	ids, _ := tok.Encode("€", EncodeOptions{}) // ▁ <0xE2> <0x82> <0xAC>
	d := tok.NewStreamingDecoder(DecodeOptions{StripSpacePrefix: true})
	var got []string
	for _, id := range ids {
		p, _ := d.Add(id)
		got = append(got, p)
	}
	if !slices.Equal(got, []string{"", "", "", "€"}) || d.Flush() != "" {
		t.Errorf("pieces %q", got)
	}
	d.Add(ids[1])
	if d.Pending() != 1 {
		t.Errorf("pending %d", d.Pending())
	}
	if s := d.Flush(); s != "\uFFFD" {
		t.Errorf("Flush of a cut character = %q", s)
	}
}

// Encode is safe for concurrent use (the word cache is shared).
func TestConcurrentEncode(t *testing.T) {
	tok := tinyBPE(t, "qwen2")
	want, _ := tok.Encode(englishProse[:4000], EncodeOptions{})
	done := make(chan []int32)
	for g := 0; g < 4; g++ {
		go func() {
			ids, _ := tok.Encode(englishProse[:4000], EncodeOptions{})
			done <- ids
		}()
	}
	for g := 0; g < 4; g++ {
		if ids := <-done; !slices.Equal(ids, want) {
			t.Error("concurrent Encode differs")
		}
	}
}
