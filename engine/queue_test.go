package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/internal/testmodel"
	"worker-orcd/sample"
)

// gatedBackend is the CPU backend whose steps can be held: while the gate
// is closed, Forward waits, so a test decides when the running sequence
// makes progress and what sits in the queue meanwhile.
type gatedBackend struct {
	*cpu.Backend
	mu   sync.Mutex
	open chan struct{} // closed: steps run freely
}

func (g *gatedBackend) hold() {
	g.mu.Lock()
	g.open = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedBackend) release() {
	g.mu.Lock()
	close(g.open)
	g.mu.Unlock()
}

func (g *gatedBackend) Forward(batch []*backend.Seq) error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	<-open
	return g.Backend.Forward(batch)
}

// newGatedEngine starts an engine with one slot on a micro model whose
// steps start held.
func newGatedEngine(t *testing.T, queue int) (*Engine, *gatedBackend) {
	return newWrappedGatedEngine(t, queue, func(g *gatedBackend) backend.Backend { return g })
}

// newWrappedGatedEngine is newGatedEngine with the gated backend wrapped.
func newWrappedGatedEngine(t *testing.T, queue int, wrap func(*gatedBackend) backend.Backend) (*Engine, *gatedBackend) {
	t.Helper()
	m, tok := openSpec(t, testmodel.MustPreset("qwen2-micro"))
	g := &gatedBackend{Backend: cpu.New(m, 1)}
	g.hold()
	e, err := New(wrap(g), tok, Options{Parallel: 1, QueueSize: queue})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, g
}

var greedyParams = sample.GreedyParams()

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestQueuedCancelEndsAtOnce: requests that are cancelled (or whose client
// goes away) while they wait for a slot end at once, without waiting for
// the running sequence, and leave the queue empty; when the slot frees, a
// new request is served at once (the wedged-queue defect: dead entries were
// dropped one per free slot per wake-up, leaving live work waiting).
func TestQueuedCancelEndsAtOnce(t *testing.T) {
	e, g := newGatedEngine(t, 64)
	prompt := []int32{1, 2, 3}

	// The long request holds the only slot while the gate is closed.
	longDone := make(chan error, 1)
	go func() {
		_, err := e.Generate(context.Background(), Request{Prompt: prompt, Params: greedyParams, MaxTokens: 8, IgnoreEOS: true}, nil)
		longDone <- err
	}()
	waitFor(t, "the long request to take the slot", func() bool { return e.Stats().Active == 1 })

	const n = 40
	ctxs := make([]context.CancelFunc, n)
	ended := make(chan error, n)
	for i := range n {
		ctx, cancel := context.WithCancel(context.Background())
		ctxs[i] = cancel
		go func() {
			_, err := e.Generate(ctx, Request{Prompt: prompt, Params: greedyParams, MaxTokens: 4}, nil)
			ended <- err
		}()
	}
	waitFor(t, "the requests to queue", func() bool { return e.Stats().Queued == n })

	start := time.Now()
	for _, cancel := range ctxs {
		cancel()
	}
	for range n {
		select {
		case err := <-ended:
			if !errors.Is(err, ErrCancelled) {
				t.Fatalf("a queued request cancelled by its caller returned %v, want ErrCancelled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("queued requests still waiting %v after their cancellation (the slot is still busy: they must not wait for it)", time.Since(start))
		}
	}
	if st := e.Stats(); st.Queued != 0 {
		t.Fatalf("queue depth %d after every queued request was cancelled, want 0", st.Queued)
	}

	// The slot frees; a new request is admitted and served.
	g.release()
	if err := <-longDone; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := e.Generate(ctx, Request{Prompt: prompt, Params: greedyParams, MaxTokens: 3, IgnoreEOS: true}, nil)
	if err != nil {
		t.Fatalf("a request after the cancelled ones: %v", err)
	}
	if len(res.IDs) != 3 {
		t.Fatalf("generated %d tokens, want 3", len(res.IDs))
	}
	if st := e.Stats(); st.Active != 0 || st.Queued != 0 {
		t.Fatalf("after the run: %d active, %d queued, want 0 and 0", st.Active, st.Queued)
	}
}

// TestAdmitSkipsDeadEntries: cancelled entries at the head of the queue do
// not keep a free slot from the live request behind them, and the live ones
// keep their order.
func TestAdmitSkipsDeadEntries(t *testing.T) {
	e, g := newGatedEngine(t, 16)
	prompt := []int32{1, 2, 3}
	longDone := make(chan error, 1)
	go func() {
		_, err := e.Generate(context.Background(), Request{Prompt: prompt, Params: greedyParams, MaxTokens: 2, IgnoreEOS: true}, nil)
		longDone <- err
	}()
	waitFor(t, "the long request to take the slot", func() bool { return e.Stats().Active == 1 })

	// Queue: dead, dead, live A, dead, live B. The dead ones are cancelled
	// on the engine's side (as a failed token callback does), so that they
	// are still in the queue when the slot frees.
	var seqs []*seq
	for range 5 {
		s, err := e.submit(Request{Prompt: prompt, Params: greedyParams, MaxTokens: 2, IgnoreEOS: true})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, s)
	}
	for _, i := range []int{0, 1, 3} {
		seqs[i].cancel()
	}
	g.release()
	if err := <-longDone; err != nil {
		t.Fatal(err)
	}
	wait := func(s *seq) *Result {
		deadline := time.After(10 * time.Second)
		for {
			select {
			case <-s.notify:
			case <-deadline:
				t.Fatalf("a queued request never ended (queue %+v)", e.Stats())
			}
			if _, fin := s.take(); fin {
				return s.result
			}
		}
	}
	for i, s := range seqs {
		r := wait(s)
		want := StopLength
		if i == 0 || i == 1 || i == 3 {
			want = StopCancelled
		}
		if r.StopReason != want {
			t.Errorf("queued request %d ended with %q, want %q", i, r.StopReason, want)
		}
	}
	if !seqs[2].admitted.Before(seqs[4].admitted) {
		t.Errorf("live requests admitted out of order")
	}
	if st := e.Stats(); st.Queued != 0 || st.Active != 0 {
		t.Fatalf("after the run: %d active, %d queued, want 0 and 0", st.Active, st.Queued)
	}
}

// residentGated is a gated backend that reports residency.
type residentGated struct {
	*gatedBackend
	asked atomic.Int32
}

func (r *residentGated) Resident() (bool, error) { r.asked.Add(1); return true, nil }

// TestResidentDoesNotWaitForAStep: once asked, Resident answers at once
// while a step runs (a health probe must not wait for a long prompt step).
func TestResidentDoesNotWaitForAStep(t *testing.T) {
	var rg *residentGated
	e, g := newWrappedGatedEngine(t, 4, func(g *gatedBackend) backend.Backend {
		rg = &residentGated{gatedBackend: g}
		return rg
	})
	if ok, err := e.Resident(); !ok || err != nil {
		t.Fatalf("Resident: %v %v", ok, err)
	}
	// A step in progress: the gate is closed, so Forward waits holding the
	// forward lock.
	go e.Generate(context.Background(), Request{Prompt: []int32{1, 2, 3}, Params: greedyParams, MaxTokens: 2}, nil)
	waitFor(t, "the step to start", func() bool {
		if e.fwdMu.TryLock() {
			e.fwdMu.Unlock()
			return false
		}
		return true
	})
	e.resMu.Lock()
	e.resAt = time.Now().Add(-time.Hour) // stale: the driver would be asked again
	e.resMu.Unlock()
	done := make(chan struct{})
	go func() { e.Resident(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Resident waited for the step in progress")
	}
	if n := rg.asked.Load(); n != 1 {
		t.Errorf("the backend was asked %d times, want 1 (during the step the last answer is given)", n)
	}
	g.release()
}
