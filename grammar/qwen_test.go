package grammar

import (
	mbits "math/bits"
	"os"
	"testing"
	"time"

	"worker-orcd/internal/fixtures"
	"worker-orcd/tokenizer"
)

func qwenVocab(tb testing.TB) *Vocab {
	tb.Helper()
	tok, err := tokenizer.Load(fixtures.VocabPath(tb, "qwen2"))
	if err != nil {
		tb.Fatal(err)
	}
	return VocabOf(tok) // the vocabulary the engine builds
}

// TestQwenMaskCost walks a schema's grammar over the real Qwen2 vocabulary
// (151 936 tokens), taking random allowed tokens, and reports the cost of a
// mask: the first time a state is seen and from the cache.
func TestQwenMaskCost(t *testing.T) {
	v := qwenVocab(t)
	g, err := CompileSchema([]byte(schemaCases[len(schemaCases)-1].schema))
	if err != nil {
		t.Fatal(err)
	}
	a := NewAutomaton(g, v)
	var cold, warm time.Duration
	var nCold, nWarm int
	for seed := range 5 {
		m := a.NewMatcher()
		rng := uint64(seed + 1)
		for step := 0; step < 60 && !m.Done(); step++ {
			st := m.st
			a.mu.Lock()
			cached := a.states[st].mask != nil
			a.mu.Unlock()
			t0 := time.Now()
			mask := m.Mask()
			d := time.Since(t0)
			if cached {
				warm += d
				nWarm++
			} else {
				cold += d
				nCold++
			}
			var allowed []int32
			for id := range int32(v.Size()) {
				if mask.Has(id) {
					allowed = append(allowed, id)
				}
			}
			if len(allowed) == 0 {
				t.Fatal("no token allowed")
			}
			rng = rng*6364136223846793005 + 1442695040888963407
			id := allowed[(rng>>33)%uint64(len(allowed))]
			if err := m.Accept(id); err != nil {
				if v.piece[id] == nil { // an EOG id: the text is complete
					break
				}
				t.Fatal(err)
			}
		}
	}
	states, frames := a.Size()
	t.Logf("Qwen vocab: %d tokens, %d trie nodes; %d states, %d frames", v.Size(), v.Nodes(), states, frames)
	if nCold > 0 {
		t.Logf("mask, state first seen: %d × %.0f µs", nCold, float64(cold.Microseconds())/float64(nCold))
	}
	if nWarm > 0 {
		t.Logf("mask, cached: %d × %.2f µs", nWarm, float64(warm.Nanoseconds())/float64(nWarm)/1e3)
	}
}

func BenchmarkQwenAllowed(b *testing.B) {
	v := qwenVocab(b)
	g, _ := CompileSchema([]byte(schemaCases[0].schema))
	a := NewAutomaton(g, v)
	m := a.NewMatcher()
	_ = m.Mask()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m.Allowed(int32(i % v.Size()))
	}
}

// pickAllowed returns a pseudo-random id of mask (r chooses which).
func pickAllowed(mask Mask, r uint64) int32 {
	n := mask.Count()
	if n == 0 {
		return -1
	}
	k := int(r % uint64(n))
	for w, bits := range mask {
		c := mbits.OnesCount64(bits)
		if k < c {
			for ; k > 0; k-- {
				bits &= bits - 1
			}
			return int32(w*64 + mbits.TrailingZeros64(bits))
		}
		k -= c
	}
	return -1
}

// BenchmarkQwenFirstRun: what the engine asks of a fresh automaton over a
// 96-token constrained generation (the bench's schema, the Qwen
// vocabulary): per step the mask under the remaining budget (twice, as
// topK and accept do) and Accept, every state new. ns/op is one whole run.
func BenchmarkQwenFirstRun(b *testing.B) {
	v := qwenVocab(b)
	src, err := os.ReadFile("testdata/bench-schema.json")
	if err != nil {
		b.Fatal(err)
	}
	g, err := CompileSchema(src)
	if err != nil {
		b.Fatal(err)
	}
	const n = 96
	steps := 0
	for i := 0; b.Loop(); i++ {
		a := NewAutomaton(g, v)
		m := a.NewMatcher()
		rng := uint64(i%4 + 1)
		for step := 0; step < n && !m.Done(); step++ {
			_ = m.MaskWithin(n - step)
			mask := m.MaskWithin(n - step)
			rng = rng*6364136223846793005 + 1442695040888963407
			id := pickAllowed(mask, rng>>20)
			if id < 0 {
				b.Fatal("no token allowed")
			}
			if v.piece[id] == nil {
				break
			}
			if err := m.Accept(id); err != nil {
				b.Fatal(err)
			}
			steps++
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(steps)/1e3, "µs/step")
}
