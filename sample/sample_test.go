package sample

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func seed(v uint64) *uint64 { return &v }

// randLogits returns n logits drawn from N(0, std²) with a fixed generator.
func randLogits(n int, std float64, s uint64) []float32 {
	r := rand.New(rand.NewPCG(s, 1))
	l := make([]float32, n)
	for i := range l {
		l[i] = float32(r.NormFloat64() * std)
	}
	return l
}

// naiveSurvivors is the reference for steps 4–6: a full sort by (logit desc,
// id asc), then top-k, top-p (math.Exp) and min-p. It returns sorted ids.
func naiveSurvivors(logits []float32, p Params) []int32 {
	c := make([]Candidate, len(logits))
	for i, v := range logits {
		c[i] = Candidate{ID: int32(i), Logprob: v}
	}
	slices.SortStableFunc(c, func(a, b Candidate) int {
		switch {
		case a.Logprob > b.Logprob:
			return -1
		case a.Logprob < b.Logprob:
			return 1
		}
		return 0
	})
	if p.TopK > 0 && p.TopK < len(c) {
		c = c[:p.TopK]
	}
	m := float64(c[0].Logprob)
	if p.TopP > 0 && p.TopP < 1 {
		z := 0.0
		for _, x := range c {
			z += math.Exp(float64(x.Logprob) - m)
		}
		cum := 0.0
		for i, x := range c {
			cum += math.Exp(float64(x.Logprob) - m)
			if cum >= p.TopP*z {
				c = c[:i+1]
				break
			}
		}
	}
	if p.MinP > 0 {
		c = slices.DeleteFunc(c, func(x Candidate) bool {
			return float64(x.Logprob)-m < math.Log(p.MinP)
		})
	}
	ids := make([]int32, len(c))
	for i, x := range c {
		ids[i] = x.ID
	}
	slices.Sort(ids)
	return ids
}

// survivors runs the sampler's filter and returns the sorted surviving ids.
func survivors(s *Sampler, logits []float32) []int32 {
	set, all, _, ok := s.filter(logits)
	if !ok {
		return nil
	}
	var ids []int32
	if all {
		for i := range logits {
			ids = append(ids, int32(i))
		}
		return ids
	}
	for _, c := range set {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestFiltersMatchNaive(t *testing.T) {
	const n = 20000
	smooth := randLogits(n, 2.5, 1)
	flat := randLogits(n, 0.05, 2) // nearly flat, as from random weights
	ties := randLogits(n, 2, 3)    // many equal values
	for i := range ties {
		ties[i] = float32(math.Round(float64(ties[i])*4) / 4)
	}
	spiky := randLogits(n, 1, 4)
	spiky[777] = 30
	spiky[12] = 25
	inputs := map[string][]float32{"smooth": smooth, "flat": flat, "ties": ties, "spiky": spiky}
	params := []Params{
		{TopK: 1},
		{TopK: 40},
		{TopK: 40, TopP: 0.9},
		{TopK: 40, TopP: 0.9, MinP: 0.05},
		{TopK: 1024, TopP: 0.5},
		{TopK: 1025},
		{TopK: 5000},
		{TopK: 5000, TopP: 0.95},
		{TopK: 5000, TopP: 0.95, MinP: 0.1},
		{TopK: n - 1},
		{TopK: n},
		{TopP: 0.95},
		{TopP: 0.5},
		{TopP: 0.01},
		{TopP: 0.999},
		{TopP: 0.9, MinP: 0.2},
		{MinP: 0.05},
		{MinP: 1},
		{},
	}
	for name, logits := range inputs {
		for _, p := range params {
			p.Temperature = 1
			s := New(p)
			got, want := survivors(s, logits), naiveSurvivors(logits, p)
			if !slices.Equal(got, want) {
				t.Errorf("%s %+v: %d survivors, want %d (first got %v, want %v)", name, p,
					len(got), len(want), got[:min(5, len(got))], want[:min(5, len(want))])
			}
		}
	}
}

func TestGreedy(t *testing.T) {
	tests := []struct {
		name   string
		logits []float32
		want   int32
	}{
		{"argmax", []float32{0.1, 3, -1, 2.9}, 1},
		{"ties to lowest id", []float32{1, 5, 2, 5, 5}, 1},
		{"all negative", []float32{-3, -1, -2}, 1},
		{"NaN skipped", []float32{float32(math.NaN()), -1, -2}, 1},
		{"all NaN", []float32{float32(math.NaN()), float32(math.NaN())}, 0},
		{"+Inf", []float32{1, float32(math.Inf(1)), float32(math.Inf(1))}, 1},
		{"all -Inf", []float32{float32(math.Inf(-1)), float32(math.Inf(-1))}, 0},
		{"single", []float32{7}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(GreedyParams())
			if got := s.Sample(tc.logits, nil); got != tc.want {
				t.Errorf("greedy Sample = %d, want %d", got, tc.want)
			}
			if got := Argmax(tc.logits); got != tc.want {
				t.Errorf("Argmax = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestTopK1IsGreedy(t *testing.T) {
	for i := range 20 {
		logits := randLogits(5000, 3, uint64(i))
		if i%2 == 0 { // force a tie for the maximum
			j := Argmax(logits)
			logits[4999] = logits[j]
		}
		want := Argmax(logits)
		for _, temp := range []float64{0.1, 1, 2} {
			s := New(Params{Temperature: temp, TopK: 1, TopP: 1, RepeatPenalty: 1, Seed: seed(uint64(i))})
			for range 5 {
				if got := s.Sample(logits, nil); got != want {
					t.Fatalf("case %d T=%v: top-k 1 sampled %d, want argmax %d", i, temp, got, want)
				}
			}
		}
	}
}

func draws(p Params, logits []float32, n int) []int32 {
	s := New(p)
	out := make([]int32, n)
	for i := range out {
		out[i] = s.Sample(logits, nil)
	}
	return out
}

func TestSeedReproducible(t *testing.T) {
	logits := randLogits(1000, 1, 9)
	for _, base := range []Params{
		{Temperature: 0.8, TopP: 1, RepeatPenalty: 1},
		DefaultParams(),
		{Temperature: 1.5, TopP: 0.9, MinP: 0.01, RepeatPenalty: 1},
	} {
		p := base
		p.Seed = seed(42)
		a, b := draws(p, logits, 1000), draws(p, logits, 1000)
		if !slices.Equal(a, b) {
			t.Errorf("%+v: same seed gave different sequences", base)
		}
		p.Seed = seed(43)
		c := draws(p, logits, 1000)
		if slices.Equal(a, c) {
			t.Errorf("%+v: seeds 42 and 43 gave the same 1000 draws", base)
		}
	}
}

func TestGeneratedSeedReported(t *testing.T) {
	p := DefaultParams()
	s1, s2 := New(p), New(p)
	if s1.Seed() == s2.Seed() {
		t.Errorf("two generated seeds are equal: %d", s1.Seed())
	}
	if got := s1.Params().Seed; got == nil || *got != s1.Seed() {
		t.Errorf("Params().Seed = %v, want %d", got, s1.Seed())
	}
	// Replaying the reported seed gives the same sequence.
	logits := randLogits(500, 1, 3)
	p.Seed = seed(s1.Seed())
	s3 := New(p)
	for i := range 200 {
		if a, b := s1.Sample(logits, nil), s3.Sample(logits, nil); a != b {
			t.Fatalf("draw %d: %d with generated seed, %d replaying it", i, a, b)
		}
	}
}

// TestSeedGolden pins the sequence for one seed, so a change of generator,
// exponential or draw order is noticed (it would change users' outputs).
func TestSeedGolden(t *testing.T) {
	logits := []float32{1, 2, 3, 0.5, -1, 2.5, 2.2, 0}
	got := draws(Params{Temperature: 1, TopP: 1, RepeatPenalty: 1, Seed: seed(1234)}, logits, 16)
	want := goldenDraws
	if !slices.Equal(got, want) {
		t.Errorf("seed 1234 draws = %v, want %v", got, want)
	}
}

var goldenDraws = []int32{1, 2, 5, 6, 1, 2, 2, 0, 6, 5, 2, 0, 2, 5, 2, 5}

func softmax(logits []float32, temp float64) []float64 {
	p := make([]float64, len(logits))
	z := 0.0
	for i, v := range logits {
		p[i] = math.Exp(float64(v) / temp)
		z += p[i]
	}
	for i := range p {
		p[i] /= z
	}
	return p
}

func TestDistribution(t *testing.T) {
	logits := []float32{1, 2, 0.5, 3, -1, 2.5}
	const draws = 60000
	tests := []struct {
		name string
		p    Params
		want []float64
	}{
		{"T=1", Params{Temperature: 1, TopP: 1, RepeatPenalty: 1}, softmax(logits, 1)},
		{"T=0.5", Params{Temperature: 0.5, TopP: 1, RepeatPenalty: 1}, softmax(logits, 0.5)},
		{"T=2", Params{Temperature: 2, TopP: 1, RepeatPenalty: 1}, softmax(logits, 2)},
		// top-k 3 keeps ids 3, 5, 1; temperature 0.7 renormalizes over them.
		{"top-k 3 T=0.7", Params{Temperature: 0.7, TopK: 3, TopP: 1, RepeatPenalty: 1},
			restrict(softmax(logits, 0.7), 1, 3, 5)},
		// At T=1 p = .06 .17 .04 .46 .01 .28: top-p 0.7 keeps 3, 5 (.74).
		{"top-p 0.7", Params{Temperature: 1, TopP: 0.7, RepeatPenalty: 1},
			restrict(softmax(logits, 1), 3, 5)},
		// min-p 0.3: p >= .3*p(3) keeps 3, 5, 1 (e^-1 = .37 >= .3).
		{"min-p 0.3 T=1.3", Params{Temperature: 1.3, MinP: 0.3, TopP: 1, RepeatPenalty: 1},
			restrict(softmax(logits, 1.3), 1, 3, 5)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.Seed = seed(7)
			s := New(tc.p)
			counts := make([]int, len(logits))
			for range draws {
				counts[s.Sample(logits, nil)]++
			}
			chi2, dof := 0.0, -1
			for i, c := range counts {
				if tc.want[i] == 0 {
					if c != 0 {
						t.Errorf("id %d drawn %d times, want never", i, c)
					}
					continue
				}
				e := tc.want[i] * draws
				chi2 += (float64(c) - e) * (float64(c) - e) / e
				dof++
			}
			// 99.99th percentile of chi-square with <= 5 degrees of freedom is 25.7.
			if chi2 > 25.7 {
				t.Errorf("chi-square %.1f with %d dof: counts %v, want proportions %v", chi2, dof, counts, tc.want)
			}
		})
	}
}

// restrict zeroes every probability but those of keep and renormalizes.
func restrict(p []float64, keep ...int) []float64 {
	out := make([]float64, len(p))
	z := 0.0
	for _, i := range keep {
		out[i] = p[i]
		z += p[i]
	}
	for i := range out {
		out[i] /= z
	}
	return out
}

func TestFiltersExclude(t *testing.T) {
	logits := []float32{1, 2, 0.5, 3, -1, 2.5}
	tests := []struct {
		name string
		p    Params
		want []int32
	}{
		{"top-k 2", Params{TopK: 2}, []int32{3, 5}},
		{"top-p 0.4 keeps only the top", Params{TopP: 0.4}, []int32{3}},
		{"top-p 0.7", Params{TopP: 0.7}, []int32{3, 5}},
		{"top-p 0.75 (crossing token kept)", Params{TopP: 0.75}, []int32{1, 3, 5}},
		{"min-p 0.3", Params{MinP: 0.3}, []int32{1, 3, 5}},
		{"min-p 1", Params{MinP: 1}, []int32{3}},
		{"top-k 4 then min-p 0.3", Params{TopK: 4, MinP: 0.3}, []int32{1, 3, 5}},
		{"top-p then min-p", Params{TopP: 0.9, MinP: 0.5}, []int32{3, 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.Temperature = 1
			if got := survivors(New(tc.p), logits); !slices.Equal(got, tc.want) {
				t.Errorf("survivors = %v, want %v", got, tc.want)
			}
			// And nothing else is ever drawn.
			tc.p.Seed = seed(1)
			for _, id := range draws(tc.p, logits, 2000) {
				if !slices.Contains(tc.want, id) {
					t.Fatalf("drew %d, want one of %v", id, tc.want)
				}
			}
		})
	}
}

func TestRepeatPenalty(t *testing.T) {
	logits := []float32{2, -2, 1, 3, 0}
	tests := []struct {
		name    string
		penalty float64
		lastN   int
		history []int32
		want    []float32
	}{
		{"divides positive, multiplies negative, once per id", 2, 64, []int32{0, 1, 0, 0, 4}, []float32{1, -4, 1, 3, 0}},
		{"last n only", 2, 2, []int32{0, 1, 3}, []float32{2, -4, 1, 1.5, 0}},
		{"whole history", 2, -1, []int32{0, 2, 2, 2, 2, 2, 2, 3}, []float32{1, -2, 0.5, 1.5, 0}},
		{"penalty below 1 encourages", 0.5, 64, []int32{1, 2}, []float32{2, -1, 2, 3, 0}},
		{"off at 1", 1, 64, []int32{0, 1}, logits},
		{"off at last n 0", 2, 0, []int32{0, 1}, logits},
		{"ids outside the vocabulary ignored", 2, 64, []int32{-1, 5, 1 << 30, 3}, []float32{2, -2, 1, 1.5, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := slices.Clone(logits)
			s := New(Params{Temperature: 1, TopP: 1, RepeatPenalty: tc.penalty, RepeatLastN: tc.lastN})
			if got := s.penalize(logits, tc.history); !slices.Equal(got, tc.want) {
				t.Errorf("penalized = %v, want %v", got, tc.want)
			}
			if !slices.Equal(logits, orig) {
				t.Errorf("caller's logits modified: %v", logits)
			}
		})
	}
	// Greedy decoding sees the penalized logits.
	s := New(Params{TopP: 1, RepeatPenalty: 1.5, RepeatLastN: 64})
	if got := s.Sample([]float32{3, 2.9, 1}, []int32{0}); got != 1 {
		t.Errorf("greedy with penalty on id 0 chose %d, want 1", got)
	}
}

func TestLogprobs(t *testing.T) {
	tests := []struct {
		name   string
		logits []float32
	}{
		{"small", []float32{1, 2, 3, 0.5}},
		{"large magnitudes", []float32{10000, 9999, 9990, -10000}},
		{"vocab", randLogits(151936, 3, 5)},
		{"with -Inf", []float32{float32(math.Inf(-1)), 0, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			all := TopLogprobs(tc.logits, len(tc.logits)+10, nil)
			if len(all) != len(tc.logits) {
				t.Fatalf("k > vocab gave %d candidates, want %d", len(all), len(tc.logits))
			}
			sum := 0.0
			for i, c := range all {
				sum += math.Exp(float64(c.Logprob))
				if i > 0 && c.Logprob > all[i-1].Logprob {
					t.Fatalf("not sorted at %d: %v after %v", i, c, all[i-1])
				}
			}
			if math.Abs(sum-1) > 1e-5 {
				t.Errorf("probabilities sum to %v, want 1", sum)
			}
			// Against a direct float64 computation.
			m := float64(slices.Max(tc.logits))
			z := 0.0
			for _, v := range tc.logits {
				z += math.Exp(float64(v) - m)
			}
			lse := m + math.Log(z)
			if got := LogSumExp(tc.logits); math.Abs(got-lse) > 1e-9*max(1, math.Abs(lse)) {
				t.Errorf("LogSumExp = %v, want %v", got, lse)
			}
			top := TopLogprobs(tc.logits, 3, make([]Candidate, 0, 3))
			for _, c := range top {
				want := float32(float64(tc.logits[c.ID]) - lse)
				if c.Logprob != want {
					t.Errorf("id %d logprob %v, want %v", c.ID, c.Logprob, want)
				}
				if lp := Logprob(tc.logits, c.ID); lp != want {
					t.Errorf("Logprob(%d) = %v, want %v", c.ID, lp, want)
				}
			}
			if top[0].ID != Argmax(tc.logits) {
				t.Errorf("top id %d, want argmax %d", top[0].ID, Argmax(tc.logits))
			}
			lp, top2 := Logprobs(tc.logits, 1, 3, nil)
			if lp != Logprob(tc.logits, 1) || !slices.Equal(top2, top) {
				t.Errorf("Logprobs = %v %v, want %v %v", lp, top2, Logprob(tc.logits, 1), top)
			}
		})
	}
	// Ties go to the lower id; k <= 0 is empty.
	got := TopLogprobs([]float32{1, 3, 3, 2, 3}, 2, nil)
	if got[0].ID != 1 || got[1].ID != 2 {
		t.Errorf("tied top-2 ids = %d %d, want 1 2", got[0].ID, got[1].ID)
	}
	if got := TopLogprobs([]float32{1, 2}, 0, nil); len(got) != 0 {
		t.Errorf("k=0 gave %v", got)
	}
}

func TestValidate(t *testing.T) {
	ok := DefaultParams()
	tests := []struct {
		name string
		mod  func(*Params)
		want string // "" = valid
	}{
		{"defaults", func(*Params) {}, ""},
		{"greedy", func(p *Params) { *p = GreedyParams() }, ""},
		{"edges", func(p *Params) { p.Temperature, p.TopP, p.MinP, p.RepeatLastN = 2, 1, 1, -1 }, ""},
		{"temperature high", func(p *Params) { p.Temperature = 2.5 }, "temperature must be between 0 and 2 (0 = greedy), got 2.5"},
		{"temperature negative", func(p *Params) { p.Temperature = -0.1 }, "temperature must be between 0 and 2 (0 = greedy), got -0.1"},
		{"temperature NaN", func(p *Params) { p.Temperature = math.NaN() }, "got NaN"},
		{"top_k negative", func(p *Params) { p.TopK = -1 }, "top_k must be >= 0 (0 = off), got -1"},
		{"top_p zero", func(p *Params) { p.TopP = 0 }, "top_p must be in (0, 1] (1 = off), got 0"},
		{"top_p above 1", func(p *Params) { p.TopP = 1.5 }, "top_p must be in (0, 1]"},
		{"min_p negative", func(p *Params) { p.MinP = -0.1 }, "min_p must be in [0, 1] (0 = off), got -0.1"},
		{"repeat_penalty zero", func(p *Params) { p.RepeatPenalty = 0 }, "repeat_penalty must be a finite number > 0 (1 = off), got 0"},
		{"repeat_penalty inf", func(p *Params) { p.RepeatPenalty = math.Inf(1) }, "repeat_penalty must be a finite number > 0"},
		{"repeat_last_n", func(p *Params) { p.RepeatLastN = -2 }, "repeat_last_n must be >= -1 (0 = off, -1 = whole history), got -2"},
		{"zero value", func(p *Params) { *p = Params{} }, "top_p"},
		{"penalties at their edges", func(p *Params) { p.PresencePenalty, p.FrequencyPenalty = -2, 2 }, ""},
		{"presence_penalty", func(p *Params) { p.PresencePenalty = 2.5 }, "presence_penalty must be between -2 and 2 (0 = off), got 2.5"},
		{"frequency_penalty NaN", func(p *Params) { p.FrequencyPenalty = math.NaN() }, "frequency_penalty must be between -2 and 2"},
		{"logit_bias range", func(p *Params) { p.LogitBias = map[int32]float64{9: 1, 4: 101, 2: -101} }, "logit_bias of token 2 must be between -100 and 100"},
		{"logit_bias negative id", func(p *Params) { p.LogitBias = map[int32]float64{-1: 1} }, "logit_bias names token id -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := ok
			tc.mod(&p)
			err := p.Validate()
			if tc.want == "" {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want it to contain %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalidParams) {
				t.Errorf("error %v does not wrap ErrInvalidParams", err)
			}
		})
	}
}

func TestNoAllocs(t *testing.T) {
	logits := randLogits(151936, 3, 11)
	history := []int32{1, 2, 3, 100, 151935}
	for _, p := range benchParams {
		p.p.Seed = seed(1)
		s := New(p.p)
		s.Sample(logits, history) // size the buffers
		if n := testing.AllocsPerRun(3, func() { s.Sample(logits, history) }); n != 0 {
			t.Errorf("%s: %v allocations per Sample, want 0", p.name, n)
		}
	}
	dst := make([]Candidate, 0, 20)
	if n := testing.AllocsPerRun(3, func() { dst = TopLogprobs(logits, 20, dst) }); n != 0 {
		t.Errorf("TopLogprobs: %v allocations, want 0", n)
	}
}

var benchParams = []struct {
	name string
	p    Params
}{
	{"greedy", GreedyParams()},
	{"defaults_k40_p0.95_minp0.05", DefaultParams()},
	{"topk40", Params{Temperature: 0.8, TopK: 40, TopP: 1, RepeatPenalty: 1}},
	{"topk40_topp0.9", Params{Temperature: 0.8, TopK: 40, TopP: 0.9, RepeatPenalty: 1}},
	{"topk5000", Params{Temperature: 0.8, TopK: 5000, TopP: 1, RepeatPenalty: 1}},
	{"topp0.95", Params{Temperature: 0.8, TopP: 0.95, RepeatPenalty: 1}},
	{"minp0.05", Params{Temperature: 0.8, TopP: 1, MinP: 0.05, RepeatPenalty: 1}},
	{"temperature_only", Params{Temperature: 0.8, TopP: 1, RepeatPenalty: 1}},
	{"penalty1.1_topk40", Params{Temperature: 0.8, TopK: 40, TopP: 1, RepeatPenalty: 1.1, RepeatLastN: 64}},
}

func BenchmarkSample(b *testing.B) {
	logits := randLogits(151936, 3, 11)
	history := make([]int32, 64)
	for i := range history {
		history[i] = int32(i * 1000)
	}
	for _, bp := range benchParams {
		b.Run(bp.name, func(b *testing.B) {
			bp.p.Seed = seed(1)
			s := New(bp.p)
			b.SetBytes(int64(4 * len(logits)))
			for b.Loop() {
				s.Sample(logits, history)
			}
		})
	}
}

func BenchmarkTopLogprobs(b *testing.B) {
	logits := randLogits(151936, 3, 11)
	dst := make([]Candidate, 0, 20)
	b.SetBytes(int64(4 * len(logits)))
	for b.Loop() {
		dst = TopLogprobs(logits, 20, dst)
	}
}

func TestNaNLogits(t *testing.T) {
	logits := randLogits(3000, 2, 21)
	nan := float32(math.NaN())
	for i := 0; i < len(logits); i += 3 {
		logits[i] = nan
	}
	logits[0], logits[1] = nan, nan
	for _, bp := range benchParams {
		p := bp.p
		p.Seed = seed(5)
		s := New(p)
		for range 200 {
			if id := s.Sample(logits, []int32{0, 1, 2}); logits[id] != logits[id] {
				t.Fatalf("%s: sampled id %d with a NaN logit", bp.name, id)
			}
		}
	}
}

// TestAdjustments: the logit bias, then the repetition penalty, then the
// presence and frequency penalties (over the accepted ids only), each on
// the ids it names, by hand-computed values.
func TestAdjustments(t *testing.T) {
	logits := []float32{2, -4, 1, 3, 0}
	inf := float32(math.Inf(-1))
	tests := []struct {
		name     string
		p        Params
		accepted []int32
		history  []int32
		want     []float32
	}{
		{"bias added", Params{LogitBias: map[int32]float64{0: 1.5, 3: -2}}, nil, nil, []float32{3.5, -4, 1, 1, 0}},
		{"bias -100 bans", Params{LogitBias: map[int32]float64{3: -100, 4: -99}}, nil, nil, []float32{2, -4, 1, inf, -99}},
		{"bias out of the vocabulary ignored", Params{LogitBias: map[int32]float64{7: 5}}, nil, nil, logits},
		{"presence once per generated id", Params{PresencePenalty: 0.5}, []int32{0, 0, 1}, nil, []float32{1.5, -4.5, 1, 3, 0}},
		{"frequency per occurrence", Params{FrequencyPenalty: 0.25}, []int32{0, 0, 1}, nil, []float32{1.5, -4.25, 1, 3, 0}},
		{"both, negative encourages", Params{PresencePenalty: -1, FrequencyPenalty: 0.5}, []int32{2, 2, 2}, nil, []float32{2, -4, 0.5, 3, 0}},
		{"the prompt does not count", Params{PresencePenalty: 1}, nil, []int32{0, 1, 2}, logits},
		{"bias, then repetition, then presence", Params{LogitBias: map[int32]float64{0: 2}, RepeatPenalty: 2, RepeatLastN: 4, PresencePenalty: 1},
			[]int32{0}, []int32{0}, []float32{(2+2)/2.0 - 1, -4, 1, 3, 0}},
		{"repetition of a bias made negative", Params{LogitBias: map[int32]float64{2: -3}, RepeatPenalty: 2, RepeatLastN: 4}, nil, []int32{2}, []float32{2, -4, -4, 3, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			p.Temperature, p.TopP = 1, 1
			if p.RepeatPenalty == 0 {
				p.RepeatPenalty = 1
			}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			orig := slices.Clone(logits)
			s := New(p)
			for _, id := range tc.accepted {
				s.Accept(id)
			}
			if got := s.penalize(logits, tc.history); !slices.Equal(got, tc.want) {
				t.Errorf("adjusted = %v, want %v", got, tc.want)
			}
			if !slices.Equal(logits, orig) {
				t.Errorf("caller's logits modified: %v", logits)
			}
		})
	}
	// Greedy decoding follows a +100 bias and never draws a banned id.
	s := New(Params{TopP: 1, RepeatPenalty: 1, LogitBias: map[int32]float64{1: 100, 3: -100}})
	if got := s.Sample(logits, nil); got != 1 {
		t.Errorf("greedy with +100 on id 1 chose %d", got)
	}
	hot := New(Params{Temperature: 2, TopP: 1, RepeatPenalty: 1, LogitBias: map[int32]float64{3: -100}, Seed: seed(3)})
	for range 2000 {
		if got := hot.Sample(logits, nil); got == 3 {
			t.Fatal("drew a banned id at temperature 2")
		}
	}
}
