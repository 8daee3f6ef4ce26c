package tokenizer

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"worker-orcd/internal/fixtures"
)

var (
	loadOnce sync.Map // path → *loaded
)

type loaded struct {
	once sync.Once
	tok  *Tokenizer
	err  error
}

// presentVocabs returns the names of the fixture vocabularies that are
// present (none in a user's clone); any error other than absence fails tb.
func presentVocabs(tb testing.TB) []string {
	tb.Helper()
	var names []string
	for _, name := range fixtures.Vocabs {
		_, err := fixtures.Find("vocab", name+".gguf")
		switch {
		case err == nil:
			names = append(names, name)
		case !errors.Is(err, fixtures.ErrAbsent):
			tb.Fatal(err)
		}
	}
	return names
}

// vocabTokenizer loads the fixture vocab/<name>.gguf once per test binary
// (skipping the test where it is absent).
func vocabTokenizer(t testing.TB, name string) *Tokenizer {
	t.Helper()
	p := fixtures.VocabPath(t, name)
	v, _ := loadOnce.LoadOrStore(p, &loaded{})
	l := v.(*loaded)
	l.once.Do(func() { l.tok, l.err = Load(p) })
	if l.err != nil {
		t.Fatalf("Load(%s): %v", p, l.err)
	}
	return l.tok
}

type goldenCase struct {
	Name         string  `json:"name"`
	Text         string  `json:"text"`
	NFC          *string `json:"nfc"`
	IDs          []int32 `json:"ids"`
	ParseSpecial bool    `json:"parse_special"`
	Decoded      string  `json:"decoded"`
}

type goldenFile struct {
	Format    string       `json:"format"`
	Reference string       `json:"reference"`
	Cases     []goldenCase `json:"cases"`
}

func readGolden(t *testing.T, name string) goldenFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden_"+name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var g goldenFile
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestGolden compares Encode with the ids of HF tokenizers (see
// tools/tokgolden/gen.js) on the corpus in testdata/.
func TestGolden(t *testing.T) {
	for _, name := range []string{"qwen2", "phi3"} {
		t.Run(name, func(t *testing.T) {
			tok := vocabTokenizer(t, name)
			g := readGolden(t, name)
			pass := 0
			for _, c := range g.Cases {
				text := c.Text
				if c.NFC != nil {
					text = *c.NFC // the reference normalizes to NFC; we do not (see package doc)
				}
				got, err := tok.Encode(text, EncodeOptions{AddSpecial: true, ParseSpecial: c.ParseSpecial})
				if err != nil {
					t.Errorf("%s: %v", c.Name, err)
					continue
				}
				if !slices.Equal(got, c.IDs) {
					i := 0
					for i < len(got) && i < len(c.IDs) && got[i] == c.IDs[i] {
						i++
					}
					t.Errorf("%s: ids differ at %d (len got %d, want %d)\n got  %v\n want %v", c.Name, i, len(got), len(c.IDs),
						got[i:min(len(got), i+12)], c.IDs[i:min(len(c.IDs), i+12)])
					continue
				}
				pass++
				// decode(encode(s)) == s (SentencePiece: modulo the space prefix, which StripSpacePrefix undoes).
				// SentencePiece cannot tell a "▁" in the text from a space.
				if !c.ParseSpecial && !(tok.Model() == ModelSPM && strings.Contains(text, spmSpace)) {
					back, err := tok.Decode(got, DecodeOptions{SkipSpecial: true, StripSpacePrefix: true})
					if err != nil || back != text {
						t.Errorf("%s: Decode(Encode(s)) = %q, %v", c.Name, trunc(back), err)
					}
				} else if back, _ := tok.Decode(got, DecodeOptions{StripSpacePrefix: true}); back != text && tok.Model() == ModelBPE {
					t.Errorf("%s: Decode(Encode(s, ParseSpecial)) = %q", c.Name, back)
				}
			}
			t.Logf("%s: %d/%d golden cases equal (%s)", name, pass, len(g.Cases), g.Reference)
		})
	}
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// The scan (short chunks) and heap (long chunks) SentencePiece paths agree.
func TestSPMPathsAgree(t *testing.T) {
	tok := vocabTokenizer(t, "phi3")
	g := readGolden(t, "phi3")
	saved := tok.bpeCache
	tok.bpeCache = nil
	defer func() { tok.bpeCache, spmSmallMax = saved, 96 }()
	for _, c := range g.Cases {
		spmSmallMax = 96
		a, _ := tok.Encode(c.Text, EncodeOptions{ParseSpecial: c.ParseSpecial})
		spmSmallMax = 0
		b, _ := tok.Encode(c.Text, EncodeOptions{ParseSpecial: c.ParseSpecial})
		if !slices.Equal(a, b) {
			t.Errorf("%s: scan %v, heap %v", c.Name, a, b)
		}
	}
}
