package grammar

import (
	mbits "math/bits"
	"os"
	"slices"
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
// mask: the first time a state is seen (and among those, the states that
// allow most tokens: inside strings) and from the cache.
func TestQwenMaskCost(t *testing.T) {
	v := qwenVocab(t)
	bench, err := os.ReadFile("testdata/bench-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, schema string }{
		{"nested", schemaCases[len(schemaCases)-1].schema},
		{"bench", string(bench)},
	} {
		t.Run(c.name, func(t *testing.T) { qwenMaskCost(t, v, c.schema) })
	}
}

func qwenMaskCost(t *testing.T, v *Vocab, schema string) {
	g, err := CompileSchema([]byte(schema))
	if err != nil {
		t.Fatal(err)
	}
	a := NewAutomaton(g, v)
	var cold, warm, dense time.Duration
	var nCold, nWarm, nDense int
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
			switch {
			case cached:
				warm += d
				nWarm++
			case mask.Count() >= v.Size()/2:
				dense += d
				nDense++
				fallthrough
			default:
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
	if nDense > 0 {
		t.Logf("mask, state first seen allowing half the tokens or more: %d × %.0f µs", nDense, float64(dense.Microseconds())/float64(nDense))
	}
	if nWarm > 0 {
		t.Logf("mask, cached: %d × %.2f µs", nWarm, float64(warm.Nanoseconds())/float64(nWarm)/1e3)
	}
}

// TestQwenMaskMatchesBruteForce: with the real Qwen2 vocabulary, along
// random paths through the bench's schema and some of the tests', every
// new state's mask — from the plain-text sets inside strings, from a byte
// class's sets in the email format and patterns — and its
// masks under budgets around the state's distance equal checking each of
// the 151 936 tokens on its own.
func TestQwenMaskMatchesBruteForce(t *testing.T) {
	v := qwenVocab(t)
	bench, err := os.ReadFile("testdata/bench-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	schemas := map[string]string{
		"bench": string(bench),
		"email": `{"type":"string","format":"email"}`,
		"zip":   `{"type":"string","pattern":"^[0-9]{5}$"}`,
		"uuid":  `{"type":"string","format":"uuid"}`,
		"code":  `{"type":"string","pattern":"^[a-z]{3}_[A-Za-z0-9]{2,12}$"}`,
		// [a-z] split after two letters: the letters' chain stops there
		// (and [a-f0-9] has too few tokens of its own for sets).
		"hex": `{"type":"string","pattern":"^[a-z]{2}[a-f0-9]{1,20}$"}`,
	}
	for _, c := range schemaCases {
		switch c.name {
		case "flat", "enum-const", "anyof-nullable", "formats", "pattern", "nested":
			schemas[c.name] = c.schema
		}
	}
	// States whose byte class's tokens come from the class sets.
	classes := map[string]bool{"email": true, "pattern": true, "code": true}
	for name, src := range schemas {
		t.Run(name, func(t *testing.T) {
			g, err := CompileSchema([]byte(src))
			if err != nil {
				t.Fatal(err)
			}
			a := NewAutomaton(g, v)
			ref := NewAutomaton(g, &Vocab{})
			steps := 0
			for seed := range 2 {
				m := a.NewMatcher()
				text := ""
				rng := uint64(seed + 11)
				for step := 0; step < 40 && !m.Done(); step++ {
					mask := m.Mask()
					a.mu.Lock()
					d := a.dists[m.st]
					a.mu.Unlock()
					after := bruteDists(ref, v, text)
					if want := maskUnder(after, -1); !slices.Equal(mask, want) {
						t.Fatalf("after %q: mask differs: %s", text, maskDiff(mask, want, v.piece))
					}
					for _, limit := range []int32{d - 1, d, d + 3} {
						a.mu.Lock()
						got, code := a.computeMask(m.st, max(limit, 0))
						a.mu.Unlock()
						if want := maskUnder(after, max(limit, 0)); code != 0 || !slices.Equal(got, want) {
							t.Fatalf("after %q, limit %d: code %d, mask differs: %s", text, limit, code, maskDiff(got, want, v.piece))
						}
					}
					steps++
					rng = rng*6364136223846793005 + 1442695040888963407
					id := pickAllowed(mask, rng>>20)
					if id < 0 {
						t.Fatalf("after %q: no token allowed", text)
					}
					if v.piece[id] == nil {
						break
					}
					if err := m.Accept(id); err != nil {
						t.Fatal(err)
					}
					text += string(v.piece[id])
				}
			}
			a.mu.Lock()
			plain, class, leads := a.plainMasks, a.classMasks, a.leadMasks
			a.mu.Unlock()
			t.Logf("%s: %d steps, %d masks from the plain-text sets, %d from byte classes' sets, %d from lead classes'", name, steps, plain, class, leads)
			if classes[name] && class == 0 {
				t.Error("no mask from byte classes' sets")
			}
			if name == "email" && leads == 0 {
				t.Error("no mask from lead classes' sets")
			}
		})
	}
}

// bruteDists follows every token from the state text reaches in ref (an
// automaton with no vocabulary): the distance to a complete text after
// each token, -1 where it leaves the language; an end-of-generation id
// gets 0 when the text is complete.
func bruteDists(ref *Automaton, v *Vocab, text string) []int32 {
	ref.mu.Lock()
	defer ref.mu.Unlock()
	st := ref.start
	for i := 0; i < len(text) && st >= 0; i++ {
		st = ref.step(st, text[i])
	}
	out := make([]int32, v.n)
	for id, p := range v.piece {
		out[id] = -1
		if st < 0 {
			continue
		}
		if p == nil {
			if ref.states[st].accept && slices.Contains(v.eog, int32(id)) {
				out[id] = 0
			}
			continue
		}
		s := st
		for i := 0; i < len(p) && s >= 0; i++ {
			s = ref.step(s, p[i])
		}
		if s >= 0 {
			out[id] = ref.dists[s]
		}
	}
	return out
}

// maskUnder is the mask of the ids whose distance (bruteDists) is at most
// limit (any, limit < 0).
func maskUnder(dists []int32, limit int32) Mask {
	m := make(Mask, (len(dists)+63)/64)
	for id, d := range dists {
		if d >= 0 && (limit < 0 || d <= limit) {
			m.set(int32(id))
		}
	}
	return m
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
