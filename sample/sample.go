// Package sample turns the logits of one decoding step into the next token id,
// and computes log-probabilities for reporting.
//
// A Sampler belongs to one sequence: it owns that sequence's random generator
// (PCG from math/rand/v2, seeded from Params.Seed or from a generated seed
// that Sampler.Seed reports) and reusable buffers, so that Sample does not
// allocate once it has seen the vocabulary size. There is no global generator.
// A Sampler is not safe for concurrent use.
//
// Sample applies these steps, in this order (llama.cpp's sampler chain; the
// first three are OpenAI's logit_bias, then llama.cpp's repeat penalty, then
// OpenAI's presence and frequency penalties, and change only the ids they
// name):
//
//  1. Adjustments, per token id, on a copy (the caller's logits are not
//     modified): (a) logit bias: LogitBias[id] is added to the logit, and a
//     bias of BanBias (-100) or less makes it -Inf (banned); (b) repetition
//     penalty: every distinct id among the last RepeatLastN ids of the
//     history has its logit divided by RepeatPenalty if positive and
//     multiplied by it otherwise; (c) presence and frequency penalties: an
//     id generated c > 0 times so far (counted by Accept) has
//     c*FrequencyPenalty + PresencePenalty subtracted.
//  2. Temperature 0: return the arg max of the adjusted logits (the lowest
//     id on ties). No random number is drawn.
//  3. Otherwise one uniform number u in [0, 1) is drawn: exactly one per
//     call, whatever the filters do, so the generator advances in step with
//     the sequence.
//  4. Top-k: keep the TopK largest logits (lower id first on ties), ordered
//     by decreasing logit then increasing id. A TopK of at most MaxTop keeps
//     this order even when the vocabulary has no more than TopK tokens.
//  5. Top-p: softmax at temperature 1 over the survivors; keep the most
//     likely tokens, in order of decreasing logit then increasing id, until
//     their probability reaches TopP (the token that crosses is kept).
//  6. Min-p: keep the survivors whose probability is at least MinP times the
//     largest one, i.e. logit >= max + ln(MinP).
//  7. Temperature: divide the surviving logits by Temperature.
//  8. Softmax over the survivors (float64 weights; a weight below e^-64 of
//     the largest is taken as 0) and draw: the first survivor, in the order
//     the filters left them, at which the cumulative weight exceeds u times
//     the total.
//
// The most likely token always survives steps 4–6. NaN logits are treated as
// -Inf; if the largest logit is +Inf or no logit is finite, the arg max is
// returned. Weights use a portable exponential, so that the same logits, seed
// and parameters give the same token on every platform.
//
// Top-k uses a bounded heap for small k and a histogram of logit values for
// large k; top-p without top-k buckets the probability mass by logit and
// sorts only the bucket in which the cut falls; nothing sorts the whole
// vocabulary.
//
// Log-probabilities (TopLogprobs, Logprob, Logprobs) are those of the raw
// logits — the model's distribution, before bias, penalties, filters and
// temperature.
package sample

import (
	crand "crypto/rand"
	"encoding/binary"
	"math"
	"math/rand/v2"
)

// Candidate is a token id with its log-probability.
type Candidate struct {
	ID      int32
	Logprob float32
}

// pcgStream is xored into the seed to form the second PCG seed word.
const pcgStream = 0x9e3779b97f4a7c15

// heapMaxK is the largest top-k selected with a heap; larger k use the
// histogram selection.
const heapMaxK = 1024

// Sampler draws token ids for one sequence. Create it with New.
type Sampler struct {
	p       Params
	seed    uint64
	rng     rand.PCG
	greedy  bool
	invT    float64 // 1 / Temperature
	topK    int     // 0 = off
	topP    float64 // 0 = off
	lnMinP  float64 // ln(MinP); -Inf = off
	penalty float32 // 1 = off
	lastN   int     // -1 = whole history

	bias                []biasEntry     // logit bias, sorted by id
	presence, frequency float64         // 0 = off
	counts              map[int32]int32 // generated ids (Accept) -> times
	countIDs            []int32         // the keys of counts, in first-seen order
	adj                 []adj           // the step's adjustments (prepare)

	pen  []float32   // [n_vocab] logits with the adjustments applied
	set  []Candidate // surviving candidates; Logprob holds the logit
	bnd  []Candidate // the histogram bucket in which a cut falls
	w    []float64   // softmax weights for the draw
	bcnt [nBuckets]int32
	bsum [nBuckets]float64
}

// New returns a Sampler for p. New does not validate: call p.Validate on
// parameters that come from a request. Out-of-range values are read as
// follows: Temperature <= 0, NaN or so small that 1/T overflows is greedy;
// TopK <= 0 is off, and so is a TopK above MaxTop that is not smaller than
// the vocabulary (a smaller one that is keeps every token, in top-k order); TopP outside (0, 1) is off; MinP <= 0
// is off, above 1 acts as 1; a RepeatPenalty that is not > 0 or that float32
// cannot hold (0 or +Inf after conversion), or RepeatLastN 0, turns the
// penalty off; RepeatLastN below -1 acts as -1.
func New(p Params) *Sampler {
	s := &Sampler{penalty: 1, lnMinP: math.Inf(-1)}
	if p.Seed != nil {
		s.seed = *p.Seed
	} else {
		s.seed = randomSeed()
	}
	s.rng.Seed(s.seed, s.seed^pcgStream)
	seed := s.seed
	p.Seed = &seed
	s.p = p

	s.invT = 1 / p.Temperature
	s.greedy = !(p.Temperature > 0) || math.IsInf(s.invT, 1)
	s.topK = max(p.TopK, 0)
	if p.TopP > 0 && p.TopP < 1 {
		s.topP = p.TopP
	}
	if p.MinP > 0 {
		s.lnMinP = math.Log(min(p.MinP, 1))
	}
	if rp := float32(p.RepeatPenalty); rp > 0 && rp != 1 && !math.IsInf(float64(rp), 1) && p.RepeatLastN != 0 {
		s.penalty = rp
		s.lastN = max(p.RepeatLastN, -1)
	}
	s.setAdjustments(p)
	return s
}

// randomSeed returns 64 bits from the operating system's generator.
func randomSeed() uint64 {
	var b [8]byte
	_, _ = crand.Read(b[:]) // never fails (crypto/rand panics instead)
	return binary.LittleEndian.Uint64(b[:])
}

// Seed returns the seed of the sampler's generator: Params.Seed, or the one
// New generated.
func (s *Sampler) Seed() uint64 { return s.seed }

// Params returns the parameters the sampler was made with, with Seed set to
// the seed in use.
func (s *Sampler) Params() Params {
	p := s.p
	seed := s.seed
	p.Seed = &seed
	return p
}

// Greedy reports whether the sampler decodes greedily (temperature 0).
func (s *Sampler) Greedy() bool { return s.greedy }

// Sample returns the next token id for the logits of one step ([n_vocab]).
// history holds the ids of the sequence so far (prompt and generated), oldest
// first; only the repetition penalty reads it, and ids outside the
// vocabulary are ignored; the presence and frequency penalties count the ids
// given to Accept. logits is not modified. The steps and their order
// are in the package documentation. Sample panics if logits is empty.
func (s *Sampler) Sample(logits []float32, history []int32) int32 {
	if len(logits) == 0 {
		panic("sample: Sample called with no logits")
	}
	src := s.penalize(logits, history)
	if s.greedy {
		return Argmax(src)
	}
	u := float64(s.rng.Uint64()>>11) * 0x1p-53

	set, all, m, ok := s.filter(src)
	if !ok {
		return Argmax(src)
	}
	n := len(src)
	if all {
		s.w = grow(s.w, n)
		w := s.w[:n]
		return int32(pick(w, u*expSum(w, src, m, s.invT)))
	}
	s.w = grow(s.w, len(set))
	w := s.w[:len(set)]
	return set[pick(w, u*expSumSet(w, set, m, s.invT))].ID
}

// filter applies top-k, top-p and min-p to src. It returns the survivors as
// set, or all=true when every entry of src survives, and the largest logit m.
// ok is false when m is infinite or NaN (the caller then takes the arg max).
func (s *Sampler) filter(src []float32) (set []Candidate, all bool, m float64, ok bool) {
	n := len(src)
	all = true // the survivors are all of src; set is unused
	sorted := false
	// A top-k of at most MaxTop stays on when the vocabulary is no larger
	// (it keeps every token, in top-k order), so that SampleTop, which gets
	// only min(k, vocabulary) candidates, draws in the same order.
	if s.topK > 0 && (s.topK < n || s.topK <= MaxTop) {
		all = false
		if k := min(s.topK, n); k <= heapMaxK {
			set = topKHeap(src, k, s.buf(k))
			sortDesc(set)
			sorted = true
			m = float64(set[0].Logprob)
		} else {
			set, m = s.materialize(src)
			set = s.selectCount(set, m, s.topK)
		}
	} else {
		m = float64(maxOf(src))
	}
	if math.IsInf(m, 0) || m != m {
		return nil, false, m, false
	}

	if s.topP > 0 {
		if sorted {
			set = topPSorted(set, m, s.topP)
		} else {
			if all {
				set = s.selectMassAll(src, m, s.topP)
				all = false
			} else {
				set = s.selectMass(set, m, s.topP)
			}
		}
	}

	if s.lnMinP > math.Inf(-1) {
		if all {
			set = minPAll(src, m, s.lnMinP, s.buf(n))
			all = false
		} else {
			set = minPFilter(set, m, s.lnMinP)
		}
	}

	return set, all, m, true
}

// pick returns the first index at which the running sum of w exceeds
// target, or the last index with a positive weight if rounding leaves the
// target unreached.
func pick(w []float64, target float64) int {
	cum := 0.0
	last := 0
	for i, x := range w {
		if x > 0 {
			cum += x
			last = i
			if cum > target {
				return i
			}
		}
	}
	return last
}

// weight returns exp((v-m)*invT), 0 for NaN and for exponents below
// weightCutoff (the same values as expSum).
func weight(v float32, m, invT float64) float64 {
	d := (float64(v) - m) * invT
	if !(d > weightCutoff) {
		return 0
	}
	return exp(d)
}

// penalize returns logits with the step's adjustments (logit bias,
// repetition, presence and frequency penalties) applied, in a copy; logits
// itself when there is none.
func (s *Sampler) penalize(logits []float32, history []int32) []float32 {
	a := s.prepare(history)
	if len(a) == 0 {
		return logits
	}
	n := len(logits)
	s.pen = grow(s.pen, n)
	pen := s.pen[:n]
	copy(pen, logits)
	for _, e := range a {
		if uint(e.id) < uint(n) {
			pen[e.id] = s.adjust(e, logits[e.id])
		}
	}
	return pen
}

// buf returns s.set emptied, with capacity for at least n candidates.
func (s *Sampler) buf(n int) []Candidate {
	if cap(s.set) < n {
		s.set = make([]Candidate, 0, n)
	}
	return s.set[:0]
}

// materialize copies src into s.set as candidates (NaN as -Inf) and returns
// it with the largest value.
func (s *Sampler) materialize(src []float32) ([]Candidate, float64) {
	set := s.buf(len(src))[:len(src)]
	m := float32(math.Inf(-1))
	for i, v := range src {
		if v != v {
			v = float32(math.Inf(-1))
		}
		set[i] = Candidate{ID: int32(i), Logprob: v}
		m = max(m, v)
	}
	return set, float64(m)
}

// grow returns b with capacity for at least n elements (contents dropped
// when it has to grow).
func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b
}

// Argmax returns the index of the largest logit, the lowest index on ties.
// NaN entries are skipped; if every entry is NaN it returns 0.
func Argmax(logits []float32) int32 {
	m := maxOf(logits)
	for i, v := range logits {
		if v == m {
			return int32(i)
		}
	}
	return 0
}

// maxOf returns the largest non-NaN value of src, -Inf if there is none. Four
// running maxima keep the compare-and-select chains independent.
func maxOf(src []float32) float32 {
	inf := float32(math.Inf(-1))
	m0, m1, m2, m3 := inf, inf, inf, inf
	i := 0
	for ; i+4 <= len(src); i += 4 {
		s := src[i : i+4 : i+4]
		if s[0] > m0 {
			m0 = s[0]
		}
		if s[1] > m1 {
			m1 = s[1]
		}
		if s[2] > m2 {
			m2 = s[2]
		}
		if s[3] > m3 {
			m3 = s[3]
		}
	}
	for ; i < len(src); i++ {
		if src[i] > m0 {
			m0 = src[i]
		}
	}
	return max(m0, m1, m2, m3)
}
