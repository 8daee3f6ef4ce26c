package server

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/engine"
	"worker-orcd/model"
	"worker-orcd/tokenizer"
)

// graphBackend is a backend that reports CUDA-graph counts.
type graphBackend struct {
	backend.Backend
	st backend.GraphStats
}

func (g graphBackend) GraphStats() backend.GraphStats { return g.st }

// TestGraphMetrics: a backend's graph counts appear in /metrics (the CUDA
// backend's captures, replays and failures), and none for backends without.
func TestGraphMetrics(t *testing.T) {
	mdl, err := model.Open(modelPath(t, "micro"))
	if err != nil {
		t.Fatal(err)
	}
	defer mdl.Close()
	tok, err := tokenizer.FromGGUF(mdl.File)
	if err != nil {
		t.Fatal(err)
	}
	be := graphBackend{Backend: cpu.New(mdl, 1), st: backend.GraphStats{Cached: 3, Captures: 5, Replays: 70, Direct: 9,
		Evictions: 2, CaptureFailures: 1, Disabled: true, LastFailure: "capture failed"}}
	e, err := engine.New(be, tok, engine.Options{Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.SetModel(&engine.Model{Engine: e, Model: mdl})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"worker_orcd_cuda_graphs_cached 3", "worker_orcd_cuda_graph_captures_total 5",
		"worker_orcd_cuda_graph_replays_total 70", "worker_orcd_cuda_graph_direct_steps_total 9",
		"worker_orcd_cuda_graph_evictions_total 2", "worker_orcd_cuda_graph_capture_failures_total 1",
		"worker_orcd_cuda_graphs_disabled 1",
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// The CPU backend keeps no graphs: no such series.
	if testDevice() != "cpu" {
		return
	}
	ts := newTestServer(t, opts{})
	if b := string(readAll(t, get(t, ts.URL+"/metrics"))); strings.Contains(b, "worker_orcd_cuda_graph") {
		t.Errorf("graph series on the CPU backend")
	}
}
