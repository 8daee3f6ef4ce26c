// Package engine runs generation requests on a backend: a bounded queue, a
// fixed number of slots (sequences decoded together), continuous batching
// (every step is one forward over the next token of every decoding sequence
// plus chunks of prompts being read), sampling, stop rules and streaming
// text.
//
// Each slot keeps its KV cache between requests, so memory is reused rather
// than reallocated. The backend computes every token of a batch
// independently of the others, so a request's greedy output does not depend
// on what runs beside it.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"worker-orcd/backend"
	"worker-orcd/grammar"
	"worker-orcd/sample"
	"worker-orcd/stop"
	"worker-orcd/tokenizer"
)

// Options configure an engine.
type Options struct {
	Parallel    int // slots: sequences decoded together (default 4)
	QueueSize   int // requests waiting for a slot before ErrQueueFull (default 64)
	CtxLen      int // positions per sequence (default and maximum: the model's context length)
	BatchTokens int // tokens per forward step, prompt chunks included (default 512)
	// NoPrefixCache turns off the reuse of a slot's cached prompt: by
	// default a request whose prompt starts with the prompt a free slot
	// last read goes to that slot and reads only what follows (see admit).
	NoPrefixCache bool
	// KVMemory is the bytes the KV caches of all sequences may hold
	// together (the KV memory budget): a request starts only when its
	// prompt's blocks and one more fit, and a running sequence that needs
	// a block none can give ends alone (see kvpool.go). 0: the backend's
	// default (backend.KVMemoryAdvisor: on a GPU what is free after the
	// weights and workspace less a margin, on the CPU the CPU backend's
	// budget); < 0: no limit.
	KVMemory int64
	// KVMemorySource says where KVMemory comes from, for Stats ("" for a
	// generic note).
	KVMemorySource string
	// KVBlock is the positions a block of KV memory counts (default
	// DefaultKVBlock).
	KVBlock int
}

func (o *Options) fill(modelCtx int) error {
	if o.Parallel == 0 {
		o.Parallel = 4
	}
	if o.QueueSize == 0 {
		o.QueueSize = 64
	}
	if o.CtxLen == 0 {
		o.CtxLen = modelCtx
	}
	if o.BatchTokens == 0 {
		o.BatchTokens = 512
	}
	if o.KVBlock == 0 {
		o.KVBlock = DefaultKVBlock
	}
	switch {
	case o.Parallel < 1 || o.Parallel > 1024:
		return fmt.Errorf("engine: parallel is %d, want 1 to 1024", o.Parallel)
	case o.QueueSize < 0:
		return fmt.Errorf("engine: queue size is %d, want ≥ 0", o.QueueSize)
	case o.CtxLen < 1 || o.CtxLen > modelCtx:
		return fmt.Errorf("engine: context length %d, want 1 to the model's %d", o.CtxLen, modelCtx)
	case o.BatchTokens < o.Parallel:
		return fmt.Errorf("engine: batch tokens %d is less than parallel %d", o.BatchTokens, o.Parallel)
	case o.KVBlock < 1 || o.KVBlock > 1<<20:
		return fmt.Errorf("engine: KV block of %d positions, want 1 to %d", o.KVBlock, 1<<20)
	}
	return nil
}

// Stats is a snapshot of the engine's load.
type Stats struct {
	Slots       int   // configured slots
	Active      int   // slots holding a sequence
	Queued      int   // requests waiting for a slot
	KVCacheSize int64 // bytes held by the slots' KV caches
	KVPositions int   // positions the active sequences hold in their caches (at most Slots × CtxLen)
	// PrefixHitTokens counts the prompt tokens taken from a slot's cache
	// instead of being computed, since the start.
	PrefixHitTokens int64

	// KV memory in blocks (Options.KVMemory, KVBlock): KVBlocksUsed are
	// held by running sequences (and scoring), KVBlocksCached by free
	// slots' cached prompts (evicted when blocks are needed), the rest
	// free: Used + Cached + Free = Total.
	KVBlocksTotal, KVBlocksUsed, KVBlocksCached, KVBlocksFree int
	KVBlockPositions                                          int    // positions a block
	KVBlockBytes                                              int64  // bytes a block
	KVMemory                                                  int64  // the budget in bytes (0: no limit)
	KVMemorySource                                            string // where the budget comes from
	KVEvictedBlocks                                           int64  // cached blocks evicted to make room, since the start
}

// Engine schedules requests onto a backend. All methods are safe for
// concurrent use.
type Engine struct {
	be   backend.Backend
	tok  *tokenizer.Tokenizer
	opts Options

	mu     sync.Mutex
	queue  []*seq
	closed bool
	wake   chan struct{} // buffered(1): new work or a cancellation
	done   chan struct{} // closed when the scheduler exits

	fwdMu      sync.Mutex // serializes Forward between the scheduler and Score
	logitsTap  func(row []float32)
	slots      []*slot
	active     atomic.Int32
	kvSize     atomic.Int64
	prefixHits atomic.Int64 // prompt tokens taken from slot caches (Stats.PrefixHitTokens)

	resMu  sync.Mutex // the last residency answer (Resident)
	resAt  time.Time
	resOK  bool
	resErr error
	kvUsed atomic.Int64 // positions the active sequences hold (noteKV)

	// The KV memory budget in blocks (kvpool.go); the counts under mu.
	blockPos      int    // positions a block
	posBytes      int64  // bytes a position
	blockBytes    int64  // bytes a block
	kvTotal       int    // blocks the budget holds
	kvLimited     bool   // false: no budget (kvTotal is what the slots can take)
	kvBudget      int64  // bytes (0: no limit)
	kvSource      string // where kvBudget comes from
	scoreBlocks   int    // blocks Score's caches hold
	evictedBlocks int64
	useClock      int64         // orders the slots' last use (LRU)
	freed         chan struct{} // closed (and replaced) when blocks are given back

	grammars grammarCache
}

type slot struct {
	kv  backend.KVCache
	seq *seq
	// prefix are the tokens whose keys and values kv holds at positions
	// 0…len-1, computed as prompt rows (never generated rows: those are
	// computed as decode rows, and a prompt's rows must be bitwise what a
	// fresh read gives). Valid while the slot is free.
	prefix []int32
	// blocks are the KV blocks kv's capacity spans (charged to the
	// budget); lastUse orders free slots for eviction. Both under e.mu.
	blocks  int
	lastUse int64
}

// New starts an engine on a backend and the model's tokenizer.
func New(be backend.Backend, tok *tokenizer.Tokenizer, opts Options) (*Engine, error) {
	if err := opts.fill(be.Config().CtxLen); err != nil {
		return nil, err
	}
	e := &Engine{be: be, tok: tok, opts: opts, wake: make(chan struct{}, 1), done: make(chan struct{}), freed: make(chan struct{})}
	e.slots = make([]*slot, opts.Parallel)
	for i := range e.slots {
		e.slots[i] = &slot{}
	}
	if err := e.initKV(); err != nil {
		return nil, err
	}
	e.opts.KVMemory, e.opts.KVMemorySource = e.kvBudget, e.kvSource
	if !e.kvLimited {
		e.opts.KVMemory = -1 // no limit, as Options says it
	}
	go e.loop()
	return e, nil
}

// Options returns the engine's settled options.
func (e *Engine) Options() Options { return e.opts }

// Backend returns the backend the engine runs on.
func (e *Engine) Backend() backend.Backend { return e.be }

// Tokenizer returns the model's tokenizer.
func (e *Engine) Tokenizer() *tokenizer.Tokenizer { return e.tok }

// Stats returns the current load.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	q := len(e.queue)
	used, cached := e.kvCounts()
	free := e.kvFree()
	evicted := e.evictedBlocks
	e.mu.Unlock()
	return Stats{Slots: e.opts.Parallel, Active: int(e.active.Load()), Queued: q, KVCacheSize: e.kvSize.Load(),
		KVPositions: int(e.kvUsed.Load()), PrefixHitTokens: e.prefixHits.Load(),
		KVBlocksTotal: e.kvTotal, KVBlocksUsed: used, KVBlocksCached: cached, KVBlocksFree: free,
		KVBlockPositions: e.blockPos, KVBlockBytes: e.blockBytes, KVMemory: e.kvBudget, KVMemorySource: e.kvSource,
		KVEvictedBlocks: evicted}
}

// Memory reports the backend's memory by purpose, with the KV cache bytes
// the slots hold. It does not wait for the step in progress, so /health
// answers while a long prompt is being read.
func (e *Engine) Memory() backend.Memory {
	m := e.be.Memory()
	if kv := e.kvSize.Load(); kv > m.KVCache {
		m.KVCache = kv
	}
	return m
}

// Resident reports whether the model's weights are where the backend runs
// them (device memory on a GPU, checked with the driver; always true on the
// CPU, which reads the mapped file). The driver is asked between steps, at
// most every residentFresh; while a step runs, the last answer is given
// rather than making a health probe wait for a long prompt step.
func (e *Engine) Resident() (bool, error) {
	rc, ok := e.be.(backend.ResidencyChecker)
	if !ok {
		return true, nil
	}
	e.resMu.Lock()
	defer e.resMu.Unlock()
	if !e.resAt.IsZero() && time.Since(e.resAt) < residentFresh {
		return e.resOK, e.resErr
	}
	if !e.fwdMu.TryLock() {
		if !e.resAt.IsZero() {
			return e.resOK, e.resErr // a step is running: the last answer
		}
		e.fwdMu.Lock() // never asked yet: wait once
	}
	defer e.fwdMu.Unlock()
	e.resOK, e.resErr = rc.Resident()
	e.resAt = time.Now()
	return e.resOK, e.resErr
}

// residentFresh is how long a residency answer is reused.
const residentFresh = 2 * time.Second

// Close stops accepting requests, cancels those queued or running, waits for
// the scheduler to stop, and closes the backend.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		<-e.done
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.signal()
	<-e.done
	return e.be.Close()
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Generate runs a request to its end, calling onToken (if not nil) for each
// generated token in order, from the calling goroutine. Cancelling ctx stops
// the request at the next step; the Result then has StopCancelled and the
// error is ErrCancelled. An error returned by onToken cancels the request
// and is returned.
func (e *Engine) Generate(ctx context.Context, req Request, onToken func(Token) error) (*Result, error) {
	s, err := e.submit(req)
	if err != nil {
		return nil, err
	}
	return e.wait(ctx, s, onToken)
}

// wait follows a submitted sequence to its end (see Generate).
func (e *Engine) wait(ctx context.Context, s *seq, onToken func(Token) error) (*Result, error) {
	var cbErr error
	for {
		select {
		case <-s.notify:
		case <-ctx.Done():
			s.cancel()
			// A request still waiting for a slot ends now, not when a slot
			// frees: its place in the queue goes to the next one.
			e.dequeue(s)
			e.signal()
			ctx = context.Background() // keep draining until the scheduler lets go
			continue
		}
		toks, fin := s.take()
		for _, t := range toks {
			if onToken != nil && cbErr == nil {
				if cbErr = onToken(t); cbErr != nil {
					s.cancel()
					e.signal()
				}
			}
		}
		if fin {
			res := s.result
			if cbErr != nil {
				return res, cbErr
			}
			switch res.StopReason {
			case StopCancelled:
				if errors.Is(s.err, ErrClosed) {
					return res, ErrClosed // the engine shut down before it ran
				}
				return res, ErrCancelled
			case StopError:
				return res, s.err
			}
			return res, nil
		}
	}
}

func (e *Engine) submit(req Request) (*seq, error) {
	maxTokens, err := req.validate(e.be.Config().VocabSize, e.opts.CtxLen)
	if err != nil {
		return nil, err
	}
	s := newSeq(e.tok, req, maxTokens)
	if err := e.fits(s); err != nil {
		return nil, err
	}
	if m, ok := e.be.(backend.TopMasker); ok && m.MasksTop() && s.gm != nil {
		s.allow = func() []uint64 { return s.gm.MaskWithin(s.maxTokens - len(s.result.IDs)) }
	}
	return s, e.enqueue(s)
}

// enqueue puts s in the queue, or says why it cannot wait there.
func (e *Engine) enqueue(s *seq) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if len(e.queue) >= e.opts.QueueSize+e.opts.Parallel-int(e.active.Load()) {
		return fmt.Errorf("%w: %d requests are waiting for %d slots; retry shortly", ErrQueueFull, len(e.queue), e.opts.Parallel)
	}
	e.queue = append(e.queue, s)
	e.signal()
	return nil
}

// loop is the scheduler: admit, step, repeat.
func (e *Engine) loop() {
	defer close(e.done)
	for {
		e.mu.Lock()
		closed := e.closed
		if closed {
			for _, s := range e.queue {
				s.finish(StopCancelled, ErrClosed)
			}
			e.queue = nil
		}
		e.admit()
		e.mu.Unlock()
		busy := false
		for _, sl := range e.slots {
			if sl.seq != nil {
				if closed {
					sl.seq.cancel()
				}
				busy = true
			}
		}
		if !busy {
			if closed {
				e.mu.Lock()
				for _, sl := range e.slots {
					if sl.kv != nil {
						e.evict(sl)
					}
				}
				e.noteSize()
				e.mu.Unlock()
				return
			}
			e.kvUsed.Store(0)
			<-e.wake
			continue
		}
		e.step()
		e.noteKV()
	}
}

// noteKV records the positions the active sequences hold, for Stats; on
// the scheduler's goroutine, which alone touches the caches.
func (e *Engine) noteKV() {
	var n int64
	for _, sl := range e.slots {
		if sl.seq != nil && sl.kv != nil {
			n += int64(sl.kv.Len())
		}
	}
	e.kvUsed.Store(n)
}

// dequeue ends s with StopCancelled if it is still waiting in the queue
// (it was cancelled before it reached a slot); otherwise the scheduler
// ends it at its next step.
func (e *Engine) dequeue(s *seq) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, q := range e.queue {
		if q == s {
			e.queue = append(e.queue[:i], e.queue[i+1:]...)
			s.finish(StopCancelled, ErrCancelled)
			return
		}
	}
}

// admit drops the cancelled requests from the queue and moves the others,
// in order, into free slots; e.mu is held. Every free slot is offered
// queued requests until one is admitted or the queue is empty, so a run of
// dead entries never leaves a slot idle while live work waits.
func (e *Engine) admit() {
	live := e.queue[:0]
	for _, s := range e.queue {
		if s.cancelled.Load() {
			s.finish(StopCancelled, ErrCancelled)
			continue
		}
		live = append(live, s)
	}
	clear(e.queue[len(live):]) // no references kept to finished requests
	e.queue = live
	for len(e.queue) > 0 {
		s := e.queue[0]
		sl, reuse := e.pickSlot(s)
		if sl == nil {
			break // every slot busy
		}
		donor, shared := e.prefixDonor(s, sl)
		want := e.admitBlocks(s)
		if e.kvLimited && sl.blocks > want && (reuse == 0 || shared > reuse) {
			// The slot's rows are of no use to s and its cache is larger
			// than s needs: give the blocks back rather than hold them.
			e.evict(sl)
		}
		if !e.makeRoom(want-sl.blocks, sl, donor) {
			break // s waits (first in line) for running sequences to give blocks back
		}
		e.queue[0] = nil
		e.queue = e.queue[1:]
		prefix := sl.prefix
		sl.prefix = nil // the slot's cache is about to be written
		{
			// The prompt's blocks and one more (admitBlocks); the cache
			// grows a block at a time as s generates (grow).
			need := min(want*e.blockPos, len(s.req.Prompt)+s.maxTokens)
			if sl.kv == nil {
				kv, err := e.be.NewKVCache(need)
				if err != nil {
					s.finish(StopError, fmt.Errorf("%w: KV cache for %d positions: %w", ErrForward, need, err))
					continue
				}
				sl.kv = kv
			} else if err := sl.kv.Reserve(need); err != nil {
				s.finish(StopError, fmt.Errorf("%w: KV cache for %d positions: %w", ErrForward, need, err))
				continue
			}
			sl.blocks = e.blocksFor(sl.kv.Cap())
			switch {
			case shared > reuse:
				// A running request's cache holds a longer start of this
				// prompt (its own prompt rows): copied, read from there on.
				// A failed copy may have overwritten the slot's own rows.
				if !e.copyPrefix(sl, donor, shared) {
					sl.kv.Truncate(0)
					break
				}
				s.prefilled = shared
				s.result.CachedTokens = shared
				e.prefixHits.Add(int64(shared))
			case reuse > 0 && sl.kv.Len() >= reuse && len(prefix) >= reuse:
				// The first reuse positions hold this prompt's own tokens,
				// computed as prompt rows: read from there on.
				sl.kv.Truncate(reuse)
				s.prefilled = reuse
				s.result.CachedTokens = reuse
				e.prefixHits.Add(int64(reuse))
			default:
				sl.kv.Truncate(0)
			}
			s.admitted = time.Now()
			sl.seq = s
			e.active.Add(1)
		}
	}
	if len(e.queue) == 0 {
		e.queue = nil // let the backing array go once the burst has passed
	}
	e.noteSize()
}

// step runs one forward over every active sequence: one token for those
// decoding, a chunk for those reading their prompt (within BatchTokens).
func (e *Engine) step() {
	budget := e.opts.BatchTokens
	var batch []*backend.Seq
	var owners []*slot
	// Decoding sequences first: one token each.
	for _, sl := range e.slots {
		s := sl.seq
		if s == nil {
			continue
		}
		if s.cancelled.Load() {
			e.release(sl, StopCancelled, ErrCancelled)
			continue
		}
		if s.prefilled < len(s.req.Prompt) {
			continue
		}
		if need := sl.kv.Len() + 1; need > sl.kv.Cap() {
			if err := e.grow(sl, need); err != nil {
				e.release(sl, StopError, err)
				continue
			}
		}
		s.one[0] = s.last
		s.bseq.Tokens = s.one[:]       // never append into the prompt's array
		s.bseq.Prefill = s.redoPrefill // a step read again as it was first read
		s.redoPrefill = false
		s.bseq.KV = sl.kv
		s.bseq.TopK = s.topK()
		batch = append(batch, &s.bseq)
		owners = append(owners, sl)
		budget--
	}
	// Then prompt chunks, in slot order.
	for _, sl := range e.slots {
		s := sl.seq
		if s == nil || s.prefilled >= len(s.req.Prompt) || budget <= 0 {
			continue
		}
		n := min(len(s.req.Prompt)-s.prefilled, budget)
		if need := sl.kv.Len() + n; need > sl.kv.Cap() {
			// Not so far: admission made room for the whole prompt.
			if err := e.grow(sl, need); err != nil {
				e.release(sl, StopError, err)
				continue
			}
		}
		s.bseq.Tokens = s.req.Prompt[s.prefilled : s.prefilled+n]
		s.bseq.Prefill = true
		s.bseq.KV = sl.kv
		s.bseq.TopK = 0
		if s.prefilled+n == len(s.req.Prompt) && s.pool == "" {
			s.bseq.TopK = s.topK() // this chunk's last row gives the first token
		}
		batch = append(batch, &s.bseq)
		owners = append(owners, sl)
		budget -= n
	}
	if len(batch) == 0 {
		return
	}
	forward := e.be.Forward
	for _, b := range batch {
		if b.Embed {
			forward = e.be.(backend.Embedder).ForwardEmbed // checked by Embed
			break
		}
	}
	e.fwdMu.Lock()
	err := forward(batch)
	e.fwdMu.Unlock()
	if err != nil {
		for _, sl := range owners {
			e.release(sl, StopError, fmt.Errorf("%w: %w", ErrForward, err))
		}
		return
	}
	// Sample every sequence that produced a token. Each has its own sampler,
	// decoder and stop matcher, so they run in parallel: a pass over a
	// 150k-entry vocabulary takes ~0.1 ms, which adds up across slots.
	var ready []*slot
	for _, sl := range owners {
		s := sl.seq
		if s.prefilled < len(s.req.Prompt) {
			if s.pool != "" {
				s.addHidden(s.bseq.Hidden, len(s.bseq.Tokens), e.be.Config().NEmbd)
			}
			s.prefilled += len(s.bseq.Tokens)
			if s.prefilled < len(s.req.Prompt) {
				continue // more prompt to read before the first token
			}
			if s.pool != "" {
				s.result.Embedding = s.embedding()
				e.release(sl, StopEmbedded, nil)
				continue
			}
		}
		ready = append(ready, sl)
	}
	reasons := make([]StopReason, len(ready))
	accept := func(i int) { reasons[i] = ready[i].seq.accept(ready[i].seq.bseq.Logits, ready[i].kv.Len()) }
	if len(ready) == 1 {
		accept(0)
	} else {
		var wg sync.WaitGroup
		for i := range ready {
			wg.Go(func() { accept(i) })
		}
		wg.Wait()
	}
	for i, sl := range ready {
		s := sl.seq
		prefetch := s.prefetch
		s.prefetch = nil
		if s.redo {
			// The grammar allowed too few of the backend's top candidates:
			// read the same token at the same position again, this time for
			// the whole row (see seq.accept).
			s.redo = false
			s.redoPrefill = s.bseq.Prefill
			s.last = s.bseq.Tokens[len(s.bseq.Tokens)-1]
			s.wholeRow = true
			if err := sl.kv.Truncate(sl.kv.Len() - 1); err != nil {
				e.release(sl, StopError, fmt.Errorf("%w: %w", ErrForward, err))
			}
			continue
		}
		if reasons[i] != "" {
			e.release(sl, reasons[i], s.err0)
			continue
		}
		if prefetch != nil && !s.cancelled.Load() {
			go prefetch() // the next step's mask, while the forward runs
		}
	}
}

// release ends a slot's sequence and frees the slot, which remembers the
// prompt tokens its cache holds (for pickSlot) unless the step failed.
func (e *Engine) release(sl *slot, reason StopReason, err error) {
	s := sl.seq
	s.finish(reason, err)
	var prefix []int32
	if reason != StopError && !e.opts.NoPrefixCache && !s.req.NoPrefixCache {
		prefix = slices.Clone(s.req.Prompt[:min(s.prefilled, len(s.req.Prompt))])
	}
	// Under mu: Stats counts the slot's blocks as cached from here on,
	// and Score may evict them.
	e.mu.Lock()
	sl.prefix = prefix
	sl.seq = nil
	e.useClock++
	sl.lastUse = e.useClock
	e.blocksFreed()
	e.mu.Unlock()
	e.active.Add(-1)
}

// pickSlot chooses the free slot for s: the one whose cached prompt shares
// the longest start with s's prompt (reuse: how many positions to keep; at
// least the prompt's last token is always read again, since its row gives
// the first generated token), else a free slot whose cache holds no prompt,
// else the least recently used (so that the cached prompts kept are the
// most recent). nil when every slot is busy. Which slot a request runs in
// never changes its result. e.mu is held.
func (e *Engine) pickSlot(s *seq) (best *slot, reuse int) {
	for _, sl := range e.slots {
		if sl.seq != nil {
			continue
		}
		if best == nil || len(best.prefix) > 0 && (len(sl.prefix) == 0 || sl.lastUse < best.lastUse) {
			if reuse == 0 {
				best = sl
			}
		}
		if e.opts.NoPrefixCache || s.req.NoPrefixCache || s.pool != "" || sl.kv == nil {
			continue // an embedding needs the hidden states of every token
		}
		n := 0
		limit := min(len(sl.prefix), len(s.req.Prompt)-1)
		for n < limit && sl.prefix[n] == s.req.Prompt[n] {
			n++
		}
		if n > reuse {
			best, reuse = sl, n
		}
	}
	return best, reuse
}

// prefixDonor finds the busy slot (other than dst) whose cache holds the
// longest start of s's prompt among the prompt rows its request has read so
// far (those rows are what s would compute as prompt rows, bit for bit), and
// how many of them s can take (at most its prompt less the last token).
func (e *Engine) prefixDonor(s *seq, dst *slot) (donor *slot, n int) {
	if e.opts.NoPrefixCache || s.req.NoPrefixCache || s.pool != "" {
		return nil, 0
	}
	for _, sl := range e.slots {
		o := sl.seq
		if sl == dst || o == nil || o.pool != "" || o.req.NoPrefixCache {
			continue // an opted-out request's rows are not offered either
		}
		if _, ok := sl.kv.(backend.PrefixCopier); !ok {
			continue // this backend's caches cannot share rows
		}
		limit := min(o.prefilled, len(o.req.Prompt), sl.kv.Len(), len(s.req.Prompt)-1)
		k := 0
		for k < limit && o.req.Prompt[k] == s.req.Prompt[k] {
			k++
		}
		if k > n {
			donor, n = sl, k
		}
	}
	return donor, n
}

// copyPrefix copies donor's first n positions into dst's cache (dst has
// room: admit reserved it). False when the backend cannot or the copy
// failed (the caller then starts dst empty).
func (e *Engine) copyPrefix(dst, donor *slot, n int) bool {
	c, ok := dst.kv.(backend.PrefixCopier)
	if !ok || donor == nil {
		return false
	}
	if err := c.CopyPrefix(donor.kv, n); err != nil {
		slog.Warn("prefix cache: copying positions from another slot failed; computing them instead", "positions", n, "err", err)
		return false
	}
	return true
}

// seq is one request's state inside the engine.
type seq struct {
	req       Request
	maxTokens int
	sampler   *sample.Sampler
	decoder   *tokenizer.StreamingDecoder
	matcher   *stop.Matcher
	tok       *tokenizer.Tokenizer

	bseq      backend.Seq
	prefilled int   // prompt tokens already in the cache
	last      int32 // the last sampled token, fed next step
	one       [1]int32
	history   []int32
	text      []byte
	cands     []sample.Candidate

	gm          *grammar.Matcher // the request's grammar (nil: none)
	allow       func() []uint64  // the step's mask, for a backend that selects candidates under it (nil: it cannot)
	gnext       grammarNext      // what the grammar's next step is known to be (grammar.go)
	prefetch    func()           // the next step's mask, to compute while the forward runs (grammarAhead)
	masked      []float32        // [n_vocab] the row with the grammar's mask applied
	redo        bool             // the step's candidates did not do: read it again for the whole row
	redoPrefill bool             // … and the step read was a prompt row
	wholeRow    bool             // the next step asks for the whole row
	err0        error            // the error that goes with a StopError from accept

	pool    Pooling   // an embedding request: how its hidden states are pooled ("" otherwise)
	poolSum []float64 // [n_embd] sum (mean) or the last row (last) of the hidden states so far
	poolN   int       // hidden states summed

	submitted, admitted, first time.Time
	cancelled                  atomic.Bool

	mu     sync.Mutex
	out    []Token
	fin    bool
	result *Result
	err    error
	notify chan struct{}
}

func newSeq(tok *tokenizer.Tokenizer, req Request, maxTokens int) *seq {
	s := &seq{
		req: req, maxTokens: maxTokens, tok: tok,
		sampler: sample.New(req.Params),
		decoder: tok.NewStreamingDecoder(tokenizer.DecodeOptions{SkipSpecial: true}),
		matcher: stop.NewMatcher(req.Stop),
		history: append(make([]int32, 0, len(req.Prompt)+maxTokens), req.Prompt...),
		notify:  make(chan struct{}, 1), submitted: time.Now(),
	}
	s.result = &Result{PromptTokens: len(req.Prompt), Seed: s.sampler.Seed()}
	if req.Grammar != nil {
		s.gm = req.Grammar.NewMatcher()
	}
	return s
}

// topK is how many top candidates the next step asks the backend for (0:
// the whole row). Backends that can select the top candidates themselves
// only send those back: sampling needs no more (see sample.SampleTop),
// also with a logit bias or penalties that cannot lift an id from outside
// them; the number depends on the ids the step adjusts, so it is asked
// anew every step. A step that needs the whole row draws exactly what the
// candidates would have drawn, so switching between the two changes no
// token.
func (s *seq) topK() int {
	s.bseq.Allow = nil
	if s.wholeRow {
		s.wholeRow = false
		return 0
	}
	if s.allow != nil && !s.req.Logprobs && s.req.TopLogprobs == 0 {
		// The backend selects the candidates with the grammar's mask
		// applied (the mask is asked for while the step computes): the
		// top of the masked row, whatever the mask allows.
		k := s.sampler.TopNeeded(s.history)
		if k == 0 || k > sample.MaxTop {
			return 0
		}
		s.bseq.Allow = s.allow
		return k
	}
	if s.gm != nil && (s.req.Logprobs || s.req.TopLogprobs > 0 || s.narrowStep()) {
		// Few tokens are allowed (JSON punctuation, a keyword): they are
		// unlikely to be among the top candidates, and a step read again
		// costs a forward; the whole row costs a copy. With logprobs the
		// whole row always: narrowStep's choice depends on which masks
		// are cached (other requests, timing), and the two paths compute
		// a logprob's log-sum-exp differently (device or host), so the
		// reported logprobs would change in their last bits from run to
		// run; the tokens do not.
		return 0
	}
	k := s.sampler.TopNeeded(s.history)
	if k == 0 {
		return 0
	}
	if k = max(k, s.req.TopLogprobs); k > sample.MaxTop {
		return 0
	}
	return k
}

func (s *seq) cancel() { s.cancelled.Store(true) }

// accept samples the next token from the step's logits and publishes it; it
// returns a stop reason when the sequence is done. kvLen is the number of
// positions the cache holds after the step.
func (s *seq) accept(logits []float32, kvLen int) StopReason {
	var id int32
	var tk Token
	if b := &s.bseq; b.HasTop {
		// The backend selected the candidates on its side: the same draw
		// from far fewer numbers; logprobs from the row's log-sum-exp.
		budget := s.maxTokens - len(s.result.IDs)
		switch {
		case s.gm != nil && b.Allow != nil:
			// The candidates are the top of the masked row: the draw the
			// masked row gives. A disallowed one comes out only when no
			// allowed id has a finite logit: the whole row says why.
			if id = s.sampler.SampleTop(b.Top, s.history); !s.gm.AllowedWithin(id, budget) {
				s.redo = true
				return ""
			}
		case s.gm != nil:
			var ok bool
			allowed := func(id int32) bool { return s.gm.AllowedWithin(id, budget) }
			if id, ok = s.sampler.SampleTopAllowed(b.Top, s.history, allowed); !ok {
				// Too few candidates are allowed to know the draw: the
				// scheduler reads this step again for the whole row.
				s.redo = true
				return ""
			}
		default:
			id = s.sampler.SampleTop(b.Top, s.history)
		}
		tk = Token{Index: len(s.result.IDs), ID: id}
		for _, c := range b.Top {
			if c.ID == id {
				tk.Logprob = float32(float64(c.Logprob) - b.LSE)
				break
			}
		}
		if n := s.req.TopLogprobs; n > 0 {
			tk.Top = make([]sample.Candidate, min(n, len(b.Top)))
			for i := range tk.Top {
				tk.Top[i] = sample.Candidate{ID: b.Top[i].ID, Logprob: float32(float64(b.Top[i].Logprob) - b.LSE)}
			}
		}
	} else {
		if s.gm != nil {
			// The model's distribution renormalised over the allowed ids:
			// every other logit at -Inf.
			mask := s.gm.MaskWithin(s.maxTokens - len(s.result.IDs))
			s.masked = grow32(s.masked, len(logits))
			applyMask(s.masked, logits, mask)
			id = s.sampler.Sample(s.masked, s.history)
			if !mask.Has(id) {
				// Every allowed id is banned (a logit bias of -100), or the
				// grammar ran past its bounds.
				if err := s.gm.Err(); err != nil {
					s.err0 = fmt.Errorf("%w: %w", ErrInvalidRequest, err) // errors.Is finds grammar.ErrTooComplex too
				} else {
					s.err0 = fmt.Errorf("%w: no token the grammar allows has a finite logit (is every one banned by logit_bias?)", ErrInvalidRequest)
				}
				return StopError
			}
		} else {
			id = s.sampler.Sample(logits, s.history)
		}
		tk = Token{Index: len(s.result.IDs), ID: id}
		if s.req.TopLogprobs > 0 {
			var top []sample.Candidate
			tk.Logprob, top = sample.Logprobs(logits, id, s.req.TopLogprobs, s.cands[:0])
			tk.Top = append([]sample.Candidate(nil), top...)
			s.cands = top
		} else if s.req.Logprobs {
			tk.Logprob = sample.Logprob(logits, id)
		}
	}
	if s.first.IsZero() {
		s.first = time.Now()
	}
	s.sampler.Accept(id)
	s.history = append(s.history, id)
	s.result.IDs = append(s.result.IDs, id)
	s.last = id

	var reason StopReason
	if s.gm != nil {
		if err := s.gm.Accept(id); err != nil {
			s.err0 = fmt.Errorf("%w: %w", ErrInvalidRequest, err) // a bug: the sampler drew from the mask
			return StopError
		}
	}
	if !s.req.IgnoreEOS && s.tok.IsEOG(id) {
		reason = StopEOS
	} else {
		piece, _ := s.decoder.Add(id) // ids come from the model's own vocabulary
		emit, stopped := s.matcher.Push(piece)
		tk.Text = emit
		if stopped {
			reason = StopString
			s.result.StopString = s.matcher.Matched()
		}
	}
	if reason == "" && s.gm != nil && s.gm.Done() {
		reason = StopGrammar
	}
	if reason == "" && (len(s.result.IDs) >= s.maxTokens || kvLen >= len(s.req.Prompt)+s.maxTokens) {
		reason = StopLength
	}
	if reason == "" && s.gm != nil {
		s.grammarAhead()
	}
	if reason != "" && reason != StopString {
		// The stream ends for another reason: release what was held back.
		emit, _ := s.matcher.Push(s.decoder.Flush())
		tk.Text += emit + s.matcher.Flush()
	}
	s.text = append(s.text, tk.Text...)
	s.publish(tk)
	return reason
}

func (s *seq) publish(t Token) {
	s.mu.Lock()
	s.out = append(s.out, t)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// take hands the caller the tokens published since the last call.
func (s *seq) take() ([]Token, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.out
	s.out = nil
	return out, s.fin
}

func (s *seq) finish(reason StopReason, err error) {
	now := time.Now()
	r := s.result
	r.StopReason = reason
	r.Text = string(s.text)
	if !s.admitted.IsZero() {
		r.Timings.Queue = s.admitted.Sub(s.submitted)
		if !s.first.IsZero() {
			r.Timings.Prefill = s.first.Sub(s.admitted)
			r.Timings.Decode = now.Sub(s.first)
			if r.Timings.Prefill > 0 {
				r.Timings.PromptTPS = float64(r.PromptTokens) / r.Timings.Prefill.Seconds()
			}
			if n := len(r.IDs) - 1; n > 0 && r.Timings.Decode > 0 {
				r.Timings.GenerateTPS = float64(n) / r.Timings.Decode.Seconds()
			}
		}
	}
	if reason == StopError && err == nil {
		err = errors.New("engine: unknown failure")
	}
	s.mu.Lock()
	s.fin = true
	s.err = err
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}
