package tokenizer

import (
	"errors"
	"strings"
	"testing"

	"worker-orcd/gguf"
)

func parseBuilt(t *testing.T, set map[string]any) *gguf.File {
	t.Helper()
	b := gguf.NewBuilder()
	b.Set("general.architecture", "qwen2")
	for k, v := range set {
		b.Set(k, v)
	}
	data, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFromGGUFMissingKeys(t *testing.T) {
	_, err := FromGGUF(parseBuilt(t, nil))
	if want := `GGUFError: Metadata key not found: "tokenizer.ggml.tokens"`; err == nil || err.Error() != want || !errors.Is(err, gguf.ErrKeyNotFound) {
		t.Errorf("err = %v, want %s", err, want)
	}
	_, err = FromGGUF(parseBuilt(t, map[string]any{KeyModel: "gpt2", KeyTokens: []string{"a", "b", "ab"}}))
	if want := `GGUFError: Metadata key not found: "tokenizer.ggml.merges"`; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
	_, err = FromGGUF(parseBuilt(t, map[string]any{KeyModel: "gpt2", KeyPre: "mystery", KeyTokens: []string{"a", "b", "ab"}, KeyMerges: []string{"a b"}}))
	if err == nil || !strings.Contains(err.Error(), `"mystery"`) {
		t.Errorf("err = %v, want one naming the pre-tokenizer", err)
	}
}

func TestFromGGUFSmall(t *testing.T) {
	toks := []string{"<s>", "</s>", "▁a", "▁", "a", "b", "▁ab"}
	f := parseBuilt(t, map[string]any{
		KeyModel: "llama", KeyTokens: toks,
		KeyScores:    []float32{0, 0, -1, -2, -3, -4, -0.5},
		KeyTokenType: []int32{3, 3, 1, 1, 1, 1, 1},
		KeyBOS:       uint32(0), KeyEOS: uint32(1), KeyAddBOS: true,
	})
	tok, err := FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := tok.Encode("ab a", EncodeOptions{AddSpecial: true})
	if got := pieces(t, tok, ids); strings.Join(got, " ") != "<s> ▁ab ▁a" {
		t.Errorf("pieces %q", got)
	}
	if !tok.IsEOG(1) || tok.IsEOG(0) {
		t.Error("IsEOG")
	}
}

func TestEOGReal(t *testing.T) {
	q := vocabTokenizer(t, "qwen2")
	for id, want := range map[int32]bool{151645: true, 151643: true, 151644: false, 9707: false} {
		if q.IsEOG(id) != want {
			t.Errorf("qwen2 IsEOG(%d) = %v", id, !want)
		}
	}
	p := vocabTokenizer(t, "phi3")
	for id, want := range map[int32]bool{32000: true, 32007: true, 1: false, 32010: false} {
		if p.IsEOG(id) != want {
			t.Errorf("phi3 IsEOG(%d) = %v", id, !want)
		}
	}
	if q.AddsBOS() || !p.AddsBOS() || q.VocabSize() != 151936 || p.VocabSize() != 32064 {
		t.Error("metadata")
	}
}
