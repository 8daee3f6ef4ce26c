package sample

import (
	"cmp"
	"math"
	"slices"
)

// BanBias is the logit bias that bans a token: a bias at or below it makes
// the token's logit -Inf, so it is never drawn (OpenAI's "-100 bans").
const BanBias = -100

// MaxLogitBias bounds the entries of Params.LogitBias.
const MaxLogitBias = 1024

// adj is what the sampler changes about one token's logit at one step:
// the logit bias, the repetition penalty (the id is among the last
// RepeatLastN ids of the history) and the presence and frequency penalties
// (the id was generated count times so far). Entries are kept sorted by id.
type adj struct {
	id    int32
	bias  float32
	ban   bool
	rep   bool
	count int32
}

// biasEntry is one Params.LogitBias entry, sorted by id in New.
type biasEntry struct {
	id   int32
	bias float32
}

// setAdjustments reads the logit bias and the presence and frequency
// penalties of p (New calls it).
func (s *Sampler) setAdjustments(p Params) {
	for id, b := range p.LogitBias {
		if b != b || b == 0 {
			continue
		}
		s.bias = append(s.bias, biasEntry{id: id, bias: float32(b)})
	}
	slices.SortFunc(s.bias, func(a, b biasEntry) int { return cmp.Compare(a.id, b.id) })
	if p.PresencePenalty == p.PresencePenalty && !math.IsInf(p.PresencePenalty, 0) {
		s.presence = p.PresencePenalty
	}
	if p.FrequencyPenalty == p.FrequencyPenalty && !math.IsInf(p.FrequencyPenalty, 0) {
		s.frequency = p.FrequencyPenalty
	}
}

// Accept records id as generated: the presence and frequency penalties
// count the ids accepted so far (the generated ones, never the prompt, as
// OpenAI counts them). Call it once for every generated token, in order.
// It does nothing when both penalties are off.
func (s *Sampler) Accept(id int32) {
	if s.presence == 0 && s.frequency == 0 {
		return
	}
	if s.counts == nil {
		s.counts = map[int32]int32{}
	}
	if s.counts[id] == 0 {
		s.countIDs = append(s.countIDs, id)
	}
	s.counts[id]++
}

// prepare returns the adjustments of the step whose history is given,
// sorted by id, one entry per id; empty when nothing changes any logit.
// The result lives in the sampler's scratch buffer until the next call.
func (s *Sampler) prepare(history []int32) []adj {
	a := s.adj[:0]
	for _, b := range s.bias {
		a = append(a, adj{id: b.id, bias: b.bias, ban: b.bias <= BanBias})
	}
	if s.penalty != 1 && len(history) > 0 {
		h := history
		if s.lastN > 0 && len(h) > s.lastN {
			h = h[len(h)-s.lastN:]
		}
		for _, id := range h {
			a = append(a, adj{id: id, rep: true})
		}
	}
	if s.presence != 0 || s.frequency != 0 {
		for _, id := range s.countIDs {
			a = append(a, adj{id: id, count: s.counts[id]})
		}
	}
	if len(a) == 0 {
		s.adj = a
		return a
	}
	slices.SortFunc(a, func(x, y adj) int { return cmp.Compare(x.id, y.id) })
	// Merge the entries of one id: at most one bias and one count entry,
	// any number of repetition entries.
	out := a[:1]
	for _, e := range a[1:] {
		last := &out[len(out)-1]
		if e.id != last.id {
			out = append(out, e)
			continue
		}
		last.bias += e.bias
		last.ban = last.ban || e.ban
		last.rep = last.rep || e.rep
		last.count += e.count
	}
	s.adj = a
	return out
}

// adjust returns the logit v of the token of e after the logit bias, the
// repetition penalty and the presence and frequency penalties, in that
// order. NaN counts as -Inf.
func (s *Sampler) adjust(e adj, v float32) float32 {
	if v != v || e.ban {
		return float32(math.Inf(-1))
	}
	v += e.bias
	if e.rep {
		if v > 0 {
			v /= s.penalty
		} else {
			v *= s.penalty
		}
	}
	if e.count > 0 {
		v -= float32(float64(e.count)*s.frequency + s.presence)
	}
	return v
}

// lifts reports whether adjusting the token of e can raise its logit: a
// positive bias, a repetition penalty below 1, or presence and frequency
// penalties that add up to a negative amount. A token outside a backend's
// top candidates that could be lifted needs the whole row.
func (s *Sampler) lifts(e adj) bool {
	if e.ban {
		return false
	}
	return e.bias > 0 || (e.rep && s.penalty < 1) ||
		(e.count > 0 && float64(e.count)*s.frequency+s.presence < 0)
}

// findAdj returns the adjustment of id in a (sorted by id).
func findAdj(a []adj, id int32) (adj, bool) {
	i, ok := slices.BinarySearchFunc(a, id, func(e adj, id int32) int { return cmp.Compare(e.id, id) })
	if !ok {
		return adj{}, false
	}
	return a[i], true
}
