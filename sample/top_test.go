package sample

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestSampleTopEqualsSample: drawing from a backend's top-k candidates gives
// the same ids as drawing from the whole row, for the same seed, across
// parameters and kinds of logits (ties included).
func TestSampleTopEqualsSample(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	rows := map[string][]float32{}
	for _, kind := range []string{"smooth", "flat", "ties", "spiky"} {
		row := make([]float32, 5000)
		for i := range row {
			switch kind {
			case "smooth":
				row[i] = float32(r.NormFloat64() * 3)
			case "flat":
				row[i] = float32(r.NormFloat64() * 0.01)
			case "ties":
				row[i] = float32(r.IntN(6))
			case "spiky":
				row[i] = float32(r.NormFloat64())
				if r.IntN(500) == 0 {
					row[i] += 15
				}
			}
		}
		rows[kind] = row
	}
	params := []Params{
		GreedyParams(),
		{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, RepeatPenalty: 1},
		{Temperature: 1, TopK: 1, TopP: 1, RepeatPenalty: 1},
		{Temperature: 1.5, TopK: 256, TopP: 0.5, RepeatPenalty: 1},
		{Temperature: 0.3, TopK: 7, TopP: 1, MinP: 0.5, RepeatPenalty: 1},
	}
	for kind, row := range rows {
		for pi, p := range params {
			seed := uint64(pi*100 + len(kind))
			p.Seed = &seed
			full, top := New(p), New(p)
			need := top.TopNeeded(nil)
			if need == 0 {
				t.Fatalf("params %d: TopNeeded 0", pi)
			}
			cands := TopOf(row, need)
			for draw := range 300 {
				a, b := full.Sample(row, nil), top.SampleTop(cands, nil)
				if a != b {
					t.Fatalf("%s params %d draw %d: Sample %d, SampleTop %d", kind, pi, draw, a, b)
				}
			}
		}
	}
	// No stand-in where the whole row is needed.
	for _, p := range []Params{{Temperature: 1, TopP: 0.9, RepeatPenalty: 1}, {Temperature: 0, RepeatPenalty: 0.9, RepeatLastN: 64, TopP: 1}} {
		if n := New(p).TopNeeded([]int32{1}); n != 0 {
			t.Errorf("%+v: TopNeeded %d, want 0", p, n)
		}
	}
}

// TestSampleTopTinyVocabulary: a backend caps the candidates it returns at
// the vocabulary size, so with a vocabulary smaller than top-k SampleTop
// gets fewer than TopNeeded() candidates — the whole row. It must draw
// exactly what Sample draws from that row, not panic.
func TestSampleTopTinyVocabulary(t *testing.T) {
	seed := uint64(11)
	cases := []struct {
		name  string
		vocab int
		p     Params
	}{
		{"greedy, vocab 1", 1, GreedyParams()},
		{"top-k 40, vocab 1", 1, Params{Temperature: 1, TopK: 40, TopP: 1, RepeatPenalty: 1}},
		{"top-k 40, vocab 2", 2, Params{Temperature: 0.8, TopK: 40, TopP: 1, RepeatPenalty: 1}},
		{"top-k 40, vocab 39, top-p", 39, Params{Temperature: 0.8, TopK: 40, TopP: 0.9, RepeatPenalty: 1}},
		{"top-k 40, vocab 10, min-p", 10, Params{Temperature: 1.2, TopK: 40, TopP: 1, MinP: 0.1, RepeatPenalty: 1}},
		{"top-k 40, vocab 10, top-p and min-p", 10, Params{Temperature: 0.7, TopK: 40, TopP: 0.95, MinP: 0.05, RepeatPenalty: 1}},
		{"top-k MaxTop, vocab 100", 100, Params{Temperature: 1, TopK: MaxTop, TopP: 1, RepeatPenalty: 1}},
		{"top-k 40, vocab 40 (exact)", 40, Params{Temperature: 1, TopK: 40, TopP: 1, RepeatPenalty: 1}},
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			row := make([]float32, c.vocab)
			for i := range row {
				row[i] = float32(r.NormFloat64() * 2)
			}
			if c.vocab > 3 {
				row[3] = row[1] // a tie
			}
			c.p.Seed = &seed
			full, top := New(c.p), New(c.p)
			need := top.TopNeeded(nil)
			cands := TopOf(row, need)
			if want := min(need, c.vocab); len(cands) != want {
				t.Fatalf("TopOf(row of %d, %d) returned %d candidates, want %d", c.vocab, need, len(cands), want)
			}
			for draw := range 200 {
				a, b := full.Sample(row, nil), top.SampleTop(cands, nil)
				if a != b {
					t.Fatalf("draw %d: Sample %d, SampleTop %d (vocab %d, TopNeeded %d)", draw, a, b, c.vocab, need)
				}
			}
		})
	}
}

// TestTopOfFewEntries: TopOf never indexes past what it is given.
func TestTopOfFewEntries(t *testing.T) {
	cases := []struct {
		name   string
		logits []float32
		k      int
		want   []int32
	}{
		{"empty row", nil, 5, nil},
		{"k 0", []float32{1, 2}, 0, nil},
		{"k negative", []float32{1, 2}, -3, nil},
		{"k beyond the row", []float32{1, 3, 2}, 10, []int32{1, 2, 0}},
		{"ties by id", []float32{2, 2, 1}, 2, []int32{0, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := TopOf(c.logits, c.k)
			ids := make([]int32, 0, len(got))
			for _, g := range got {
				ids = append(ids, g.ID)
			}
			if len(ids) != len(c.want) {
				t.Fatalf("TopOf(%v, %d) ids %v, want %v", c.logits, c.k, ids, c.want)
			}
			for i := range ids {
				if ids[i] != c.want[i] {
					t.Fatalf("TopOf(%v, %d) ids %v, want %v", c.logits, c.k, ids, c.want)
				}
			}
		})
	}
}

// TestSampleTopMisuse: candidates that are neither TopNeeded() many nor the
// whole vocabulary are a caller's bug, reported by a panic that says so.
func TestSampleTopMisuse(t *testing.T) {
	seed := uint64(1)
	p := Params{Temperature: 1, TopK: 40, TopP: 1, RepeatPenalty: 1, Seed: &seed}
	cases := []struct {
		name  string
		p     Params
		cands []Candidate
		want  string
	}{
		{"no candidates", p, nil, "SampleTop got 0 candidates"},
		{"ids missing", p, []Candidate{{ID: 5, Logprob: 1}, {ID: 2, Logprob: 0}}, "not the whole vocabulary"},
		{"duplicate ids", p, []Candidate{{ID: 1, Logprob: 1}, {ID: 1, Logprob: 0}}, "not the whole vocabulary"},
		{"sampler needs the row", Params{Temperature: 1, TopP: 0.5, RepeatPenalty: 1, Seed: &seed},
			[]Candidate{{ID: 0, Logprob: 1}}, "TopNeeded() is 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				r := recover()
				msg, _ := r.(string)
				if r == nil || !strings.Contains(msg, c.want) {
					t.Errorf("panic %v, want one containing %q", r, c.want)
				}
			}()
			New(c.p).SampleTop(c.cands, nil)
		})
	}
}

// TestTopNeededWithAdjustments: the candidates asked for grow with the ids
// the step adjusts, and drop to 0 (the whole row) where an adjustment can
// lift an id from outside the candidates or the count passes MaxTop.
func TestTopNeededWithAdjustments(t *testing.T) {
	many := make(map[int32]float64)
	for i := range MaxTop {
		many[int32(i)] = -1
	}
	cases := []struct {
		name     string
		p        Params
		accepted []int32
		history  []int32
		want     int
	}{
		{"greedy, nothing", GreedyParams(), nil, []int32{1, 2}, 1},
		{"greedy, ban", Params{TopP: 1, RepeatPenalty: 1, LogitBias: map[int32]float64{5: -100}}, nil, nil, 2},
		{"top-k, negative biases", Params{Temperature: 1, TopK: 10, TopP: 1, RepeatPenalty: 1, LogitBias: map[int32]float64{5: -3, 9: -0.5}}, nil, nil, 12},
		{"positive bias needs the row", Params{Temperature: 1, TopK: 10, TopP: 1, RepeatPenalty: 1, LogitBias: map[int32]float64{5: 3}}, nil, nil, 0},
		{"repetition > 1: distinct window ids", Params{TopP: 1, RepeatPenalty: 1.3, RepeatLastN: 3}, nil, []int32{7, 1, 2, 2}, 1 + 2},
		{"repetition < 1 needs the row", Params{TopP: 1, RepeatPenalty: 0.8, RepeatLastN: 3}, nil, []int32{1}, 0},
		{"presence and frequency: generated ids", Params{TopP: 1, RepeatPenalty: 1, PresencePenalty: 0.5, FrequencyPenalty: 0.2}, []int32{4, 4, 8}, nil, 1 + 2},
		{"negative presence needs the row", Params{TopP: 1, RepeatPenalty: 1, PresencePenalty: -0.5}, []int32{4}, nil, 0},
		{"negative frequency outweighed by presence", Params{TopP: 1, RepeatPenalty: 1, PresencePenalty: 1, FrequencyPenalty: -0.1}, []int32{4, 4}, nil, 2},
		{"one id in every list counts once", Params{TopP: 1, RepeatPenalty: 1.1, RepeatLastN: 8, PresencePenalty: 1, LogitBias: map[int32]float64{4: -2}}, []int32{4}, []int32{4, 4}, 2},
		{"over MaxTop needs the row", Params{TopP: 1, RepeatPenalty: 1, LogitBias: many}, nil, nil, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := New(c.p)
			for _, id := range c.accepted {
				s.Accept(id)
			}
			if got := s.TopNeeded(c.history); got != c.want {
				t.Errorf("TopNeeded = %d, want %d", got, c.want)
			}
		})
	}
}

// TestSampleTopWithAdjustmentsEqualsSample: with a logit bias and the
// penalties, drawing from TopNeeded candidates gives what the whole row
// gives, step after step (the adjusted set grows as tokens are accepted;
// steps where it needs the whole row use Sample on both).
func TestSampleTopWithAdjustmentsEqualsSample(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const vocab = 3000
	params := []Params{
		{TopP: 1, RepeatPenalty: 1.3, RepeatLastN: 16, PresencePenalty: 0.7, FrequencyPenalty: 0.4,
			LogitBias: map[int32]float64{3: -100, 17: -5}},
		{Temperature: 0.9, TopK: 40, TopP: 0.9, MinP: 0.02, RepeatPenalty: 1.1, RepeatLastN: 64, PresencePenalty: 1.5,
			LogitBias: map[int32]float64{0: -100, 1: -100}},
		{Temperature: 1.3, TopK: 5, TopP: 1, RepeatPenalty: 1, FrequencyPenalty: 2},
		{Temperature: 1, TopK: 20, TopP: 1, RepeatPenalty: 1, LogitBias: map[int32]float64{42: 100}}, // lifts: whole rows
	}
	for pi, p := range params {
		seed := uint64(pi + 1)
		p.Seed = &seed
		full, top := New(p), New(p)
		history := []int32{5, 6, 7, 5}
		topSteps := 0
		for step := range 200 {
			row := make([]float32, vocab)
			for i := range row {
				row[i] = float32(r.NormFloat64() * 2)
			}
			// Favour a few ids so that they repeat and get penalized.
			for _, id := range []int32{3, 17, 100, 101, 102} {
				row[id] += 4
			}
			a := full.Sample(row, history)
			var b int32
			if need := top.TopNeeded(history); need > 0 {
				topSteps++
				b = top.SampleTop(TopOf(row, need), history)
			} else {
				b = top.Sample(row, history)
			}
			if a != b {
				t.Fatalf("params %d step %d: Sample %d, SampleTop %d", pi, step, a, b)
			}
			if p.LogitBias[a] <= BanBias {
				t.Fatalf("params %d step %d: drew banned id %d", pi, step, a)
			}
			full.Accept(a)
			top.Accept(b)
			history = append(history, a)
		}
		if pi < 3 && topSteps == 0 {
			t.Errorf("params %d: never used the candidates", pi)
		}
		if pi == 3 && topSteps != 0 {
			t.Errorf("params %d: a positive bias used the candidates %d times", pi, topSteps)
		}
	}
}

// TestSampleTopAllowedEqualsMaskedSample: with a grammar's mask, drawing
// from the top candidates (when enough are allowed) gives what Sample
// draws from the whole row with the other ids at -Inf; when too few are
// allowed it says so without advancing the generator.
func TestSampleTopAllowedEqualsMaskedSample(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	row := make([]float32, 3000)
	for i := range row {
		row[i] = float32(r.NormFloat64() * 2)
		if r.IntN(300) == 0 {
			row[i] += 8
		}
	}
	params := []Params{
		GreedyParams(),
		{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, RepeatPenalty: 1},
		{Temperature: 1, TopK: 5, TopP: 1, RepeatPenalty: 1.3, RepeatLastN: 64, LogitBias: map[int32]float64{7: -3, 9: -100}},
		{Temperature: 1.2, TopK: 100, TopP: 0.7, RepeatPenalty: 1, PresencePenalty: 0.5},
	}
	history := []int32{1, 2, 3, 7, 9}
	for _, density := range []int{1, 2, 10, 1000} { // every id, half, a tenth, a few allowed
		allowed := func(id int32) bool { return int(id)%density == 0 }
		masked := make([]float32, len(row))
		for i, v := range row {
			masked[i] = v
			if !allowed(int32(i)) {
				masked[i] = float32(math.Inf(-1))
			}
		}
		for pi, p := range params {
			seed := uint64(pi + 40*density)
			p.Seed = &seed
			full, top := New(p), New(p)
			cands := TopOf(row, top.TopNeeded(history))
			fallbacks := 0
			for draw := range 200 {
				want := full.Sample(masked, history)
				got, ok := top.SampleTopAllowed(cands, history, allowed)
				if !ok {
					fallbacks++
					got = top.Sample(masked, history)
				}
				if got != want {
					t.Fatalf("density %d params %d draw %d: got %d (top path %v), want %d", density, pi, draw, got, ok, want)
				}
			}
			if density == 1 && fallbacks > 0 {
				t.Errorf("params %d: %d fallbacks with every id allowed", pi, fallbacks)
			}
			if density == 1000 && fallbacks == 0 && pi > 0 {
				t.Errorf("params %d: no fallback with almost nothing allowed", pi)
			}
		}
	}
}
