package cuda

import (
	"container/list"
	"errors"
	"log/slog"
	"strconv"
	"sync"

	"worker-orcd/backend"
)

// GraphCacheSize is the most captured layer passes a backend keeps (least
// recently used evicted first). A graph serves every step whose rows have
// the same layout (runs of decode and prefill rows, at most maxGraphT rows
// in all): 64 all-decode batch sizes, plus room for mixed layouts, which
// occur only without cuBLAS.
const GraphCacheSize = 128

// GraphStats counts what the CUDA graph cache did since the backend
// started (Backend.GraphStats).
type GraphStats = backend.GraphStats

// graphCache is the backend's captured layer passes by row layout, an LRU
// bounded by GraphCacheSize. Only the device goroutine changes it; the
// mutex lets GraphStats read the counts from any goroutine.
type graphCache struct {
	mu      sync.Mutex
	byKey   map[string]*list.Element // of *graphEntry
	lru     list.List                // front: most recently used
	stats   GraphStats
	logged  bool
	destroy func(cuGraphExec) error // cuGraphExecDestroy (tests replace it)
}

type graphEntry struct {
	key  string
	exec cuGraphExec
}

func destroyGraphExec(e cuGraphExec) error {
	return check("cuGraphExecDestroy", drv.cuGraphExecDestroy(e))
}

// get returns the graph for key and marks it used.
func (g *graphCache) get(key string) (cuGraphExec, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	el, ok := g.byKey[key]
	if !ok {
		return 0, false
	}
	g.lru.MoveToFront(el)
	g.stats.Replays++
	return el.Value.(*graphEntry).exec, true
}

// put adds a freshly captured graph (and counts it as replayed: the step
// launches it), evicting the least recently used beyond GraphCacheSize.
func (g *graphCache) put(key string, exec cuGraphExec) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byKey == nil {
		g.byKey = map[string]*list.Element{}
	}
	g.byKey[key] = g.lru.PushFront(&graphEntry{key, exec})
	g.stats.Captures++
	g.stats.Replays++
	var errs []error
	for g.lru.Len() > GraphCacheSize {
		old := g.lru.Back()
		e := g.lru.Remove(old).(*graphEntry)
		delete(g.byKey, e.key)
		g.stats.Evictions++
		errs = append(errs, g.destroyFn()(e.exec))
	}
	g.stats.Cached = g.lru.Len()
	return errors.Join(errs...)
}

func (g *graphCache) destroyFn() func(cuGraphExec) error {
	if g.destroy != nil {
		return g.destroy
	}
	return destroyGraphExec
}

// drop destroys every graph (they point into buffers about to be freed).
func (g *graphCache) drop() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	for el := g.lru.Front(); el != nil; el = el.Next() {
		errs = append(errs, g.destroyFn()(el.Value.(*graphEntry).exec))
	}
	g.lru.Init()
	clear(g.byKey)
	g.stats.Cached = 0
	return errors.Join(errs...)
}

// failed records a capture that failed: counted every time, logged the
// first time with the reason, and graphs turned off.
func (g *graphCache) failed(err error, rows int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stats.CaptureFailures++
	g.stats.Disabled = true
	g.stats.LastFailure = err.Error()
	if !g.logged {
		g.logged = true
		slog.Warn("cuda: capturing a decode step into a CUDA graph failed; steps launch kernel by kernel from now on (slower, same results)",
			"rows", rows, "reason", err.Error())
	}
}

func (g *graphCache) direct() {
	g.mu.Lock()
	g.stats.Direct++
	g.mu.Unlock()
}

func (g *graphCache) disabled() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stats.Disabled
}

// GraphStats returns the CUDA graph cache's counts (Cached ≤
// GraphCacheSize; Direct counts long batches, dumps, WORKER_CUDA_SYNC,
// steps with cuBLAS rows and steps after a failed capture); safe to call at
// any time, concurrently with Forward.
func (b *Backend) GraphStats() GraphStats {
	b.graphs.mu.Lock()
	defer b.graphs.mu.Unlock()
	return b.graphs.stats
}

// graphKey names the layout of a step's rows: each run's kind and length.
func graphKey(segs []segment) string {
	k := make([]byte, 0, 8*len(segs))
	for _, s := range segs {
		if s.prefill {
			k = append(k, 'p')
		} else {
			k = append(k, 'd')
		}
		k = strconv.AppendInt(k, int64(s.n), 10)
	}
	return string(k)
}

// runLayers runs every layer for T rows: from a captured CUDA graph when
// the batch is small (one graph per row layout; the kernels read positions
// and KV pointers from device memory, so a graph serves every step with
// that layout), directly otherwise, when tensors are being dumped, or with
// WORKER_CUDA_SYNC=1. Call on the device thread.
func (b *Backend) runLayers(T int) error {
	if T > maxGraphT || b.Dump != nil || b.dev.syncEach || b.dev.prof != nil || b.graphs.disabled() || b.blas != 0 && hasPrefill(b.segs) {
		// cuBLAS calls stay out of captured graphs.
		b.graphs.direct()
		return b.layersForward(T)
	}
	key := graphKey(b.segs)
	exec, ok := b.graphs.get(key)
	if !ok {
		var err error
		if exec, err = b.capture(T); err != nil {
			if errors.Is(err, ErrLaunch) {
				return err // a launch refused for its arguments: not the capture's fault
			}
			// Capture is an optimization: run directly from now on.
			b.graphs.failed(err, T)
			b.graphs.direct()
			return b.layersForward(T)
		}
		if err := b.graphs.put(key, exec); err != nil {
			return err
		}
	}
	return check("cuGraphLaunch", drv.cuGraphLaunch(exec, b.dev.stream))
}

func (b *Backend) capture(T int) (cuGraphExec, error) {
	const captureThreadLocal = 1
	if err := check("cuStreamBeginCapture", drv.cuStreamBeginCapture_v2(b.dev.stream, captureThreadLocal)); err != nil {
		return 0, err
	}
	runErr := b.layersForward(T)
	var g cuGraph
	endErr := check("cuStreamEndCapture", drv.cuStreamEndCapture(b.dev.stream, &g))
	if runErr != nil || endErr != nil {
		if g != 0 {
			endErr = errors.Join(endErr, check("cuGraphDestroy", drv.cuGraphDestroy(g)))
		}
		return 0, errors.Join(runErr, endErr)
	}
	var exec cuGraphExec
	instErr := check("cuGraphInstantiate", drv.cuGraphInstantiateWithFlags(&exec, g, 0))
	if err := errors.Join(instErr, check("cuGraphDestroy", drv.cuGraphDestroy(g))); err != nil {
		if instErr == nil {
			_ = destroyGraphExec(exec)
		}
		return 0, err
	}
	return exec, nil
}

// dropGraphs destroys the cached graphs; call on the device thread.
func (b *Backend) dropGraphs() error { return b.graphs.drop() }
