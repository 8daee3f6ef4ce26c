package tokenizer

import (
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzTokenizers: the synthetic vocabularies always, the real ones when the
// fixtures are present.
func fuzzTokenizers(f *testing.F) []*Tokenizer {
	toks := []*Tokenizer{tinyBPE(f, "qwen2"), tinyBPE(f, "llama-bpe"), tinyBPE(f, "gpt2"), tinySPM(f)}
	for _, name := range presentVocabs(f) {
		toks = append(toks, vocabTokenizer(f, name))
	}
	return toks
}

// FuzzEncode: Encode never panics, and decode(encode(s)) == s for valid
// UTF-8 (SentencePiece: after undoing the space prefix).
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", " ", "Hello, world!", "a  b\n\n c", "I'm 123456 ok", "日本語 👋🏽", "<|im_start|>x<|im_end|>",
		"\x00\x01\r\n\t", "q\u0301\u20dd", "\xff\xfe", "'s'S'll", "\u3000\u3000x", "   \n"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	toks := fuzzTokenizers(f)
	f.Fuzz(func(t *testing.T, s string, special bool) {
		for _, tok := range toks {
			ids, err := tok.Encode(s, EncodeOptions{AddSpecial: true, ParseSpecial: special})
			if !utf8.ValidString(s) {
				if err == nil {
					t.Fatalf("Encode(%q) accepted invalid UTF-8", s)
				}
				continue
			}
			if err != nil {
				t.Fatalf("Encode(%q): %v", s, err)
			}
			if special || tok.Model() == ModelSPM && strings.Contains(s, spmSpace) {
				continue // SentencePiece cannot tell a "▁" in the text from a space
			}
			back, err := tok.Decode(ids, DecodeOptions{SkipSpecial: true, StripSpacePrefix: true})
			if err != nil {
				t.Fatal(err)
			}
			if back != s {
				t.Fatalf("%s: Decode(Encode(%q)) = %q (ids %v)", tok.Model(), s, back, ids)
			}
		}
	})
}

// FuzzDecode: Decode and the streaming decoder never panic on any ids, and
// agree.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 200})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 230, 0, 0, 0, 131, 0, 0, 0, 168})
	toks := fuzzTokenizers(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		ids := make([]int32, 0, len(b)/4)
		for len(b) >= 4 {
			ids = append(ids, int32(binary.BigEndian.Uint32(b)))
			b = b[4:]
		}
		for _, tok := range toks {
			for _, opts := range []DecodeOptions{{}, {SkipSpecial: true, StripSpacePrefix: true}} {
				full, ferr := tok.Decode(ids, opts)
				d := tok.NewStreamingDecoder(opts)
				var s []byte
				var serr error
				for _, id := range ids {
					p, err := d.Add(id)
					if err != nil {
						serr = err
						continue
					}
					s = append(s, p...)
				}
				s = append(s, d.Flush()...)
				if (ferr != nil) != (serr != nil) {
					t.Fatalf("Decode err %v, stream err %v", ferr, serr)
				}
				if ferr == nil && string(s) != full {
					t.Fatalf("ids %v: streaming %q != Decode %q", ids, s, full)
				}
				if !utf8.Valid(s) {
					t.Fatalf("streamed invalid UTF-8")
				}
			}
		}
	})
}
