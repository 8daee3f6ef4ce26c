package tokenizer

import (
	"encoding/json"
	"os"
	"slices"
	"testing"
)

// The golden files of ../shared/fixtures/golden hold llama.cpp's prompt ids
// and pieces (add_special and parse_special on) and 16 generated ids each.
func TestLlamaCppPromptIDs(t *testing.T) {
	for _, m := range []struct{ golden, vocab string }{
		{"qwen2-tiny-Q4_K_M", "qwen2"}, {"qwen2-small-Q4_K_M", "qwen2"}, {"phi3-small-Q4_K_M", "phi3"},
	} {
		t.Run(m.golden, func(t *testing.T) {
			p := fixture(t, "golden", m.golden+".json")
			tok := vocabTokenizer(t, m.vocab)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			var g struct {
				Prompts []struct {
					Prompt       string            `json:"prompt"`
					BOSAdded     bool              `json:"bos_added"`
					PromptIDs    []int32           `json:"prompt_ids"`
					PromptPieces []json.RawMessage `json:"prompt_pieces"`
					GeneratedIDs []int32           `json:"generated_ids"`
				} `json:"prompts"`
			}
			if err := json.Unmarshal(b, &g); err != nil {
				t.Fatal(err)
			}
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
				for i, raw := range pr.PromptPieces {
					if i >= len(ids) {
						break
					}
					var want []byte
					var s string
					var vals []int // a piece that is not valid UTF-8 is a list of byte values
					if json.Unmarshal(raw, &s) == nil {
						want = []byte(s)
					} else if err := json.Unmarshal(raw, &vals); err == nil {
						for _, v := range vals {
							want = append(want, byte(v))
						}
					} else {
						t.Fatal(err)
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
