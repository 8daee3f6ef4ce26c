package tokenizer

import (
	"strings"
	"testing"
)

// englishProse is about 64 KiB of English text: varied sentences, so the
// word cache sees a realistic mix rather than one repeated sentence.
var englishProse = func() string {
	paras := []string{
		"It was a bright cold day in April, and the clocks were striking thirteen. Winston Smith, his chin nuzzled into his breast in an effort to escape the vile wind, slipped quickly through the glass doors of Victory Mansions, though not quickly enough to prevent a swirl of gritty dust from entering along with him.",
		"The hallway smelt of boiled cabbage and old rag mats. At one end of it a coloured poster, too large for indoor display, had been tacked to the wall. It depicted simply an enormous face, more than a metre wide: the face of a man of about forty-five, with a heavy black moustache and ruggedly handsome features.",
		"Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse, and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world. It is a way I have of driving off the spleen and regulating the circulation.",
		"In the beginning the Universe was created. This has made a lot of people very angry and been widely regarded as a bad move. Many were increasingly of the opinion that they'd all made a big mistake in coming down from the trees in the first place.",
		"Happy families are all alike; every unhappy family is unhappy in its own way. Everything was in confusion in the Oblonskys' house. The wife had discovered that the husband was carrying on an intrigue with a French girl, who had been a governess in their family, and she had announced to her husband that she could not go on living in the same house with him.",
		"We hold these truths to be self-evident, that all men are created equal, that they are endowed by their Creator with certain unalienable Rights, that among these are Life, Liberty and the pursuit of Happiness. That to secure these rights, Governments are instituted among Men, deriving their just powers from the consent of the governed.",
	}
	var sb strings.Builder
	for i := 0; sb.Len() < 64<<10; i++ {
		sb.WriteString(paras[i%len(paras)])
		if i%3 == 2 {
			sb.WriteString("\n\n")
		} else {
			sb.WriteString(" ")
		}
	}
	return sb.String()
}()

func benchEncode(b *testing.B, tok *Tokenizer, text string) {
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tok.Encode(text, EncodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeProse: the acceptance figure is ≥ 10 MB/s on one core
// (go test -bench EncodeProse -cpu 1).
func BenchmarkEncodeProse(b *testing.B) {
	b.Run("qwen2", func(b *testing.B) { benchEncode(b, vocabTokenizer(b, "qwen2"), englishProse) })
	b.Run("phi3", func(b *testing.B) { benchEncode(b, vocabTokenizer(b, "phi3"), englishProse) })
}

// BenchmarkEncodeProseUncached measures the merges without the word cache.
func BenchmarkEncodeProseUncached(b *testing.B) {
	for _, name := range []string{"qwen2", "phi3"} {
		b.Run(name, func(b *testing.B) {
			tok := vocabTokenizer(b, name)
			saved := tok.bpeCache
			tok.bpeCache = nil
			defer func() { tok.bpeCache = saved }()
			benchEncode(b, tok, englishProse)
		})
	}
}

func BenchmarkDecodeStreaming(b *testing.B) {
	tok := vocabTokenizer(b, "qwen2")
	ids, _ := tok.Encode(englishProse, EncodeOptions{})
	b.SetBytes(int64(len(englishProse)))
	for b.Loop() {
		d := tok.NewStreamingDecoder(DecodeOptions{})
		for _, id := range ids {
			d.Add(id)
		}
		d.Flush()
	}
}
