// Package engine runs generation requests on a backend: a bounded queue, a
// fixed number of slots (sequences decoded together), continuous batching
// (every step is one forward over the next token of every decoding sequence
// plus chunks of prompts being read), sampling, stop rules and streaming
// text.
//
// KV memory is a budget of blocks (kvpool.go). On a backend.Pager each
// sequence's cache is a table of blocks of one pool, and blocks of
// processed prompts stay in a prefix cache, found again by a hash chain of
// their tokens, for any later request whose prompt starts alike
// (paged.go, blocks.go); on other backends each slot keeps a cache of its
// own and the prompt it read last (kvslots.go). The backend computes every
// token of a batch independently of the others, so a request's greedy
// output does not depend on what runs beside it, nor on the cache.
package engine

import (
	"context"
	"errors"
	"fmt"
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

// DefaultParallel is the slots an engine has when Options.Parallel is 0.
const DefaultParallel = 4

// Options configure an engine.
type Options struct {
	Parallel    int // slots: sequences decoded together (default DefaultParallel)
	QueueSize   int // requests waiting for a slot before ErrQueueFull (default 64)
	CtxLen      int // positions per sequence (default and maximum: the model's context length)
	BatchTokens int // tokens per forward step, prompt chunks included (default 512)
	// NoPrefixCache turns off the prefix cache: by default the KV rows of
	// a prompt are kept after its request ends (as long as memory allows)
	// and a request whose prompt starts with the same tokens reads only
	// what follows them, with the same result (see paged.go; on a backend
	// that is not a backend.Pager, a free slot keeps the prompt it read
	// last, kvslots.go).
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
	// DefaultKVBlock) on a backend that is not a backend.Pager; a Pager's
	// blocks are its own (KVBlockLen).
	KVBlock int
}

func (o *Options) fill(modelCtx int) error {
	if o.Parallel == 0 {
		o.Parallel = DefaultParallel
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
	// The prefix cache, since the start: PrefixLookups counts the
	// requests that looked in it (not opted out), PrefixLookupTokens their
	// prompt tokens, PrefixHits those that found rows there and
	// PrefixHitTokens the prompt tokens taken from it instead of being
	// computed; PrefixHitRate is PrefixHitTokens / PrefixLookupTokens (0
	// before any lookup; below 1 even for a prompt sent twice: its last
	// token is always read again).
	PrefixLookups, PrefixLookupTokens, PrefixHits, PrefixHitTokens int64
	PrefixHitRate                                                  float64
	// KVPaged: the backend's KV caches are block tables over one pool
	// (backend.Pager), and the prefix cache keeps blocks of prompt rows
	// (cached blocks); else each slot's cache is one allocation.
	KVPaged bool

	// KV memory in blocks (Options.KVMemory; KVBlock positions, or the
	// Pager's): KVBlocksUsed are held by running sequences (and scoring),
	// KVBlocksCached by the prefix cache (blocks of ended requests'
	// prompt rows, or free slots' cached prompts; evicted least recently
	// used first when blocks are needed), the rest free: Used + Cached +
	// Free = Total.
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

	fwdMu     sync.Mutex // serializes Forward between the scheduler and Score
	logitsTap func(row []float32)
	slots     []*slot
	active    atomic.Int32
	kvSize    atomic.Int64
	// The prefix cache's figures (Stats).
	prefixLookups, prefixLookupTokens, prefixHits, prefixHitTokens atomic.Int64

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

	// On a backend.Pager (paged.go): the pool of kvTotal blocks and the
	// book of who holds which, with the prefix cache (nil otherwise).
	pool backend.BlockPool
	bc   *blockCache

	grammars grammarCache
}

type slot struct {
	kv  backend.KVCache
	seq *seq

	// On a Pager (paged.go): kv is pc, a block table over the engine's
	// pool; table are the blocks the sequence holds (one hold each in
	// e.bc), the first reg of them entries of the prefix cache (shared,
	// never written again); cache: its prompt rows go into the cache.
	pc    backend.PagedCache
	table []int32
	reg   int
	cache bool

	// On the slot path (kvslots.go):
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
	if e.bc != nil {
		evicted = e.bc.evicted
	}
	e.mu.Unlock()
	st := Stats{Slots: e.opts.Parallel, Active: int(e.active.Load()), Queued: q, KVCacheSize: e.kvSize.Load(),
		KVPositions:   int(e.kvUsed.Load()),
		PrefixLookups: e.prefixLookups.Load(), PrefixLookupTokens: e.prefixLookupTokens.Load(),
		PrefixHits: e.prefixHits.Load(), PrefixHitTokens: e.prefixHitTokens.Load(), KVPaged: e.bc != nil,
		KVBlocksTotal: e.kvTotal, KVBlocksUsed: used, KVBlocksCached: cached, KVBlocksFree: free,
		KVBlockPositions: e.blockPos, KVBlockBytes: e.blockBytes, KVMemory: e.kvBudget, KVMemorySource: e.kvSource,
		KVEvictedBlocks: evicted}
	if st.PrefixLookupTokens > 0 {
		st.PrefixHitRate = float64(st.PrefixHitTokens) / float64(st.PrefixLookupTokens)
	}
	return st
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
		e.lockPool() // admission sets block tables (paged.go)
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
		e.unlockPool()
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
				e.lockPool()
				e.mu.Lock()
				if e.bc != nil {
					e.closePaged()
				} else {
					for _, sl := range e.slots {
						if sl.kv != nil {
							e.evict(sl)
						}
					}
					e.noteSize()
				}
				e.mu.Unlock()
				e.unlockPool()
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
	if e.bc != nil {
		e.admitQueue(e.admitPaged)
	} else {
		e.admitQueue(e.admitSlot)
	}
	if len(e.queue) == 0 {
		e.queue = nil // let the backing array go once the burst has passed
	}
	e.noteSize()
}

// admitResult is what trying to start one queued request gave.
type admitResult int

const (
	admitted admitResult = iota // it left the queue: started, or ended with an error
	noSlot                      // every slot is busy
	noBlocks                    // a slot is free, the request's KV blocks are not
)

// admitQueue starts queued requests in order with try (admitPaged or
// admitSlot); e.mu is held. When the first in line waits for KV blocks,
// later requests whose blocks are there start ahead of it, but no more
// than Options.Parallel of them while it waits: a long prompt neither
// holds back the short ones behind it nor waits behind them for ever. At
// most Options.Parallel requests that do not fit are looked at a call, so
// that a long queue of them costs a step little.
func (e *Engine) admitQueue(try func(s *seq) admitResult) {
	waiting := 0 // requests looked at that wait for blocks
	for i := 0; i < len(e.queue) && waiting <= e.opts.Parallel; {
		if i > 0 && e.queue[0].passed >= e.opts.Parallel {
			return // the first in line has been passed enough: it goes next
		}
		switch try(e.queue[i]) {
		case admitted:
			e.queue = slices.Delete(e.queue, i, i+1)
			if i > 0 {
				e.queue[0].passed++
			}
		case noSlot:
			return
		case noBlocks:
			waiting++
			i++
		}
	}
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
	if e.bc != nil {
		// The blocks the step filled with prompt rows go into the prefix
		// cache now (paged.go), so that a request admitted next shares them.
		e.lockPool()
		e.mu.Lock()
		for _, sl := range owners {
			if sl.seq != nil {
				e.registerRows(sl, false)
			}
		}
		e.mu.Unlock()
		e.unlockPool()
	}
}

// release ends a slot's sequence and frees the slot: its KV blocks are
// given back (paged.go; on the slot path the slot keeps the prompt rows
// its cache holds, kvslots.go), those of prompt rows kept for reuse
// unless the step failed.
func (e *Engine) release(sl *slot, reason StopReason, err error) {
	s := sl.seq
	// Under mu: Stats counts the blocks as cached or free from here on,
	// and Score may evict them.
	e.mu.Lock()
	if e.bc != nil {
		e.releasePaged(sl, reason)
	} else {
		e.releaseSlot(sl, reason)
	}
	sl.seq = nil
	e.blocksFreed()
	e.mu.Unlock()
	e.active.Add(-1)
	// Last: once its caller sees the end, the slot and the blocks are back
	// (Stats then agrees with it).
	s.finish(reason, err)
}

// cacheable says whether s reads and leaves prompt rows in the prefix
// cache: not when the engine or the request turned it off, nor for an
// embedding (it needs the hidden states of every token).
func (e *Engine) cacheable(s *seq) bool {
	return !e.opts.NoPrefixCache && !s.req.NoPrefixCache && s.pool == ""
}

// started puts s, admitted with its first s.prefilled prompt positions
// taken from the prefix cache, into sl, and counts the cache's figures
// (looked: s looked in the cache); e.mu is held.
func (e *Engine) started(sl *slot, s *seq, looked bool) {
	if looked {
		e.prefixLookups.Add(1)
		e.prefixLookupTokens.Add(int64(len(s.req.Prompt)))
	}
	if s.prefilled > 0 {
		s.result.CachedTokens = s.prefilled
		e.prefixHits.Add(1)
		e.prefixHitTokens.Add(int64(s.prefilled))
	}
	s.admitted = time.Now()
	sl.seq = s
	e.active.Add(1)
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
	passed    int   // requests started ahead of it while it waited first in line for KV blocks (admitQueue)
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
