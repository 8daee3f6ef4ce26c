package sample

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrInvalidParams is wrapped by every error that Params.Validate returns, so
// callers can map it to a request error with errors.Is.
var ErrInvalidParams = errors.New("invalid sampling parameters")

// Params are the sampling parameters of one sequence. The zero value is not
// valid (TopP and RepeatPenalty must be positive); start from DefaultParams or
// GreedyParams and change what the request sets.
type Params struct {
	// Temperature divides the logits before the softmax, in [0, 2].
	// 0 selects greedy decoding: the arg max (lowest id on ties) of the
	// logits after the repetition penalty; the other filters are then moot.
	Temperature float64
	// TopK keeps the K most likely tokens (ties broken towards the lower id).
	// 0 turns it off.
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// (softmax at temperature 1 over the tokens TopK kept) sums to at least
	// TopP, in (0, 1]. 1 turns it off.
	TopP float64
	// MinP keeps the tokens whose probability is at least MinP times that of
	// the most likely token, in [0, 1]. 0 turns it off.
	MinP float64
	// RepeatPenalty is applied to the logit of every distinct token among the
	// last RepeatLastN ids of the history: a positive logit is divided by it,
	// a negative one multiplied (the llama.cpp convention). Must be > 0;
	// 1 turns it off; values above 1 discourage repetition.
	RepeatPenalty float64
	// RepeatLastN is how many of the most recent history ids the repetition
	// penalty looks at: 0 turns the penalty off, -1 means the whole history.
	RepeatLastN int
	// PresencePenalty is subtracted from the logit of every id generated
	// at least once so far (OpenAI's presence_penalty), in [-2, 2]; 0 = off.
	// Negative values encourage repetition.
	PresencePenalty float64
	// FrequencyPenalty times the number of times an id was generated so
	// far is subtracted from its logit (OpenAI's frequency_penalty), in
	// [-2, 2]; 0 = off. Only generated ids count (Sampler.Accept), never
	// the prompt.
	FrequencyPenalty float64
	// LogitBias is added to the logits of the ids it names before anything
	// else (OpenAI's logit_bias), each in [-100, 100]; a bias of -100 bans
	// the id (its logit becomes -Inf). At most MaxLogitBias entries; ids
	// outside the vocabulary are the caller's to refuse (the engine does).
	LogitBias map[int32]float64
	// Seed seeds the sequence's random generator. nil asks New to generate
	// one; Sampler.Seed reports it so that the run can be repeated.
	Seed *uint64
}

// DefaultParams returns llama.cpp's defaults: temperature 0.8, top-k 40,
// top-p 0.95, min-p 0.05, no repetition penalty (1.0, last 64), random seed.
func DefaultParams() Params {
	return Params{
		Temperature:   0.8,
		TopK:          40,
		TopP:          0.95,
		MinP:          0.05,
		RepeatPenalty: 1,
		RepeatLastN:   64,
	}
}

// GreedyParams returns parameters for greedy decoding (temperature 0) with
// every filter and the repetition penalty off.
func GreedyParams() Params {
	return Params{TopP: 1, RepeatPenalty: 1, RepeatLastN: 64}
}

// MaxTemperature is the largest temperature Validate accepts.
const MaxTemperature = 2

// Validate reports the first parameter out of range, saying what was expected
// and what was found. The error wraps ErrInvalidParams.
func (p Params) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidParams}, args...)...)
	}
	switch {
	case !(p.Temperature >= 0 && p.Temperature <= MaxTemperature):
		return bad("temperature must be between 0 and %d (0 = greedy), got %v", MaxTemperature, p.Temperature)
	case p.TopK < 0:
		return bad("top_k must be >= 0 (0 = off), got %d", p.TopK)
	case !(p.TopP > 0 && p.TopP <= 1):
		return bad("top_p must be in (0, 1] (1 = off), got %v", p.TopP)
	case !(p.MinP >= 0 && p.MinP <= 1):
		return bad("min_p must be in [0, 1] (0 = off), got %v", p.MinP)
	case !(p.RepeatPenalty > 0) || math.IsInf(p.RepeatPenalty, 1):
		return bad("repeat_penalty must be a finite number > 0 (1 = off), got %v", p.RepeatPenalty)
	case p.RepeatLastN < -1:
		return bad("repeat_last_n must be >= -1 (0 = off, -1 = whole history), got %d", p.RepeatLastN)
	case !(p.PresencePenalty >= -2 && p.PresencePenalty <= 2):
		return bad("presence_penalty must be between -2 and 2 (0 = off), got %v", p.PresencePenalty)
	case !(p.FrequencyPenalty >= -2 && p.FrequencyPenalty <= 2):
		return bad("frequency_penalty must be between -2 and 2 (0 = off), got %v", p.FrequencyPenalty)
	case len(p.LogitBias) > MaxLogitBias:
		return bad("logit_bias has %d entries, want at most %d", len(p.LogitBias), MaxLogitBias)
	}
	ids := make([]int32, 0, len(p.LogitBias))
	for id := range p.LogitBias {
		ids = append(ids, id)
	}
	slices.Sort(ids) // the same error for the same request
	for _, id := range ids {
		b := p.LogitBias[id]
		if !(b >= -100 && b <= 100) {
			return bad("logit_bias of token %d must be between -100 and 100 (-100 bans it), got %v", id, b)
		}
		if id < 0 {
			return bad("logit_bias names token id %d: ids are >= 0", id)
		}
	}
	return nil
}
