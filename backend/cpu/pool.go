package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// pool is a fixed set of worker goroutines that run index ranges of one
// parallel loop at a time.
//
// A decode step is ~10 parallel loops a layer with short serial parts
// between them (norms, RoPE, residual adds): a helper that went to sleep
// after each loop costs a wake-up (tens of µs) every time. So helpers poll
// for the next loop a little while (spinPolls, ~50 µs) before blocking, and
// the caller polls for the helpers' end before it waits.
type pool struct {
	workers int
	tasks   chan *loop // buffered: a send never waits for a helper
	l       loop       // reused by every parallelFor (one at a time): no allocation
}

// spinPolls is how many times an idle helper (or a caller waiting for its
// helpers) checks before it blocks.
const spinPolls = 2000

type loop struct {
	n, chunk int
	next     atomic.Int64
	fn       func(lo, hi int)
	pending  atomic.Int32 // helpers still running
	wg       sync.WaitGroup
}

func (l *loop) run() {
	for {
		lo := int(l.next.Add(int64(l.chunk))) - l.chunk
		if lo >= l.n {
			return
		}
		l.fn(lo, min(lo+l.chunk, l.n))
	}
}

// newPool starts workers goroutines (GOMAXPROCS when workers ≤ 0).
func newPool(workers int) *pool {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	p := &pool{workers: workers, tasks: make(chan *loop, workers)}
	for range workers - 1 {
		go p.helper()
	}
	return p
}

func (p *pool) helper() {
	for {
		var l *loop
		ok := true
	poll:
		for range spinPolls {
			select {
			case l, ok = <-p.tasks:
				break poll
			default:
			}
		}
		if l == nil && ok {
			l, ok = <-p.tasks
		}
		if !ok {
			return
		}
		l.run()
		l.pending.Add(-1)
		l.wg.Done()
	}
}

// close stops the workers.
func (p *pool) close() { close(p.tasks) }

// parallelFor calls fn on disjoint ranges covering [0, n), in parallel. It
// is not reentrant: fn must not call parallelFor.
// Ranges are at least minChunk long so that small loops stay on one core.
func (p *pool) parallelFor(n, minChunk int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	helpers := min(p.workers-1, n/max(minChunk, 1))
	if helpers <= 0 {
		fn(0, n)
		return
	}
	// About four chunks per worker balances uneven rows.
	chunk := max(minChunk, (n+4*(helpers+1)-1)/(4*(helpers+1)))
	l := &p.l
	l.n, l.chunk, l.fn = n, chunk, fn
	l.next.Store(0)
	l.pending.Store(int32(helpers))
	l.wg.Add(helpers)
	for range helpers {
		p.tasks <- l
	}
	l.run()
	for i := 0; i < spinPolls && l.pending.Load() > 0; i++ {
		runtime.Gosched()
	}
	l.wg.Wait()
	l.fn = nil
}
