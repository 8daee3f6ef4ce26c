package cpu

import (
	"slices"
	"testing"

	"worker-orcd/backend"
)

// TestForwardEmbed: the hidden states ForwardEmbed returns are what the LM
// head turns into Forward's logits; they do not depend on how the tokens
// were chunked or what else was in the batch; Forward ignores Embed.
func TestForwardEmbed(t *testing.T) {
	m := openMicro(t)
	b := New(m, 2)
	defer b.Close()
	var _ backend.Embedder = b
	d, V := m.Config.NEmbd, m.Config.VocabSize
	ids := []int32{1, 17, 42, 99, 5, 6, 7}

	embed := func(chunks []int, other bool) []float32 {
		t.Helper()
		kv, err := b.NewKVCache(len(ids))
		if err != nil {
			t.Fatal(err)
		}
		defer kv.Free()
		okv, _ := b.NewKVCache(64)
		defer okv.Free()
		var out []float32
		start := 0
		for _, n := range chunks {
			s := &backend.Seq{Tokens: ids[start : start+n], KV: kv, Prefill: true, Embed: true}
			batch := []*backend.Seq{s}
			if other { // a neighbour that wants logits
				batch = append(batch, &backend.Seq{Tokens: []int32{3, 4}, KV: okv, Prefill: true})
			}
			if err := b.ForwardEmbed(batch); err != nil {
				t.Fatal(err)
			}
			if len(s.Hidden) != n*d || len(s.Logits) != 0 {
				t.Fatalf("hidden %d values, logits %d; want %d and 0", len(s.Hidden), len(s.Logits), n*d)
			}
			if other && len(batch[1].Logits) != V {
				t.Fatalf("the neighbour got %d logits", len(batch[1].Logits))
			}
			out = append(out, s.Hidden...)
			start += n
		}
		return out
	}
	whole := embed([]int{len(ids)}, false)
	for _, c := range []struct {
		chunks []int
		other  bool
	}{{[]int{1, 1, 1, 1, 1, 1, 1}, false}, {[]int{3, 4}, true}, {[]int{7}, true}} {
		if got := embed(c.chunks, c.other); !slices.Equal(got, whole) {
			t.Errorf("chunks %v (neighbour %v): hidden states differ from one chunk", c.chunks, c.other)
		}
	}

	// The LM head over the last hidden state gives Forward's logits.
	kv, _ := b.NewKVCache(len(ids))
	defer kv.Free()
	s := &backend.Seq{Tokens: ids, KV: kv, Prefill: true, Embed: true} // Forward ignores Embed
	if err := b.Forward([]*backend.Seq{s}); err != nil {
		t.Fatal(err)
	}
	want := make([]float32, V)
	b.matmul(&b.w.Output, whole[(len(ids)-1)*d:], want, 1)
	if !slices.Equal(s.Logits, want) {
		t.Error("LM head over the last hidden state differs from Forward's logits")
	}
}
