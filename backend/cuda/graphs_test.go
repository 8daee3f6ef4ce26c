package cuda

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestGraphCacheBounded: the cache holds at most GraphCacheSize graphs,
// evicts the least recently used (destroying it), and counts what it does.
func TestGraphCacheBounded(t *testing.T) {
	var destroyed []cuGraphExec
	g := &graphCache{destroy: func(e cuGraphExec) error { destroyed = append(destroyed, e); return nil }}
	key := func(i int) string { return graphKey([]segment{{0, i, false}}) + "-" + string(rune('a'+i%26)) }
	for i := range GraphCacheSize {
		if err := g.put(key(i), cuGraphExec(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := g.get(key(0)); !ok { // 0 is now the most recent; 1 the least
		t.Fatal("graph 0 missing")
	}
	for i := GraphCacheSize; i < GraphCacheSize+10; i++ {
		if err := g.put(key(i), cuGraphExec(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	st := g.stats
	if st.Cached != GraphCacheSize || st.Evictions != 10 || st.Captures != GraphCacheSize+10 || st.Replays != GraphCacheSize+11 {
		t.Errorf("stats %+v", st)
	}
	if len(destroyed) != 10 || destroyed[0] != 2 || destroyed[9] != 11 {
		t.Errorf("destroyed %v, want graphs 2 … 11 (the least recently used)", destroyed)
	}
	if _, ok := g.get(key(0)); !ok {
		t.Error("the recently used graph 0 was evicted")
	}
	if _, ok := g.get(key(1)); ok {
		t.Error("the least recently used graph 1 is still cached")
	}
	destroyed = nil
	g.destroy = func(e cuGraphExec) error { destroyed = append(destroyed, e); return errors.New("boom") }
	if err := g.drop(); err == nil || len(destroyed) != GraphCacheSize || g.stats.Cached != 0 || g.lru.Len() != 0 {
		t.Errorf("drop: error %v, %d destroyed, %d cached", err, len(destroyed), g.stats.Cached)
	}
}

// TestGraphCaptureFailureTraced: a failed capture is counted each time,
// logged once with its reason, and turns graphs off visibly (GraphStats).
func TestGraphCaptureFailureTraced(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	b := &Backend{}
	b.graphs.failed(errors.New("CUDA_ERROR: cuStreamBeginCapture failed: CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED (900)"), 8)
	b.graphs.failed(errors.New("again"), 8)
	st := b.GraphStats()
	if st.CaptureFailures != 2 || !st.Disabled || st.LastFailure != "again" {
		t.Errorf("stats %+v", st)
	}
	if n := strings.Count(buf.String(), "CUDA graph failed"); n != 1 || !strings.Contains(buf.String(), "STREAM_CAPTURE_UNSUPPORTED") {
		t.Errorf("logged %d times (want once, with the reason): %s", n, buf.String())
	}
	if !b.graphs.disabled() {
		t.Error("graphs still enabled")
	}
}

// TestGraphKey: one key per row layout.
func TestGraphKey(t *testing.T) {
	seen := map[string][]segment{}
	for _, segs := range [][]segment{
		{{0, 1, false}}, {{0, 11, false}}, {{0, 1, false}, {1, 1, true}}, {{0, 11, true}},
		{{0, 1, true}, {1, 1, false}}, {{0, 1, false}, {1, 11, true}}, {{0, 11, false}, {11, 1, true}},
	} {
		k := graphKey(segs)
		if prev, ok := seen[k]; ok {
			t.Errorf("layouts %v and %v share key %q", prev, segs, k)
		}
		seen[k] = segs
	}
	a, b := []segment{{0, 3, false}, {3, 5, true}}, []segment{{0, 3, false}, {3, 5, true}}
	if graphKey(a) != graphKey(b) {
		t.Error("equal layouts, different keys")
	}
}
