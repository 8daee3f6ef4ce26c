package engine

import (
	"time"

	"worker-orcd/grammar"
	"worker-orcd/sample"
	"worker-orcd/stop"
)

// Request is one generation job: the prompt as token ids and how to continue
// it.
type Request struct {
	Prompt      []int32       // token ids, BOS included when the model wants one
	Params      sample.Params // temperature, top-k/p, min-p, penalty, seed
	MaxTokens   int           // tokens to generate at most; 0 = up to the context
	Stop        []string      // stop strings: generation ends before any of them
	Logprobs    bool          // report each token's log-probability (costs a pass over the vocabulary)
	TopLogprobs int           // alternatives reported per token (0 = none); implies Logprobs
	IgnoreEOS   bool          // keep going past end-of-generation tokens
	// NoPrefixCache makes the request read its whole prompt even when the
	// prefix cache holds its start (the result is the same either way),
	// and keeps its prompt's rows out of the cache.
	NoPrefixCache bool
	// Grammar constrains the output to a language (Engine.Grammar compiles
	// one): each step samples from the model's distribution renormalised
	// over the tokens that keep the text a prefix of the language, and
	// generation ends (StopGrammar) when the text is a sentence that
	// nothing may extend. nil: unconstrained.
	Grammar *grammar.Automaton
}

// MaxTopLogprobs bounds Request.TopLogprobs.
const MaxTopLogprobs = 20

// Token is one generated token as the caller sees it.
type Token struct {
	Index   int                // 0 for the first generated token
	ID      int32              // the token id
	Text    string             // text released by this token: complete UTF-8, stop strings withheld; may be ""
	Logprob float32            // log-probability of ID under the model (before sampling filters), when asked for
	Top     []sample.Candidate // the TopLogprobs most likely ids, best first
}

// StopReason says why generation ended.
type StopReason string

// Stop reasons.
const (
	StopEOS       StopReason = "eos"       // the model produced an end-of-generation token
	StopString    StopReason = "stop"      // a stop string appeared
	StopLength    StopReason = "length"    // max_tokens (or the context) reached
	StopCancelled StopReason = "cancelled" // the caller cancelled
	StopError     StopReason = "error"     // the backend failed
	StopEmbedded  StopReason = "embedded"  // an embedding request read all its input (Engine.Embed)
	StopGrammar   StopReason = "grammar"   // the grammar's text is complete and nothing may follow it
)

// Timings of one request.
type Timings struct {
	Queue       time.Duration // waiting for a slot
	Prefill     time.Duration // from admission to the first token
	Decode      time.Duration // from the first token to the last
	PromptTPS   float64       // prompt tokens per second during prefill
	GenerateTPS float64       // generated tokens per second after the first
}

// Result is the outcome of a request.
type Result struct {
	PromptTokens int
	IDs          []int32 // generated ids (the EOS id, when it ended the run, included)
	Text         string  // the text released, concatenated
	StopReason   StopReason
	StopString   string // the stop string that matched, for StopString
	Seed         uint64 // the sampler's seed (generated when the request gave none)
	Timings      Timings
	Embedding    []float32 // Engine.Embed: the pooled, L2-normalised final hidden state
	// CachedTokens are the prompt tokens taken from the prefix cache (rows
	// of earlier prompts, or of a running request's prompt) instead of
	// being computed.
	CachedTokens int
}

func (r *Request) validate(vocab, ctxLen int) (maxTokens int, err error) {
	if len(r.Prompt) == 0 {
		return 0, invalid("the prompt is empty: give at least one token (a model needs something to continue)")
	}
	for i, id := range r.Prompt {
		if id < 0 || int(id) >= vocab {
			return 0, invalid("prompt token %d is id %d, outside the vocabulary [0, %d)", i, id, vocab)
		}
	}
	if err := r.Params.Validate(); err != nil {
		return 0, invalid("%v", err)
	}
	bad := int32(-1)
	for id := range r.Params.LogitBias {
		if int(id) >= vocab && (bad < 0 || id < bad) {
			bad = id // the smallest, so that the message does not vary
		}
	}
	if bad >= 0 {
		return 0, invalid("logit_bias names token id %d, outside the vocabulary [0, %d)", bad, vocab)
	}
	if r.MaxTokens < 0 {
		return 0, invalid("max_tokens is %d, want ≥ 0 (0 means up to the context)", r.MaxTokens)
	}
	if r.MaxTokens > ctxLen || len(r.Prompt) > ctxLen {
		// Checked apart from the sum below, which could overflow.
		return 0, &ContextLengthError{Length: len(r.Prompt) + min(r.MaxTokens, ctxLen+1), Max: ctxLen, PromptTokens: len(r.Prompt), MaxTokens: r.MaxTokens}
	}
	if r.TopLogprobs < 0 || r.TopLogprobs > MaxTopLogprobs {
		return 0, invalid("top_logprobs is %d, want 0 to %d", r.TopLogprobs, MaxTopLogprobs)
	}
	if err := stop.Validate(r.Stop); err != nil {
		return 0, invalid("%v", err)
	}
	maxTokens = r.MaxTokens
	if maxTokens == 0 {
		maxTokens = ctxLen - len(r.Prompt)
	}
	if need := len(r.Prompt) + maxTokens; need > ctxLen || maxTokens <= 0 {
		return 0, &ContextLengthError{Length: len(r.Prompt) + max(maxTokens, 1), Max: ctxLen, PromptTokens: len(r.Prompt), MaxTokens: r.MaxTokens}
	}
	return maxTokens, nil
}
