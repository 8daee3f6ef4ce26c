package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"worker-orcd/internal/fixtures"
	"worker-orcd/internal/testmodel"
	"worker-orcd/sample"
)

// loadFixture loads a fixture model (real tokenizer, llama.cpp golden
// outputs) on the CPU, skipping the test where it is absent.
func loadFixture(t *testing.T, name string, opts Options) *Model {
	t.Helper()
	m, err := Load(fixtures.ModelPath(t, name), LoadOptions{Device: "cpu", Engine: opts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// loadSynthetic loads a synthetic qwen2-micro model (Q8_0, seeded weights,
// the built-in tokenizer of 322 tokens, 4096 positions) on the CPU: the
// scheduler tests need nothing outside the repository.
func loadSynthetic(t *testing.T, opts Options) *Model {
	t.Helper()
	spec := testmodel.MustPreset("qwen2-micro")
	spec.Type, spec.Seed, spec.Context = testmodel.Q8_0, 4, 4096
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := spec.Write(path); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path, LoadOptions{Device: "cpu", Engine: opts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func greedy(ids []int32, n int) Request {
	return Request{Prompt: ids, Params: sample.GreedyParams(), MaxTokens: n, IgnoreEOS: true}
}

// TestGoldenThroughEngine: prompt text → ids equal llama.cpp's, and greedy
// generation equals its ids up to the first near-tie.
func TestGoldenThroughEngine(t *testing.T) {
	for _, name := range []string{"qwen2-tiny-Q4_K_M", "phi3-small-Q4_K_M"} {
		t.Run(name, func(t *testing.T) {
			m := loadFixture(t, name, Options{})
			g := fixtures.ReadGolden(t, name)
			for _, p := range g.Prompts {
				ids, err := m.Tokenizer().Encode(p.Prompt, encodeDefaults)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(ids, p.PromptIDs) {
					t.Errorf("%q: ids %v, reference %v", p.Prompt, ids, p.PromptIDs)
					continue
				}
				res, err := m.Generate(context.Background(), greedy(ids, len(p.GeneratedIDs)), nil)
				if err != nil {
					t.Fatal(err)
				}
				for k, st := range p.Steps {
					if res.IDs[k] != st.ID {
						if st.Gap >= 0.05 {
							t.Errorf("%q step %d: id %d, reference %d (gap %.3f)", p.Prompt, k, res.IDs[k], st.ID, st.Gap)
						}
						break
					}
				}
			}
		})
	}
}

// TestScoreGolden: teacher-forced log-probabilities of the reference's top-5
// within 0.1 nats, through Score.
func TestScoreGolden(t *testing.T) {
	m := loadFixture(t, "qwen2-tiny-Q4_K_M", Options{BatchTokens: 8})
	g := fixtures.ReadGolden(t, "qwen2-tiny-Q4_K_M")
	p := g.Prompts[0]
	ids := append(slices.Clone(p.PromptIDs), p.GeneratedIDs...)
	res, err := m.Score(context.Background(), ids, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Positions) != len(ids)-1 || !(res.Perplexity > 1) {
		t.Fatalf("%d positions, perplexity %v", len(res.Positions), res.Perplexity)
	}
	for k, st := range p.Steps[:len(p.Steps)-1] {
		pos := res.Positions[len(p.PromptIDs)-1+k]
		if pos.ID != st.ID || pos.Top[0].ID != st.Top[0].ID {
			t.Errorf("step %d: scored id %d top %d, reference %d", k, pos.ID, pos.Top[0].ID, st.ID)
		}
		if d := math.Abs(float64(pos.Logprob) - st.Top[0].Logprob); d > 0.1 {
			t.Errorf("step %d: logprob %.4f, reference %.4f", k, pos.Logprob, st.Top[0].Logprob)
		}
	}
}

// TestScoreMatchesGenerate: teacher-forced scoring of a greedy run (in
// prompt chunks of BatchTokens) gives each generated token the
// log-probability generation reported, and ranks it first.
func TestScoreMatchesGenerate(t *testing.T) {
	m := loadSynthetic(t, Options{BatchTokens: 8})
	prompt := []int32{97, 11, 84, 82, 37}
	req := greedy(prompt, 12)
	req.TopLogprobs = 3
	var toks []Token
	res, err := m.Generate(context.Background(), req, func(tk Token) error { toks = append(toks, tk); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 12 {
		t.Fatalf("%d tokens streamed, want 12", len(toks))
	}
	ids := append(slices.Clone(prompt), res.IDs...)
	sc, err := m.Score(context.Background(), ids, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Positions) != len(ids)-1 || !(sc.Perplexity > 1) {
		t.Fatalf("%d positions (want %d), perplexity %v", len(sc.Positions), len(ids)-1, sc.Perplexity)
	}
	for k, tk := range toks {
		pos := sc.Positions[len(prompt)-1+k]
		if pos.I != len(prompt)+k || pos.ID != tk.ID || len(pos.Top) != 3 || pos.Top[0].ID != tk.ID {
			t.Errorf("token %d: scored position %+v, generated %+v", k, pos, tk)
			continue
		}
		if d := math.Abs(float64(pos.Logprob - tk.Logprob)); d > 1e-3 {
			t.Errorf("token %d (id %d): scored logprob %.5f, generated %.5f", k, tk.ID, pos.Logprob, tk.Logprob)
		}
	}
}

// TestConcurrentMatchesAlone: greedy output does not depend on what else
// is in the batch, with prompts chunked across steps.
func TestConcurrentMatchesAlone(t *testing.T) {
	m := loadSynthetic(t, Options{Parallel: 4, BatchTokens: 6})
	prompts := [][]int32{{97, 11, 84, 82, 37}, {78, 67, 31, 96, 37}, {1, 2, 3}, {100, 200, 300, 40, 50, 60, 70, 80, 90}, {42}, {7, 7, 7, 7}}
	alone := make([][]int32, len(prompts))
	for i, p := range prompts {
		res, err := m.Generate(context.Background(), greedy(p, 12), nil)
		if err != nil {
			t.Fatal(err)
		}
		alone[i] = res.IDs
	}
	// Rows mixed up between sequences would go unnoticed if every prompt
	// gave the same continuation.
	distinct := map[string]bool{}
	for _, ids := range alone {
		distinct[fmt.Sprint(ids)] = true
	}
	if len(distinct) < len(prompts)-1 {
		t.Fatalf("only %d distinct continuations of %d prompts: %v", len(distinct), len(prompts), alone)
	}
	var wg sync.WaitGroup
	got := make([][]int32, 3*len(prompts))
	for i := range got {
		wg.Go(func() {
			var streamed []int32
			res, err := m.Generate(context.Background(), greedy(prompts[i%len(prompts)], 12), func(tk Token) error {
				if tk.Index != len(streamed) {
					t.Errorf("token index %d, want %d", tk.Index, len(streamed))
				}
				streamed = append(streamed, tk.ID)
				return nil
			})
			if err != nil {
				t.Error(err)
				return
			}
			if !slices.Equal(streamed, res.IDs) {
				t.Errorf("streamed %v, result %v", streamed, res.IDs)
			}
			got[i] = res.IDs
		})
	}
	wg.Wait()
	for i := range got {
		if !slices.Equal(got[i], alone[i%len(prompts)]) {
			t.Errorf("request %d: %v concurrently, %v alone", i, got[i], alone[i%len(prompts)])
		}
	}
}

func TestSeededSamplingIsReproducible(t *testing.T) {
	m := loadSynthetic(t, Options{})
	seed := uint64(42)
	req := Request{Prompt: []int32{97, 11, 84}, MaxTokens: 10, IgnoreEOS: true,
		Params: sample.Params{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, RepeatPenalty: 1.1, RepeatLastN: 64, Seed: &seed}}
	var first []int32
	for i := range 10 {
		res, err := m.Generate(context.Background(), req, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Seed != seed {
			t.Errorf("seed reported %d, want %d", res.Seed, seed)
		}
		if i == 0 {
			first = res.IDs
		} else if !slices.Equal(res.IDs, first) {
			t.Fatalf("run %d: %v, first run %v", i, res.IDs, first)
		}
	}
	req.Params.Seed = nil
	res, err := m.Generate(context.Background(), req, nil)
	if err != nil || res.Seed == seed {
		t.Errorf("generated seed %d (err %v), want a fresh one, not %d", res.Seed, err, seed)
	}
}

func TestRequestErrors(t *testing.T) {
	m := loadSynthetic(t, Options{CtxLen: 64})
	cases := []struct {
		name string
		req  Request
		want error
	}{
		{"empty prompt", Request{Params: sample.GreedyParams(), MaxTokens: 4}, ErrInvalidRequest},
		{"too long", Request{Prompt: make([]int32, 60), Params: sample.GreedyParams(), MaxTokens: 10}, ErrContextLength},
		{"negative max", Request{Prompt: []int32{1}, Params: sample.GreedyParams(), MaxTokens: -1}, ErrInvalidRequest},
		{"bad id", Request{Prompt: []int32{-5}, Params: sample.GreedyParams(), MaxTokens: 1}, ErrInvalidRequest},
		{"bad temperature", Request{Prompt: []int32{1}, Params: sample.Params{Temperature: 3}, MaxTokens: 1}, ErrInvalidRequest},
		{"bad logprobs", Request{Prompt: []int32{1}, Params: sample.GreedyParams(), MaxTokens: 1, TopLogprobs: 99}, ErrInvalidRequest},
		{"empty stop", Request{Prompt: []int32{1}, Params: sample.GreedyParams(), MaxTokens: 1, Stop: []string{""}}, ErrInvalidRequest},
	}
	for _, c := range cases {
		_, err := m.Generate(context.Background(), c.req, nil)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	var cl *ContextLengthError
	_, err := m.Generate(context.Background(), cases[1].req, nil)
	if !errors.As(err, &cl) || cl.Length != 70 || cl.Max != 64 {
		t.Errorf("context error %v", err)
	}
}

func TestCancel(t *testing.T) {
	m := loadSynthetic(t, Options{CtxLen: 4096})
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	var cancelled time.Time
	res, err := m.Generate(ctx, greedy([]int32{1, 2, 3}, 4000), func(Token) error {
		n++
		if n == 3 {
			cancelled = time.Now()
			cancel()
		}
		return nil
	})
	if !errors.Is(err, ErrCancelled) || res.StopReason != StopCancelled {
		t.Fatalf("err %v, reason %v", err, res.StopReason)
	}
	// Tokens produced before the cancel was seen may still arrive; what
	// matters is that the request ends promptly and long before its 4000.
	if took := time.Since(cancelled); len(res.IDs) >= 4000 || took > 2*time.Second {
		t.Errorf("cancel took %v and %d tokens", took, len(res.IDs))
	}
	if st := m.Stats(); st.Active != 0 {
		t.Errorf("slot still active after cancel: %+v", st)
	}
	// The callback's own error also stops the request.
	boom := errors.New("client went away")
	_, err = m.Generate(context.Background(), greedy([]int32{1}, 100), func(Token) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("callback error: got %v", err)
	}
}

func TestStopStringAndLength(t *testing.T) {
	m := loadSynthetic(t, Options{})
	prompt := []int32{97, 11, 84, 82, 37}
	res, err := m.Generate(context.Background(), greedy(prompt, 16), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StopReason != StopLength || len(res.IDs) != 16 {
		t.Fatalf("reason %s, %d ids", res.StopReason, len(res.IDs))
	}
	full := res.Text
	// Stop on a piece of the text the run produced: output ends before it.
	r := []rune(full)
	if len(r) < 4 {
		t.Fatalf("generated text %q is too short to cut a stop string from (the synthetic model's seed changed?)", full)
	}
	stopAt := string(r[len(r)/2 : len(r)/2+2])
	t.Logf("generated %q; stop string %q", full, stopAt)
	req := greedy(prompt, 16)
	req.Stop = []string{stopAt}
	res2, err := m.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res2.StopReason != StopString || res2.StopString != stopAt {
		t.Fatalf("reason %s (%q)", res2.StopReason, res2.StopString)
	}
	want := full[:len(string(r[:len(r)/2]))]
	if idx := indexOf(full, stopAt); idx >= 0 {
		want = full[:idx]
	}
	if res2.Text != want {
		t.Errorf("text %q, want %q", res2.Text, want)
	}
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
