package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// pool is a fixed set of worker goroutines that run index ranges of one
// parallel loop at a time.
type pool struct {
	workers int
	tasks   chan *loop
	l       loop // reused by every parallelFor (one at a time): no allocation
}

type loop struct {
	n, chunk int
	next     atomic.Int64
	fn       func(lo, hi int)
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
	p := &pool{workers: workers, tasks: make(chan *loop)}
	for range workers - 1 {
		go func() {
			for l := range p.tasks {
				l.run()
				l.wg.Done()
			}
		}()
	}
	return p
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
	l.wg.Add(helpers)
	for range helpers {
		p.tasks <- l
	}
	l.run()
	l.wg.Wait()
	l.fn = nil
}
