package tokenizer_test

import (
	"fmt"

	"worker-orcd/tokenizer"
)

// A tiny SentencePiece vocabulary; real ones come from a GGUF file through
// tokenizer.Load or tokenizer.FromGGUF.
func newExampleTokenizer() *tokenizer.Tokenizer {
	toks := []string{"<unk>", "<s>", "</s>", "▁", "h", "i", "▁h", "▁hi", "!", "<0xF0>", "<0x9F>", "<0x91>", "<0x8B>"}
	types := []tokenizer.TokenType{2, 3, 3, 1, 1, 1, 1, 1, 1, 6, 6, 6, 6}
	scores := make([]float32, len(toks))
	for i := range scores {
		scores[i] = -float32(i)
	}
	tok, err := tokenizer.New(&tokenizer.Vocab{
		Model: tokenizer.ModelSPM, Tokens: toks, Types: types, Scores: scores,
		BOS: 1, EOS: 2, EOT: -1, EOM: -1, PAD: -1, UNK: 0, AddBOS: true, AddSpacePrefix: true,
	})
	if err != nil {
		panic(err)
	}
	return tok
}

func Example() {
	tok := newExampleTokenizer()
	ids, _ := tok.Encode("hi!👋", tokenizer.EncodeOptions{AddSpecial: true})
	fmt.Println(ids)
	text, _ := tok.Decode(ids, tokenizer.DecodeOptions{SkipSpecial: true, StripSpacePrefix: true})
	fmt.Printf("%q\n", text)
	// Output:
	// [1 7 8 9 10 11 12]
	// "hi!👋"
}

func ExampleStreamingDecoder() {
	tok := newExampleTokenizer()
	d := tok.NewStreamingDecoder(tokenizer.DecodeOptions{})
	for _, id := range []int32{7, 9, 10, 11, 12, 2} {
		piece, _ := d.Add(id)
		fmt.Printf("%q ", piece)
	}
	fmt.Printf("%q\n", d.Flush())
	// Output: " hi" "" "" "" "👋" "</s>" ""
}
