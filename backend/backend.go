// Package backend defines what the engine needs from a compute backend (the
// CPU one in backend/cpu, the CUDA one in backend/cuda): a KV cache per
// sequence and one batched forward step.
package backend

import (
	"errors"

	"worker-orcd/model"
	"worker-orcd/sample"
)

// ErrOutOfMemory is matched (errors.Is) by every error a backend returns
// because memory it was asked for does not fit in what it may use: a GPU
// allocation that fails, a CPU KV cache beyond its budget. Only the request
// that asked fails; the worker goes on serving. The error's message names
// the bytes asked, the bytes available and what to do.
var ErrOutOfMemory = errors.New("out of memory")

// ErrDevice is matched (errors.Is) by every error a backend returns because
// its device or the device's driver failed a call (a CUDA error): not the
// request's fault, and the device may be unusable until the worker
// restarts. The error's message names the call and the driver's error.
var ErrDevice = errors.New("device error")

// KVCache is one sequence's key/value cache on a backend.
type KVCache interface {
	Len() int             // positions stored
	Cap() int             // positions it can hold without growing
	Bytes() int64         // memory held
	Reserve(n int) error  // make room for n positions in all (may move the data)
	Truncate(n int) error // forget positions from n on
	Free()                // release the memory now (unusable after)
}

// PrefixCopier is a KVCache that can take the first positions of another
// cache of the same backend (prefix sharing between the engine's slots: a
// request whose prompt starts like a running request's reads those rows
// from its cache instead of computing them again).
type PrefixCopier interface {
	// CopyPrefix makes the cache hold src's first n positions and nothing
	// else. The cache must have room for n (Reserve) and src must hold at
	// least n; src is not changed.
	CopyPrefix(src KVCache, n int) error
}

// Pager is a Backend whose KV caches can live in fixed-size blocks of one
// pool shared by every sequence (paged attention): a sequence's cache is a
// block table, position p at offset p % len of block Table()[p / len]. So
// memory is taken a block at a time as sequences grow (no reallocation and
// copy), and sequences whose prompts start alike can read the same blocks.
// The engine decides which sequence holds which block (and which blocks
// stay cached for prefix reuse); the pool holds their memory.
type Pager interface {
	// KVBlockLen is the positions a block holds on this backend (a power of
	// two, at least 16).
	KVBlockLen() int
	// NewBlockPool makes a pool of up to blocks blocks (numbered 0 …
	// blocks−1) of KVBlockLen positions, every layer's keys and values.
	// Memory is taken as blocks are first used (SetTable), not up front.
	NewBlockPool(blocks int) (BlockPool, error)
}

// BlockPool is a Pager's pool of KV blocks. Not safe for concurrent use
// with Forward over its caches (the engine serializes them).
type BlockPool interface {
	Blocks() int   // blocks the pool may hold
	BlockLen() int // positions a block
	// NewCache returns an empty cache (no blocks) reading through a block
	// table of this pool.
	NewCache() PagedCache
	// CopyBlock copies the first n positions of block src into block dst
	// (a partly filled block that two sequences go on writing differently).
	// Both blocks must have been used by a cache (SetTable) before.
	CopyBlock(dst, src int32, n int) error
	// Bytes is the memory the pool holds now: the blocks used so far.
	Bytes() int64
	// Close releases the pool's memory; its caches must not be used after.
	Close() error
}

// PagedCache is a KVCache whose positions are in a BlockPool's blocks. Its
// capacity is len(Table())·BlockLen; Reserve beyond it fails (the engine
// gives blocks with SetTable), and Free only forgets the table (the blocks
// are the engine's to reuse). CopyPrefix is not offered: sequences share
// blocks instead of copying them.
type PagedCache interface {
	KVCache
	// Table is the cache's block ids, in position order (the caller must
	// not change the slice).
	Table() []int32
	// SetTable makes the cache read through table (copied) and hold its
	// first n positions (n ≤ len(table)·BlockLen; the positions a block
	// shared with another cache holds are read, never written again by the
	// engine). A block not used before takes its memory now: an error
	// matching ErrOutOfMemory when the device or host has none (the cache
	// is then unchanged).
	SetTable(table []int32, n int) error
}

// KVSizer is a Backend that says how much memory one position of a KV
// cache takes (every layer's keys and values), so that the engine can
// count its KV memory in blocks of positions without allocating a cache to
// find out.
type KVSizer interface {
	KVBytesPerPosition() int64
}

// KVMemoryAdvisor is a Backend that knows how much memory its KV caches may
// take when the operator sets no budget: on a GPU what the device has free
// after the weights and the workspace a step of batchTokens rows needs,
// less a margin; on the CPU the host memory share the CPU backend's budget
// gives them. bytes 0 means no limit is known. source says where the
// figure comes from (for /health and the logs); err reports a setting that
// cannot be used (it names the setting).
type KVMemoryAdvisor interface {
	DefaultKVMemory(parallel, batchTokens int) (bytes int64, source string, err error)
}

// KVLimiter is a Backend that refuses KV caches beyond a limit of its own
// (the CPU backend's budget). The engine sets it to the engine's KV memory
// budget (0: none), so that there is one limit and the engine, which waits
// for memory instead of failing, is the one that meets it.
type KVLimiter interface {
	SetKVBudget(bytes int64)
}

// TopMasker is a Backend that honours Seq.Allow when it selects top
// candidates.
type TopMasker interface {
	MasksTop() bool
}

// Seq is one sequence's part of a forward batch: Tokens are appended at the
// positions after what KV holds.
type Seq struct {
	Tokens    []int32
	KV        KVCache
	AllLogits bool // logits for every token of Tokens (scoring); else only the last
	// Prefill marks tokens of a prompt (or of a scored text) as opposed to
	// the one token a decoding sequence feeds each step. A backend may
	// compute the two kinds differently, but a row's result must depend only
	// on its kind, never on what else is in the batch or how a prompt was
	// split into chunks (greedy output must not change with load).
	Prefill bool
	Logits  []float32 // filled by Forward: len(Tokens)*vocab or vocab values

	// TopK > 0 (with AllLogits false) lets a backend that can do it hand
	// back only the TopK largest logits of the row (Top, ordered by
	// decreasing logit then increasing id, Logprob holding the raw logit)
	// and the row's log-sum-exp (LSE) instead of Logits; it then sets
	// HasTop. Backends that cannot fill Logits as usual.
	TopK   int
	Top    []sample.Candidate
	LSE    float64
	HasTop bool
	// Allow (with TopK, on a backend that is a TopMasker) restricts the
	// candidates to the ids a constrained request may take: the backend
	// calls it once per step, after the step's computation is under way
	// and before it selects the candidates, and treats every id outside
	// the returned bitset (bit i%64 of word i/64) as a −Inf logit: Top is
	// then the TopK largest of that masked row and LSE its log-sum-exp.
	// nil: no restriction.
	Allow func() []uint64

	// Embed asks ForwardEmbed (backends that implement Embedder) for the
	// final hidden states of every token of Tokens — the output norm's
	// result, before the LM head — in Hidden (len(Tokens) × n_embd,
	// row-major) instead of Logits.
	Embed  bool
	Hidden []float32
}

// Backend runs one model. Forward is not safe for concurrent use: the
// engine batches sequences into one call instead.
type Backend interface {
	// Name says which backend this is ("cpu", "cuda:0").
	Name() string
	Config() *model.Config
	// NewKVCache returns an empty cache with room for maxLen positions.
	NewKVCache(maxLen int) (KVCache, error)
	// Forward runs one step over a batch and fills each Seq's Logits.
	Forward(batch []*Seq) error
	// Memory reports the bytes held, by purpose. It must be safe to call
	// concurrently with Forward (health checks do).
	Memory() Memory
	Close() error
}

// Memory is memory use by purpose, in bytes.
type Memory struct {
	Weights     int64 `json:"weights"`
	KVCache     int64 `json:"kv_cache"`
	Activations int64 `json:"activations"`
	Workspace   int64 `json:"workspace"`
}

// DumpFunc receives named intermediate tensors ("attn_norm-3": rows × cols,
// row-major). The slice is only valid during the call.
type DumpFunc func(name string, rows, cols int, data []float32)

// BandwidthMeter is implemented by backends that measure their memory
// bandwidth with a large copy, in bytes per second counting bytes read plus
// bytes written (the rate a decode step can stream weights at).
type BandwidthMeter interface {
	MeasureBandwidth() (float64, error)
}

// Embedder is implemented by backends that can hand back final hidden
// states (for embeddings). ForwardEmbed is Forward where a Seq with Embed
// set gets Hidden filled and no logits; other sequences of the batch are
// computed as Forward computes them. A row's hidden state depends only on
// its own tokens, as its logits do.
type Embedder interface {
	ForwardEmbed(batch []*Seq) error
}

// GraphStats counts what a backend that replays captured launch graphs
// (the CUDA backend's CUDA graphs) did since it started.
type GraphStats struct {
	Cached          int    // graphs held now
	Captures        int64  // steps captured into a graph
	Replays         int64  // steps run from a graph
	Direct          int64  // steps launched kernel by kernel
	Evictions       int64  // graphs dropped to bound the cache
	CaptureFailures int64  // captures that failed (the step then ran directly)
	Disabled        bool   // a capture failed: graphs are off
	LastFailure     string // why the last capture failed
}

// GraphReporter is implemented by backends that report GraphStats (safe to
// call concurrently with Forward).
type GraphReporter interface {
	GraphStats() GraphStats
}

// ResidencyChecker is implemented by backends that can check that the
// model's weights are in the memory they compute from (device memory).
type ResidencyChecker interface {
	Resident() (bool, error)
}
