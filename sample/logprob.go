package sample

import "math"

// LogSumExp returns log(sum(exp(logits))), computed stably (relative to the
// largest logit) with float64 accumulation. NaN entries are skipped; it
// returns -Inf if no entry is larger than -Inf and +Inf if one is +Inf.
func LogSumExp(logits []float32) float64 {
	m := float64(maxOf(logits))
	if math.IsInf(m, 0) {
		return m
	}
	return m + math.Log(expSum(nil, logits, m, 1))
}

// Logprob returns the log-probability of id under the softmax of logits
// (the full vocabulary, before any penalty, filter or temperature).
func Logprob(logits []float32, id int32) float32 {
	return float32(float64(logits[id]) - LogSumExp(logits))
}

// TopLogprobs returns the k most likely tokens of the softmax of logits (the
// full vocabulary, raw logits), most likely first, ties to the lower id, with
// their log-probabilities. It reuses dst's storage (and allocates only when
// cap(dst) < k); k <= 0 gives an empty result, k above len(logits) all ids.
func TopLogprobs(logits []float32, k int, dst []Candidate) []Candidate {
	_, top := logprobs(logits, -1, k, dst)
	return top
}

// Logprobs returns both the log-probability of id and, like TopLogprobs,
// the k most likely tokens, computing the normalizer once.
func Logprobs(logits []float32, id int32, k int, dst []Candidate) (float32, []Candidate) {
	return logprobs(logits, id, k, dst)
}

func logprobs(logits []float32, id int32, k int, dst []Candidate) (float32, []Candidate) {
	lse := LogSumExp(logits)
	var lp float32
	if id >= 0 {
		lp = float32(float64(logits[id]) - lse)
	}
	k = min(k, len(logits))
	if k <= 0 {
		return lp, dst[:0]
	}
	top := topKHeap(logits, k, dst)
	sortDesc(top)
	for i := range top {
		top[i].Logprob = float32(float64(top[i].Logprob) - lse)
	}
	return lp, top
}
