package engine

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/backend/cuda"
	"worker-orcd/internal/testmodel"
	"worker-orcd/model"
	"worker-orcd/sample"
	"worker-orcd/tokenizer"
)

// recorder wraps a backend and keeps a copy of every row of logits the
// engine samples from (one sequence at a time: the prompts are shorter than
// a batch, so every step of the sequence is a sampled row). With top set,
// it then acts like the GPU backend: rows that ask for TopK get only their
// top candidates and log-sum-exp (see topBackend).
type recorder struct {
	backend.Backend
	top    bool // act like the GPU backend (a CPU backend inside)
	full   bool // ask for whole rows only (a GPU backend inside)
	mu     sync.Mutex
	rows   [][]float32
	topReq []int // TopK asked at each recorded row
}

func (r *recorder) Forward(batch []*backend.Seq) error {
	if r.full {
		for _, s := range batch {
			s.TopK = 0
		}
	}
	if err := r.Backend.Forward(batch); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range batch {
		if s.AllLogits {
			continue
		}
		if s.HasTop { // the device sent candidates, not the row
			r.rows = append(r.rows, nil)
		} else {
			r.rows = append(r.rows, slices.Clone(s.Logits))
		}
		r.topReq = append(r.topReq, s.TopK)
		if !r.top {
			continue
		}
		s.HasTop = false
		if s.TopK > 0 {
			s.Top, s.LSE, s.HasTop = sample.TopOf(s.Logits, s.TopK), sample.LogSumExp(s.Logits), true
			s.Logits = s.Logits[:0]
		}
	}
	return nil
}

// referenceNext is a plain restatement of OpenAI's penalties and logit
// bias in float64 over one raw row, for greedy decoding: logit + bias
// (-100 bans), then llama.cpp's repetition penalty over the last lastN ids
// of prompt+generated, then minus count*frequency + presence over the
// generated ids; the arg max, lowest id on ties.
func referenceNext(row []float32, p sample.Params, prompt, generated []int32) int32 {
	v := make([]float64, len(row))
	for i, x := range row {
		v[i] = float64(x)
	}
	for id, b := range p.LogitBias {
		if b <= -100 {
			v[id] = math.Inf(-1)
		} else {
			v[id] += b
		}
	}
	if p.RepeatPenalty != 1 && p.RepeatLastN != 0 {
		hist := append(slices.Clone(prompt), generated...)
		if p.RepeatLastN > 0 && len(hist) > p.RepeatLastN {
			hist = hist[len(hist)-p.RepeatLastN:]
		}
		seen := map[int32]bool{}
		for _, id := range hist {
			if seen[id] {
				continue
			}
			seen[id] = true
			if v[id] > 0 {
				v[id] /= p.RepeatPenalty
			} else {
				v[id] *= p.RepeatPenalty
			}
		}
	}
	count := map[int32]int{}
	for _, id := range generated {
		count[id]++
	}
	for id, c := range count {
		v[id] -= float64(c)*p.FrequencyPenalty + p.PresencePenalty
	}
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return int32(best)
}

// testBackend is the backend the penalty tests run on: the CPU's, or a
// GPU's with WORKER_TEST_DEVICE=cuda (skipped without a GPU, failed with
// WORKER_TEST_REQUIRE_GPU=1). gpu says which.
func testBackend(t *testing.T, m *model.Model) (b backend.Backend, gpu bool) {
	t.Helper()
	if !strings.HasPrefix(os.Getenv("WORKER_TEST_DEVICE"), "cuda") {
		return cpu.New(m, 2), false
	}
	cb, err := cuda.New(m, cuda.Options{})
	if err != nil {
		if os.Getenv("WORKER_TEST_REQUIRE_GPU") == "1" {
			t.Fatalf("WORKER_TEST_REQUIRE_GPU=1 but no GPU: %v", err)
		}
		t.Skipf("no GPU: %v", err)
	}
	return cb, true
}

func penaltyModel(t *testing.T) (*model.Model, *tokenizer.Tokenizer) {
	t.Helper()
	spec := testmodel.MustPreset("qwen2-micro")
	spec.Type, spec.Seed = testmodel.Q8_0, 4
	return openSpec(t, spec)
}

// penaltyCases are greedy requests whose penalties and biases change the
// output of the plain greedy run.
func penaltyCases(plain []int32) []sample.Params {
	p := func(mod func(*sample.Params)) sample.Params {
		q := sample.GreedyParams()
		mod(&q)
		return q
	}
	return []sample.Params{
		p(func(q *sample.Params) { q.PresencePenalty = 2 }),
		p(func(q *sample.Params) { q.FrequencyPenalty = 0.7 }),
		p(func(q *sample.Params) { q.PresencePenalty, q.FrequencyPenalty = 0.5, 0.5 }),
		p(func(q *sample.Params) { q.PresencePenalty = -1 }), // lifts: whole rows
		p(func(q *sample.Params) { q.LogitBias = map[int32]float64{plain[0]: -100, plain[1]: -100} }),
		p(func(q *sample.Params) { q.LogitBias = map[int32]float64{plain[0]: -3.5, 7: 1.25} }),
		p(func(q *sample.Params) { q.LogitBias = map[int32]float64{42: 100} }),
		p(func(q *sample.Params) {
			q.RepeatPenalty, q.RepeatLastN, q.PresencePenalty, q.FrequencyPenalty = 1.3, 16, 0.4, 0.3
			q.LogitBias = map[int32]float64{plain[2]: -100}
		}),
	}
}

// TestPenaltiesMatchReference: every generated token of greedy requests
// with presence/frequency penalties, a logit bias and the repetition
// penalty is the arg max of a plain reference over the logits the backend
// produced at that step; on whole rows (the CPU backend) and on top
// candidates (the way the GPU backend samples), which also give the same
// tokens. A +100 bias forces its token; a -100 bias bans it.
func TestPenaltiesMatchReference(t *testing.T) {
	m, tok := penaltyModel(t)
	prompt := []int32{1, 20, 30, 40, 50}
	const n = 24
	// run generates with p: top false asks for whole rows, top true lets
	// the engine ask for top candidates (the GPU backend selects them on
	// the device; on the CPU a wrapper acts like it).
	run := func(top bool, p sample.Params) ([]int32, *recorder) {
		be, gpu := testBackend(t, m)
		rec := &recorder{Backend: be, top: top && !gpu, full: !top && gpu}
		e, err := New(rec, tok, Options{Parallel: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		res, err := e.Generate(context.Background(), Request{Prompt: prompt, Params: p, MaxTokens: n, IgnoreEOS: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res.IDs, rec
	}
	plain, _ := run(false, sample.GreedyParams())
	for ci, p := range penaltyCases(plain) {
		t.Run(fmt.Sprint(ci), func(t *testing.T) {
			var ids [2][]int32
			for bi, top := range []bool{false, true} {
				got, rec := run(top, p)
				ids[bi] = got
				if len(rec.rows) != len(got) {
					t.Fatalf("top=%v: %d rows recorded for %d tokens", top, len(rec.rows), len(got))
				}
				for i, row := range rec.rows {
					if len(row) == 0 {
						continue // a row the device reduced to its candidates: checked by equality below
					}
					if want := referenceNext(row, p, prompt, got[:i]); got[i] != want {
						t.Fatalf("top=%v step %d: generated %d, reference %d (params %+v)", top, i, got[i], want, p)
					}
				}
				if top {
					// Candidates every step, except where an adjustment can
					// lift an id: a positive bias (always), a negative
					// presence penalty (once something was generated).
					want := make([]bool, len(rec.topReq))
					for i := range want {
						want[i] = !slices.ContainsFunc(slices.Collect(mapValues(p.LogitBias)), func(b float64) bool { return b > 0 }) &&
							(p.PresencePenalty >= 0 || i == 0)
					}
					for i, k := range rec.topReq {
						if (k > 0) != want[i] {
							t.Fatalf("step %d asked for %d candidates, want candidates: %v (all steps: %v)", i, k, want[i], rec.topReq)
						}
					}
				}
				for id, b := range p.LogitBias {
					switch {
					case b <= -100 && slices.Contains(got, id):
						t.Errorf("top=%v: banned id %d generated: %v", top, id, got)
					case b >= 100 && slices.ContainsFunc(got, func(x int32) bool { return x != id }):
						t.Errorf("top=%v: +100 on id %d did not force it: %v", top, id, got)
					}
				}
			}
			if !slices.Equal(ids[0], ids[1]) {
				t.Errorf("whole rows %v, top candidates %v", ids[0], ids[1])
			}
			if slices.Equal(ids[0], plain) {
				t.Errorf("params %+v changed nothing: %v", p, plain)
			}
		})
	}
}

func mapValues(m map[int32]float64) func(func(float64) bool) {
	return func(yield func(float64) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// TestPenaltiesUnderLoad: requests with penalties, biases and seeded
// sampling run together give the tokens they give alone, on whole rows and
// on top candidates.
func TestPenaltiesUnderLoad(t *testing.T) {
	m, tok := penaltyModel(t)
	prompt := []int32{1, 20, 30, 40, 50}
	var reqs []Request
	for i, p := range penaltyCases([]int32{3, 4, 5}) {
		seed := uint64(i)
		q := p
		q.Temperature, q.TopK, q.Seed = 0.9, 30, &seed
		reqs = append(reqs,
			Request{Prompt: prompt, Params: p, MaxTokens: 20, IgnoreEOS: true},
			Request{Prompt: append(slices.Clone(prompt), int32(60+i)), Params: q, MaxTokens: 20, IgnoreEOS: true})
	}
	for _, top := range []bool{false, true} {
		be, gpu := testBackend(t, m)
		switch {
		case top && !gpu:
			be = topBackend{be.(*cpu.Backend)}
		case !top && gpu:
			be = &recorder{Backend: be, full: true}
		}
		e, err := New(be, tok, Options{Parallel: 6})
		if err != nil {
			t.Fatal(err)
		}
		solo := make([][]int32, len(reqs))
		for i, r := range reqs {
			res, err := e.Generate(context.Background(), r, nil)
			if err != nil {
				t.Fatal(err)
			}
			solo[i] = res.IDs
		}
		for round := range 2 {
			var wg sync.WaitGroup
			got := make([][]int32, len(reqs))
			for i, r := range reqs {
				wg.Go(func() {
					res, err := e.Generate(context.Background(), r, nil)
					if err != nil {
						t.Error(err)
						return
					}
					got[i] = res.IDs
				})
			}
			wg.Wait()
			for i := range reqs {
				if !slices.Equal(got[i], solo[i]) {
					t.Errorf("top=%v round %d request %d: together %v, alone %v", top, round, i, got[i], solo[i])
				}
			}
		}
		e.Close()
	}
}
