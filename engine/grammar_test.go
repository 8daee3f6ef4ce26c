package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/grammar"
	"worker-orcd/internal/testmodel"
	"worker-orcd/sample"
	"worker-orcd/tokenizer"
)

func microEngines(t *testing.T) (full, top *Engine) {
	t.Helper()
	spec := testmodel.MustPreset("qwen2-micro")
	spec.Seed = 9
	m, tok := openSpec(t, spec)
	full, err := New(cpu.New(m, 1), tok, Options{Parallel: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { full.Close() })
	top, err = New(topBackend{cpu.New(m, 1)}, tok, Options{Parallel: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { top.Close() })
	return full, top
}

// TestGrammarOutputsValid: on a random-weight model at temperature 1 (only
// the constraint can make the output valid), every output of a schema, of
// json_object and of GBNF grammars is a sentence of the language, and
// generation ends at the grammar's end, not at max_tokens.
func TestGrammarOutputsValid(t *testing.T) {
	full, _ := microEngines(t)
	cases := []struct{ kind, src string }{
		{GrammarJSONSchema, `{"type":"object","properties":{"name":{"type":"string","maxLength":8},"n":{"type":"integer"},"ok":{"type":"boolean"},"tags":{"type":"array","items":{"enum":["a","b","c"]},"maxItems":3}},"required":["name","n","ok","tags"],"additionalProperties":false}`},
		{GrammarJSONObject, ""},
		{GrammarGBNF, "root ::= expr\nexpr ::= term ((\"+\" | \"-\") term){0,3}\nterm ::= [0-9]{1,3} | \"(\" expr \")\"\n"},
		{GrammarGBNF, "root ::= (\"- \" [a-z]{1,6} \"\\n\"){1,4}\n"},
	}
	for _, c := range cases {
		a, err := full.Grammar(c.kind, c.src)
		if err != nil {
			t.Fatal(err)
		}
		g := a.Grammar()
		ended := 0
		const seeds = 20
		var wg sync.WaitGroup
		var mu sync.Mutex
		for seed := range uint64(seeds) {
			wg.Go(func() {
				p := sample.Params{Temperature: 1, TopP: 1, RepeatPenalty: 1, Seed: &seed}
				res, err := full.Generate(context.Background(), Request{Prompt: []int32{1, 2, 3}, Params: p, MaxTokens: 400, Grammar: a}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if res.StopReason == StopLength {
					t.Logf("%s seed %d: ran to max_tokens: %q", c.kind, seed, res.Text)
					return
				}
				ended++
				if !g.MatchString(res.Text) {
					t.Errorf("%s seed %d (%s): %q is not in the language", c.kind, seed, res.StopReason, res.Text)
				}
				if c.kind != GrammarGBNF && !json.Valid([]byte(res.Text)) {
					t.Errorf("%s seed %d: %q is not JSON", c.kind, seed, res.Text)
				}
			})
		}
		wg.Wait()
		if ended < seeds {
			t.Errorf("%s %.30q: only %d of %d runs ended at the grammar's end", c.kind, c.src, ended, seeds)
		}
	}
}

// TestGrammarTopPathMatchesFullRows: with the backend returning only top
// candidates (the GPU's path), constrained generation gives the same
// tokens as with whole rows — the steps where too few candidates are
// allowed are read again for the whole row — alone and under load; and so
// it does with a backend that selects the candidates under the step's mask
// (the GPU's masked path: every step's top comes from the masked row).
func TestGrammarTopPathMatchesFullRows(t *testing.T) {
	full, top := microEngines(t)
	spec := testmodel.MustPreset("qwen2-micro")
	spec.Seed = 9
	m, tok := openSpec(t, spec)
	var masks atomic.Int64
	masked, err := New(maskedTopBackend{cpu.New(m, 1), &masks}, tok, Options{Parallel: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { masked.Close() })
	schema := `{"type":"object","properties":{"a":{"type":"array","items":{"type":"integer"},"maxItems":4},"s":{"enum":["x","yy"]}},"required":["a","s"]}`
	af, err := full.Grammar(GrammarJSONSchema, schema)
	if err != nil {
		t.Fatal(err)
	}
	at, err := top.Grammar(GrammarJSONSchema, schema)
	if err != nil {
		t.Fatal(err)
	}
	var params []sample.Params
	for i := range uint64(6) {
		seed := i
		params = append(params, sample.Params{Temperature: 1, TopK: 10, TopP: 0.95, RepeatPenalty: 1, Seed: &seed})
	}
	params = append(params, sample.GreedyParams())
	run := func(e *Engine, a *grammar.Automaton, p sample.Params) []int32 {
		res, err := e.Generate(context.Background(), Request{Prompt: []int32{5, 6}, Params: p, MaxTokens: 200, Grammar: a}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res.IDs
	}
	want := make([][]int32, len(params))
	for i, p := range params {
		want[i] = run(full, af, p)
	}
	am, err := masked.Grammar(GrammarJSONSchema, schema)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i, p := range params { // together: under load
		wg.Go(func() {
			if got := run(top, at, p); !slices.Equal(got, want[i]) {
				t.Errorf("params %d: top path %v, whole rows %v", i, got, want[i])
			}
		})
		wg.Go(func() {
			if got := run(masked, am, p); !slices.Equal(got, want[i]) {
				t.Errorf("params %d: masked top path %v, whole rows %v", i, got, want[i])
			}
		})
	}
	wg.Wait()
	if masks.Load() == 0 {
		t.Error("the masked backend was never asked for a mask")
	}
}

func TestGrammarErrors(t *testing.T) {
	full, _ := microEngines(t)
	for _, c := range []struct{ kind, src string }{
		{GrammarGBNF, "root ::= (\"a\""},
		{GrammarJSONSchema, `{"type":"string","not":{}}`},
		{"regex", "a+"},
	} {
		_, err := full.Grammar(c.kind, c.src)
		if err == nil || !isInvalid(err) {
			t.Errorf("%s %q: %v, want an invalid-request error", c.kind, c.src, err)
		}
	}
}

func isInvalid(err error) bool {
	return err != nil && fmt.Sprint(err) != "" && errorsIs(err, ErrInvalidRequest)
}

var errorsIs = func(err, target error) bool { return errors.Is(err, target) }

// BenchmarkApplyMask: the per-step cost of masking a Qwen-sized row
// (151 936 logits) where a JSON string's content is allowed (most ids) and
// where only punctuation is (few).
func BenchmarkApplyMask(b *testing.B) {
	const n = 151936
	logits := make([]float32, n)
	dst := make([]float32, n)
	for _, dense := range []bool{true, false} {
		mask := make(grammar.Mask, (n+63)/64)
		for i := range mask {
			if dense {
				mask[i] = ^uint64(0) &^ (1 << (i % 64))
			} else if i%97 == 0 {
				mask[i] = 1
			}
		}
		b.Run(fmt.Sprint("dense=", dense), func(b *testing.B) {
			for b.Loop() {
				applyMask(dst, logits, mask)
				_ = mask.Count()
			}
		})
	}
}

// countBackend counts the forward passes that held more than one
// sequence and calls hook (when set) before each.
type countBackend struct {
	*cpu.Backend
	shared *atomic.Int32
	hook   *func()
}

func (c countBackend) Forward(batch []*backend.Seq) error {
	if len(batch) > 1 {
		c.shared.Add(1)
	}
	if *c.hook != nil {
		(*c.hook)()
	}
	return c.Backend.Forward(batch)
}

// TestGrammarLimitFailsOnlyItsRequest: two requests share a cached
// grammar; one is driven (by its logit bias) down a path that runs past
// the grammar's bounds while the other is generating. The first fails with
// ErrTooComplex; the other, and one sent afterwards, complete with the
// tokens of a solo run. (Before: the bound's error was stored in the shared
// automaton, and the request in flight failed with it.)
func TestGrammarLimitFailsOnlyItsRequest(t *testing.T) {
	spec := testmodel.MustPreset("qwen2-micro")
	spec.Seed = 9
	m, tok := openSpec(t, spec)
	var shared atomic.Int32
	var hook func()
	e, err := New(countBackend{cpu.New(m, 1), &shared, &hook}, tok, Options{Parallel: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	id := func(s string) int32 {
		ids, err := tok.Encode(s, tokenizer.EncodeOptions{})
		if err != nil || len(ids) != 1 {
			t.Fatalf("%q is not one token: %v %v", s, ids, err)
		}
		return ids[0]
	}
	// "a" then c's: every c doubles the parses (past MaxStacks after a
	// dozen); "b" then 40 to 60 letters and a dot.
	const src = "root ::= \"a\" x | \"b\" [a-z]{40,60} \".\"\nx ::= \"c\" x \"d\" | \"c\" x \"e\" | \"c\" x | \"\"\n"
	seed := uint64(5)
	bReq := func(a *grammar.Automaton) Request {
		return Request{Prompt: []int32{1, 2, 3}, MaxTokens: 100, Grammar: a,
			Params: sample.Params{Temperature: 1, TopP: 1, RepeatPenalty: 1, Seed: &seed, LogitBias: map[int32]float64{id("b"): 6}}}
	}
	xReq := func(a *grammar.Automaton) Request {
		return Request{Prompt: []int32{4, 5}, MaxTokens: 100, Grammar: a,
			Params: sample.Params{Temperature: 0, TopP: 1, RepeatPenalty: 1, LogitBias: map[int32]float64{id("a"): 100, id("c"): 100}}}
	}
	// The solo run, on a grammar compiled for it alone.
	solo, err := e.CompiledGrammar("solo", func() (*grammar.Grammar, error) { return grammar.CompileGBNF(src) })
	if err != nil {
		t.Fatal(err)
	}
	want, err := e.Generate(context.Background(), bReq(solo), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want.StopReason != StopGrammar || len(want.IDs) < 30 || want.Text[0] != 'b' {
		t.Fatalf("solo run: %s %q: want a long b path that ends at the grammar's end", want.StopReason, want.Text)
	}

	a, err := e.Grammar(GrammarGBNF, src)
	if err != nil {
		t.Fatal(err)
	}
	xDone := make(chan error, 1)
	forwards := 0
	hook = func() { // on the engine's goroutine: the other request arrives at B's third step
		if forwards++; forwards == 3 {
			sx, err := e.submit(xReq(a))
			if err != nil {
				xDone <- err
				return
			}
			go func() {
				_, err := e.wait(context.Background(), sx, nil)
				xDone <- err
			}()
		}
	}
	got, err := e.Generate(context.Background(), bReq(a), nil)
	if err != nil {
		t.Fatalf("the request in flight failed: %v", err)
	}
	if xErr := <-xDone; !errors.Is(xErr, grammar.ErrTooComplex) || !errors.Is(xErr, ErrInvalidRequest) {
		t.Fatalf("the a-path request: %v, want ErrTooComplex", xErr)
	}
	if shared.Load() == 0 {
		t.Fatal("the two requests never ran in the same step")
	}
	if !slices.Equal(got.IDs, want.IDs) {
		t.Errorf("in flight: %q, solo %q", got.Text, want.Text)
	}
	if a2, err := e.Grammar(GrammarGBNF, src); err != nil || a2 != a {
		t.Errorf("the cached grammar was not kept (%v)", err)
	}
	later, err := e.Generate(context.Background(), bReq(a), nil)
	if err != nil || !slices.Equal(later.IDs, want.IDs) {
		t.Errorf("later: %v %q, solo %q", err, later.Text, want.Text)
	}
}

// rowsBackend keeps a copy of each step's logits row (one sequence).
type rowsBackend struct {
	*cpu.Backend
	rows *[][]float32
}

func (r rowsBackend) Forward(batch []*backend.Seq) error {
	if err := r.Backend.Forward(batch); err != nil {
		return err
	}
	*r.rows = append(*r.rows, slices.Clone(batch[0].Logits))
	return nil
}

// renormalised is the model's distribution over the ids of mask: softmax
// of the allowed logits, in float64 (0 elsewhere).
func renormalised(row []float32, mask grammar.Mask) []float64 {
	m := math.Inf(-1)
	for id, l := range row {
		if mask.Has(int32(id)) {
			m = max(m, float64(l))
		}
	}
	p := make([]float64, len(row))
	sum := 0.0
	for id, l := range row {
		if mask.Has(int32(id)) {
			p[id] = math.Exp(float64(l) - m)
			sum += p[id]
		}
	}
	for id := range p {
		p[id] /= sum
	}
	return p
}

// TestGrammarSamplingExact: with max_tokens far from the grammar's end,
// nothing but the grammar restricts the tokens (the mask under the budget
// is the grammar's mask at every step), and each token is drawn from the
// model's distribution renormalised over the allowed ids: a sampler of
// the same seed, given each step's row with every other id at -Inf, draws
// the same tokens; and over 10 000 seeds the first token's frequencies
// match the renormalised probabilities computed by hand (chi-square).
func TestGrammarSamplingExact(t *testing.T) {
	spec := testmodel.MustPreset("qwen2-micro")
	spec.Seed = 9
	m, tok := openSpec(t, spec)
	var rows [][]float32
	e, err := New(rowsBackend{cpu.New(m, 1), &rows}, tok, Options{Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()

	a, err := e.Grammar(GrammarJSONSchema, `{"type":"object","properties":{"s":{"type":"string","maxLength":12},"n":{"type":"integer"}},"required":["s","n"],"additionalProperties":false}`)
	if err != nil {
		t.Fatal(err)
	}
	const maxTokens = 400
	for seed := range uint64(4) {
		p := sample.Params{Temperature: 1, TopP: 1, RepeatPenalty: 1, Seed: &seed}
		rows = rows[:0]
		res, err := e.Generate(ctx, Request{Prompt: []int32{7, 8, 9}, Params: p, MaxTokens: maxTokens, Grammar: a}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StopReason != StopGrammar || len(rows) != len(res.IDs) {
			t.Fatalf("seed %d: %s after %d tokens (%d rows)", seed, res.StopReason, len(res.IDs), len(rows))
		}
		replica := sample.New(p)
		gm := a.NewMatcher()
		masked := make([]float32, len(rows[0]))
		for i, id := range res.IDs {
			mask := gm.Mask()
			if within := gm.MaskWithin(maxTokens - i); !slices.Equal(within, mask) {
				t.Fatalf("seed %d step %d: the budget (%d tokens left) restricts the mask", seed, i, maxTokens-i)
			}
			for j, l := range rows[i] {
				masked[j] = float32(math.Inf(-1))
				if mask.Has(int32(j)) {
					masked[j] = l
				}
			}
			if want := replica.Sample(masked, nil); want != id {
				t.Fatalf("seed %d step %d: the engine drew %d, the renormalised row gives %d", seed, i, id, want)
			}
			replica.Accept(id)
			if pr := renormalised(rows[i], mask)[id]; !(pr > 0) {
				t.Fatalf("seed %d step %d: token %d has renormalised probability %g", seed, i, id, pr)
			}
			if err := gm.Accept(id); err != nil {
				t.Fatal(err)
			}
		}
	}

	// One step, many seeds: the frequencies of the first token.
	b, err := e.Grammar(GrammarGBNF, `root ::= [a-e]`)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10000
	counts := map[int32]int{}
	var row []float32
	for seed := range uint64(n) {
		rows = rows[:0]
		p := sample.Params{Temperature: 1, TopP: 1, RepeatPenalty: 1, Seed: &seed}
		res, err := e.Generate(ctx, Request{Prompt: []int32{7, 8, 9}, Params: p, MaxTokens: maxTokens, Grammar: b, NoPrefixCache: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if row == nil {
			row = slices.Clone(rows[0])
		} else if !slices.Equal(row, rows[0]) {
			t.Fatal("the first row changed between requests")
		}
		counts[res.IDs[0]]++
	}
	want := renormalised(row, b.NewMatcher().Mask())
	chi2, cells := 0.0, 0
	for id, pr := range want {
		if pr == 0 {
			if counts[int32(id)] != 0 {
				t.Fatalf("token %d drawn %d times but not allowed", id, counts[int32(id)])
			}
			continue
		}
		exp := pr * n
		d := float64(counts[int32(id)]) - exp
		chi2 += d * d / exp
		cells++
		piece, _ := tok.Piece(int32(id))
		t.Logf("token %q: p %.4f, expected %.1f, drawn %d", piece, pr, exp, counts[int32(id)])
	}
	// 5 cells, 4 degrees of freedom: P(chi2 > 18.47) = 0.001.
	if cells != 5 || chi2 > 18.47 {
		t.Errorf("%d allowed tokens, chi-square %.2f: the draws do not follow the renormalised distribution", cells, chi2)
	}
}

// TestGrammarBudgetEndsCompleteText: near max_tokens a complete text whose
// every continuation is too long ends there (root ::= "a" | "abc" with two
// tokens and "b" pushed up by its bias: "a" and the end, not "ab" cut off).
func TestGrammarBudgetEndsCompleteText(t *testing.T) {
	full, _ := microEngines(t)
	id := func(s string) int32 {
		ids, err := full.tok.Encode(s, tokenizer.EncodeOptions{})
		if err != nil || len(ids) != 1 {
			t.Fatalf("%q is not one token: %v %v", s, ids, err)
		}
		return ids[0]
	}
	a, err := full.CompiledGrammar("a-or-abc", func() (*grammar.Grammar, error) { return grammar.CompileGBNF(`root ::= "a" | "abc"`) })
	if err != nil {
		t.Fatal(err)
	}
	res, err := full.Generate(context.Background(), Request{Prompt: []int32{1, 2}, MaxTokens: 2, Grammar: a,
		Params: sample.Params{Temperature: 0, TopP: 1, RepeatPenalty: 1, LogitBias: map[int32]float64{id("a"): 100, id("b"): 100}}}, nil)
	if err != nil || res.Text != "a" || res.StopReason == StopLength {
		t.Errorf("max_tokens 2: %q (stop %v, err %v), want the complete \"a\" ended by the grammar", res.Text, res.StopReason, err)
	}
}
