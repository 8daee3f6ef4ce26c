package server

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"worker-orcd/tokenizer"
)

// TestTokenize: /tokenize and /detokenize in llama-server's shapes, round
// trip, options and errors.
func TestTokenize(t *testing.T) {
	ts := newTestServer(t, opts{})
	tok := ts.m.Tokenizer()
	enc := func(text string, o tokenizer.EncodeOptions) []int32 {
		ids, err := tok.Encode(text, o)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	special := ""
	for s := range tok.SpecialTokens() {
		if special == "" || s < special {
			special = s
		}
	}
	cases := []struct {
		name string
		body string
		want []int32
	}{
		{"plain", `{"content":"Hello world"}`, enc("Hello world", tokenizer.EncodeOptions{ParseSpecial: true})},
		{"add_special", `{"content":"Hello","add_special":true}`, enc("Hello", tokenizer.EncodeOptions{AddSpecial: true, ParseSpecial: true})},
		{"special text parsed by default", `{"content":` + strings.TrimSpace(mustJSON(special+"x")) + `}`, enc(special+"x", tokenizer.EncodeOptions{ParseSpecial: true})},
		{"parse_special false", `{"content":` + strings.TrimSpace(mustJSON(special+"x")) + `,"parse_special":false}`, enc(special+"x", tokenizer.EncodeOptions{})},
		{"empty", `{"content":""}`, []int32{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := post(t, ts.URL+"/tokenize", c.body)
			b := readAll(t, resp)
			var got struct {
				Tokens []int32 `json:"tokens"`
			}
			decodeJSON(t, b, &got)
			if resp.StatusCode != 200 || !slices.Equal(got.Tokens, c.want) || got.Tokens == nil {
				t.Fatalf("%d %s, want %v", resp.StatusCode, b, c.want)
			}
			// And back.
			resp = post(t, ts.URL+"/detokenize", `{"tokens":`+mustJSON(got.Tokens)+`}`)
			b = readAll(t, resp)
			var text struct {
				Content string `json:"content"`
			}
			decodeJSON(t, b, &text)
			want, _ := tok.Decode(c.want, tokenizer.DecodeOptions{})
			if resp.StatusCode != 200 || text.Content != want {
				t.Errorf("detokenize: %d %s, want %q", resp.StatusCode, b, want)
			}
		})
	}
	if special == "" {
		t.Error("the test model has no special tokens")
	}

	// with_pieces: strings, or bytes where a piece is not valid UTF-8.
	resp := post(t, ts.URL+"/tokenize", `{"content":"Hi é","with_pieces":true}`)
	b := readAll(t, resp)
	var wp struct {
		Tokens []struct {
			ID    int32           `json:"id"`
			Piece json.RawMessage `json:"piece"`
		} `json:"tokens"`
	}
	decodeJSON(t, b, &wp)
	ids := enc("Hi é", tokenizer.EncodeOptions{ParseSpecial: true})
	if resp.StatusCode != 200 || len(wp.Tokens) != len(ids) {
		t.Fatalf("with_pieces: %d %s", resp.StatusCode, b)
	}
	var all []byte
	asBytes := 0
	for i, tp := range wp.Tokens {
		var s string
		if json.Unmarshal(tp.Piece, &s) == nil {
			all = append(all, s...)
		} else {
			var arr []int
			decodeJSON(t, tp.Piece, &arr)
			for _, v := range arr {
				all = append(all, byte(v))
			}
			asBytes++
		}
		if tp.ID != ids[i] {
			t.Errorf("token %d: id %d, want %d", i, tp.ID, ids[i])
		}
	}
	if asBytes == 0 {
		t.Errorf("no piece given as bytes (\"é\" split over byte tokens expected): %s", b)
	}
	if string(all) != "Hi é" {
		t.Errorf("pieces join to %q", all)
	}

	errs := []struct {
		path, body, param string
	}{
		{"/tokenize", `{}`, "content"},
		{"/tokenize", `{"content":5}`, "content"},
		{"/tokenize", `{"content":"x","bogus":1}`, "bogus"},
		{"/detokenize", `{}`, "tokens"},
		{"/detokenize", `{"tokens":[-1]}`, "tokens"},
		{"/detokenize", `{"tokens":[99999999]}`, "tokens"},
		{"/detokenize", `{"tokens":"abc"}`, "tokens"},
	}
	for _, c := range errs {
		resp := post(t, ts.URL+c.path, c.body)
		b := readAll(t, resp)
		var ne nativeError
		decodeJSON(t, b, &ne)
		if resp.StatusCode != 400 || ne.Param != c.param || ne.Code != CodeInvalidRequest {
			t.Errorf("%s %s: %d %s, want 400 param %q", c.path, c.body, resp.StatusCode, b, c.param)
		}
	}
	// JSON only, like every POST.
	resp = post(t, ts.URL+"/tokenize", `{"content":"x"}`, "Content-Type", "text/plain")
	if b := readAll(t, resp); resp.StatusCode != 415 {
		t.Errorf("text/plain: %d %s", resp.StatusCode, b)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
