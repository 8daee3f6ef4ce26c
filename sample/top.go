package sample

import (
	"fmt"
	"math"
)

// MaxTop bounds the candidates a backend is asked for (TopNeeded).
const MaxTop = 256

// TopNeeded returns how many of the largest logits SampleTop needs to draw
// exactly what Sample would draw from the whole row: 1 for greedy decoding,
// TopK when top-k is on (and at most MaxTop); 0 when Sample needs the whole
// row (no top-k, or a repetition penalty, which changes logits outside any
// top set).
func (s *Sampler) TopNeeded() int {
	switch {
	case s.penalty != 1:
		return 0
	case s.greedy:
		return 1
	case s.topK > 0 && s.topK <= MaxTop:
		return s.topK
	}
	return 0
}

// SampleTop draws the next token from the row's largest logits instead of
// the whole row: top holds TopNeeded() candidates whose Logprob field is
// the raw logit, ordered by decreasing logit and then increasing id (the
// order Sample's top-k step leaves). A backend caps the candidates at the
// vocabulary size, so top may hold fewer when it is the whole vocabulary
// (every id from 0 to len(top)-1). With the same seed and the same row, it
// returns what Sample returns, and advances the generator the same way.
//
// It panics (a caller's bug) if TopNeeded() is 0, or if top is shorter than
// TopNeeded() and is not the whole vocabulary.
func (s *Sampler) SampleTop(top []Candidate) int32 {
	need := s.TopNeeded()
	if need == 0 {
		panic("sample: SampleTop called on a sampler whose TopNeeded() is 0 (it needs the whole row: call Sample)")
	}
	if len(top) < need {
		checkWholeVocabulary(top, need)
		need = len(top)
	}
	if s.greedy {
		return top[0].ID
	}
	u := float64(s.rng.Uint64()>>11) * 0x1p-53
	set := append(s.buf(need)[:0], top[:need]...)
	for i := range set { // NaN counts as -Inf, as in topKHeap
		if v := set[i].Logprob; v != v {
			set[i].Logprob = float32(math.Inf(-1))
		}
	}
	m := float64(set[0].Logprob)
	if math.IsInf(m, 0) || m != m {
		return top[0].ID
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
