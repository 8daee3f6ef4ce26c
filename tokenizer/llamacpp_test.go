package tokenizer

import (
	"slices"
	"testing"

	"worker-orcd/internal/fixtures"
)

// The fixtures' golden files (internal/fixtures) hold llama.cpp's prompt ids
// and pieces (add_special and parse_special on) and 16 generated ids each.
func TestLlamaCppPromptIDs(t *testing.T) {
	for _, m := range fixtures.Models {
		t.Run(m.Name, func(t *testing.T) {
			g := fixtures.ReadGolden(t, m.Name)
			tok := vocabTokenizer(t, m.Vocab)
			for _, pr := range g.Prompts {
				ids, err := tok.Encode(pr.Prompt, EncodeOptions{AddSpecial: true, ParseSpecial: true})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(ids, pr.PromptIDs) {
					t.Errorf("%q: ids %v, llama.cpp %v", pr.Prompt, ids, pr.PromptIDs)
				}
				if (len(ids) > 0 && ids[0] == tok.BOS()) != pr.BOSAdded {
					t.Errorf("%q: BOS added = %v, llama.cpp %v", pr.Prompt, !pr.BOSAdded, pr.BOSAdded)
				}
				for i, want := range pr.PromptPieces {
					if i >= len(ids) {
						break
					}
					got, _ := tok.Piece(ids[i])
					if string(got) != string(want) {
						t.Errorf("%q: piece %d = %q, llama.cpp %q", pr.Prompt, i, got, want)
					}
				}
				// Streaming the whole sequence equals Decode.
				all := append(slices.Clone(pr.PromptIDs), pr.GeneratedIDs...)
				for _, opts := range []DecodeOptions{{}, {SkipSpecial: true, StripSpacePrefix: true}} {
					full, err := tok.Decode(all, opts)
					if err != nil {
						t.Fatal(err)
					}
					if s := streamAll(t, tok, all, opts); s != full {
						t.Errorf("%q %+v: streaming %q != Decode %q", pr.Prompt, opts, s, full)
					}
				}
				if s, _ := tok.Decode(pr.PromptIDs, DecodeOptions{SkipSpecial: true, StripSpacePrefix: true}); s != pr.Prompt {
					t.Errorf("Decode(prompt ids) = %q, want %q", s, pr.Prompt)
				}
			}
		})
	}
}

func streamAll(t testing.TB, tok *Tokenizer, ids []int32, opts DecodeOptions) string {
	d := tok.NewStreamingDecoder(opts)
	var s string
	for _, id := range ids {
		piece, err := d.Add(id)
		if err != nil {
			t.Fatal(err)
		}
		s += piece
	}
	return s + d.Flush()
}
