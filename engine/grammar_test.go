package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
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
// allowed are read again for the whole row — alone and under load.
func TestGrammarTopPathMatchesFullRows(t *testing.T) {
	full, top := microEngines(t)
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
	var wg sync.WaitGroup
	for i, p := range params { // together: under load
		wg.Go(func() {
			if got := run(top, at, p); !slices.Equal(got, want[i]) {
				t.Errorf("params %d: top path %v, whole rows %v", i, got, want[i])
			}
		})
	}
	wg.Wait()
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
	if xErr := <-xDone; xErr == nil || !strings.Contains(xErr.Error(), grammar.ErrTooComplex.Error()) {
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
