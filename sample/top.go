package sample

import "math"

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
// the whole row: top holds at least TopNeeded() candidates whose Logprob
// field is the raw logit, ordered by decreasing logit and then increasing id
// (the order Sample's top-k step leaves). With the same seed and the same
// row, it returns what Sample returns, and advances the generator the same
// way. It panics if top is shorter than TopNeeded() or TopNeeded() is 0.
func (s *Sampler) SampleTop(top []Candidate) int32 {
	need := s.TopNeeded()
	if need == 0 || len(top) < need {
		panic("sample: SampleTop needs TopNeeded() candidates (and a sampler that can use them)")
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

// TopOf returns the k largest entries of logits as candidates (Logprob
// holding the raw logit), ordered by decreasing logit then increasing id:
// what a backend hands to SampleTop. For tests and CPU fallbacks.
func TopOf(logits []float32, k int) []Candidate {
	k = min(k, len(logits))
	top := topKHeap(logits, k, make([]Candidate, 0, k))
	sortDesc(top)
	return top
}
