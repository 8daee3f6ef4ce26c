package sample

import (
	"fmt"
	"math"
)

// MaxTop bounds the candidates a backend is asked for (TopNeeded).
const MaxTop = 256

// TopNeeded returns how many of the row's largest logits SampleTop needs,
// at the step whose history is given, to draw exactly what Sample would draw
// from the whole row: 0 when Sample needs the whole row.
//
// Without adjustments it is 1 for greedy decoding and TopK when top-k is on
// (at most MaxTop). The step's adjustments (logit bias, repetition,
// presence and frequency penalties) change a set A of ids. When none of
// them can raise a logit, the first k + |A| candidates are enough: at
// least k of them are unadjusted, and every id outside them ranks below
// those both before and after its adjustment. When one can (a positive
// bias, a penalty below 1, negative presence or frequency penalties), or
// k + |A| exceeds MaxTop, the whole row is needed.
func (s *Sampler) TopNeeded(history []int32) int {
	var k int
	switch {
	case s.greedy:
		k = 1
	case s.topK > 0 && s.topK <= MaxTop:
		k = s.topK
	default:
		return 0
	}
	a := s.prepare(history)
	for _, e := range a {
		if s.lifts(e) {
			return 0
		}
	}
	if k+len(a) > MaxTop {
		return 0
	}
	return k + len(a)
}

// SampleTop draws the next token from the row's largest logits instead of
// the whole row: top holds TopNeeded(history) candidates whose Logprob
// field is the raw logit, ordered by decreasing logit and then increasing
// id (what TopOf returns). A backend caps the candidates at the vocabulary
// size, so top may hold fewer when it is the whole vocabulary (every id
// from 0 to len(top)-1). With the same seed, history and row, it returns
// what Sample returns, and advances the generator the same way.
//
// It panics (a caller's bug) if TopNeeded(history) is 0, or if top is
// shorter than that and is not the whole vocabulary.
func (s *Sampler) SampleTop(top []Candidate, history []int32) int32 {
	need := s.TopNeeded(history)
	if need == 0 {
		panic("sample: SampleTop called on a sampler whose TopNeeded() is 0 (it needs the whole row: call Sample)")
	}
	if len(top) < need {
		checkWholeVocabulary(top, need)
	}
	a := s.prepare(history)
	k := need - len(a) // what top-k (or greedy) keeps
	set := append(s.buf(need)[:0], top[:min(need, len(top))]...)
	for i := range set { // NaN counts as -Inf, as in topKHeap
		if v := set[i].Logprob; v != v {
			set[i].Logprob = float32(math.Inf(-1))
		}
	}
	if len(a) > 0 {
		for i := range set {
			if e, ok := findAdj(a, set[i].ID); ok {
				set[i].Logprob = s.adjust(e, set[i].Logprob)
			}
		}
		sortDesc(set)
		set = set[:min(k, len(set))]
	}
	return s.drawSorted(set)
}

// drawSorted draws from candidates sorted by decreasing (adjusted) logit,
// those top-k kept: greedy takes the first; otherwise top-p, min-p and the
// temperature apply, then one draw from the generator.
func (s *Sampler) drawSorted(set []Candidate) int32 {
	if s.greedy {
		return set[0].ID
	}
	u := float64(s.rng.Uint64()>>11) * 0x1p-53
	m := float64(set[0].Logprob)
	if math.IsInf(m, 0) || m != m {
		return set[0].ID
	}
	if s.topP > 0 {
		set = topPSorted(set, m, s.topP)
	}
	if s.lnMinP > math.Inf(-1) {
		set = minPFilter(set, m, s.lnMinP)
	}
	s.w = grow(s.w, len(set))
	w := s.w[:len(set)]
	return set[pick(w, u*expSumSet(w, set, m, s.invT))].ID
}

// checkWholeVocabulary panics unless top, shorter than need, holds every id
// from 0 to len(top)-1 once: fewer candidates than TopNeeded() are enough
// only when they are the whole row. need is at most MaxTop.
func checkWholeVocabulary(top []Candidate, need int) {
	var seen [MaxTop]bool
	for _, c := range top {
		if c.ID < 0 || int(c.ID) >= len(top) || seen[c.ID] {
			panic(fmt.Sprintf("sample: SampleTop got %d candidates, fewer than TopNeeded() = %d, and they are not the whole vocabulary (id %d out of range or repeated): pass min(TopNeeded(), vocabulary size) candidates",
				len(top), need, c.ID))
		}
		seen[c.ID] = true
	}
	if len(top) == 0 {
		panic(fmt.Sprintf("sample: SampleTop got 0 candidates, want TopNeeded() = %d (or the whole vocabulary)", need))
	}
}

// TopOf returns the k largest entries of logits as candidates (Logprob
// holding the raw logit), ordered by decreasing logit then increasing id:
// what a backend hands to SampleTop. For tests and CPU fallbacks.
func TopOf(logits []float32, k int) []Candidate {
	k = min(k, len(logits))
	if k <= 0 {
		return nil
	}
	top := topKHeap(logits, k, make([]Candidate, 0, k))
	sortDesc(top)
	return top
}

// SampleTopAllowed is SampleTop restricted to the ids allowed says yes to:
// it draws what Sample would draw from the whole row with every other id's
// logit at -Inf (a grammar's mask), from the row's TopNeeded(history)
// largest logits. That is exact when at least k of the candidates are
// allowed and unadjusted (k: what top-k or greedy keeps): every allowed id
// outside the candidates ranks below those, before and after the step's
// adjustments. When fewer are, ok is false, the generator has not advanced,
// and the caller must sample the whole row (with the mask applied) instead.
// top is as for SampleTop and it panics in the same cases.
func (s *Sampler) SampleTopAllowed(top []Candidate, history []int32, allowed func(int32) bool) (id int32, ok bool) {
	need := s.TopNeeded(history)
	if need == 0 {
		panic("sample: SampleTopAllowed called on a sampler whose TopNeeded() is 0 (it needs the whole row: call Sample)")
	}
	whole := len(top) < need
	if whole {
		checkWholeVocabulary(top, need)
	}
	a := s.prepare(history)
	k := need - len(a)
	set := s.buf(need)[:0]
	plain := 0 // allowed candidates no adjustment touches
	for _, c := range top[:min(need, len(top))] {
		if !allowed(c.ID) {
			continue
		}
		if v := c.Logprob; v != v { // NaN counts as -Inf, as in topKHeap
			c.Logprob = float32(math.Inf(-1))
		}
		e, adjusted := findAdj(a, c.ID)
		if adjusted {
			c.Logprob = s.adjust(e, c.Logprob)
		} else {
			plain++
		}
		set = append(set, c)
	}
	if len(set) == 0 || (!whole && plain < k) {
		return 0, false
	}
	if len(a) > 0 {
		sortDesc(set)
	}
	set = set[:min(k, len(set))]
	return s.drawSorted(set), true
}
