package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestExecuteStream(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 2})
	r := ts.execute(t, `{"job_id":"j1","prompt":"Hello world","max_tokens":8,"temperature":0,"ignore_eos":true}`)
	if r.jobID != "j1" {
		t.Errorf("job_id %q, want j1", r.jobID)
	}
	if r.end == nil {
		t.Fatalf("no end event: %+v", r.events)
	}
	if r.end.TokensOut != 8 || r.end.StopReason != "length" {
		t.Errorf("end %+v, want 8 tokens and stop_reason length", *r.end)
	}
	if len(r.idx) == 0 || r.text == "" {
		t.Errorf("no text streamed: %+v", r.events)
	}
	// A generated job id; prompt_ids instead of text; the same greedy text.
	r2 := ts.execute(t, `{"prompt":"Hello world","max_tokens":8,"temperature":0,"ignore_eos":true}`)
	if !strings.HasPrefix(r2.jobID, "job-") || r2.text != r.text {
		t.Errorf("second run: job %q text %q, want job-… and %q", r2.jobID, r2.text, r.text)
	}
	ids, _ := ts.m.Tokenizer().Encode("Hello world", tokenizerOpts)
	b, _ := json.Marshal(ids)
	r3 := ts.execute(t, `{"prompt_ids":`+string(b)+`,"max_tokens":8,"temperature":0,"ignore_eos":true}`)
	if r3.text != r.text {
		t.Errorf("prompt_ids gave %q, text gave %q", r3.text, r.text)
	}
}

func TestExecuteStopAndMetricsEvent(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 1})
	r := ts.execute(t, `{"prompt":"a b c","max_tokens":24,"temperature":0,"ignore_eos":true}`)
	runes := []rune(r.text)
	if len(runes) < 4 {
		t.Fatalf("greedy text %q too short to cut with a stop string (the synthetic model is deterministic: this is a regression)", r.text)
	}
	stop := string(runes[2:4])
	body, _ := json.Marshal(map[string]any{"prompt": "a b c", "max_tokens": 24, "temperature": 0, "ignore_eos": true, "stop": stop})
	r2 := ts.execute(t, string(body))
	if r2.end == nil || r2.end.StopReason != "stop" || strings.Contains(r2.text, stop) || !strings.HasPrefix(r.text, r2.text) {
		t.Errorf("stop %q: text %q end %+v; unstopped text %q", stop, r2.text, r2.end, r.text)
	}
	var sawMetrics bool
	for _, ev := range r2.events {
		if ev.name == "metrics" {
			var m metricsEvent
			decodeJSON(t, []byte(ev.data), &m)
			sawMetrics = m.PromptTokens > 0 && m.StopString == stop
		}
	}
	if !sawMetrics {
		t.Errorf("no metrics event with prompt_tokens and stop_string: %+v", r2.events)
	}
}

func TestHealth(t *testing.T) {
	s := New(Config{WorkerID: "w1"})
	hs := httptestServer(t, s)
	resp := get(t, hs+"/health")
	b := readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), `"status":"loading"`) {
		t.Fatalf("before the model: %d %s", resp.StatusCode, b)
	}
	resp = post(t, hs+"/execute", `{"prompt":"x"}`)
	b = readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), CodeLoading) || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("execute while loading: %d %s", resp.StatusCode, b)
	}

	ts := newTestServer(t, opts{parallel: 3, queue: 5})
	h := ts.health(t)
	wantDevice, wantKind := "cpu", "host"
	if testDevice() != "cpu" {
		wantDevice, wantKind = "cuda:0", "device"
	}
	if h.Status != "ready" || h.Architecture != "qwen2" || h.QuantKind == "" || !h.Resident || h.Device != wantDevice ||
		h.TokenizerKind != "gpt2" || h.VocabSize == 0 || h.ContextLength != 512 || h.Slots.Total != 3 || h.Queue.Capacity != 5 ||
		h.MemoryBytesUsed == nil || h.MemoryBytesUsed.Weights == 0 || (h.VRAMBytesUsed != nil) != (wantKind == "device") ||
		h.MemoryKind != wantKind || h.Model != "micro" {
		t.Errorf("health %+v", h)
	}
	// kv_cache comes from engine.Stats().KVCacheSize, which the engine
	// updates only when it admits a request with others still queued.
}

func httptestServer(t *testing.T, s *Server) string {
	hs := newHTTPTest(s)
	t.Cleanup(hs.Close)
	return hs.URL
}

// streamUntilTokens starts a long /execute and returns once n tokens have
// arrived; the caller then cancels it one way or another.
func startLong(t *testing.T, ts *testServer, ctx context.Context, jobID string) (*http.Response, *bufioReader) {
	t.Helper()
	body := fmt.Sprintf(`{"job_id":%q,"prompt":"once upon a time","temperature":0,"ignore_eos":true}`, jobID)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/execute", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	br := newBufioReader(resp.Body)
	// Wait for a few tokens, reading whole events.
	for n := 0; n < 3; {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended early: %v", err)
		}
		if strings.HasPrefix(line, "event: token") {
			n++
			br.ReadString('\n') // data
			br.ReadString('\n') // blank line
		}
	}
	return resp, br
}

func TestCancelFreesSlot(t *testing.T) {
	ts := newTestServer(t, opts{model: "slow", parallel: 2})
	resp, br := startLong(t, ts, context.Background(), "long-1")
	defer resp.Body.Close()
	if h := ts.health(t); h.Slots.Active != 1 {
		t.Fatalf("active slots %d while streaming, want 1", h.Slots.Active)
	}
	start := time.Now()
	cresp := post(t, ts.URL+"/cancel", `{"job_id":"long-1"}`)
	cb := readAll(t, cresp)
	if cresp.StatusCode != http.StatusAccepted || !strings.Contains(string(cb), "cancelling") {
		t.Fatalf("/cancel: %d %s", cresp.StatusCode, cb)
	}
	// Freed at the next step: well under 100 ms on an idle machine; the
	// bound is generous so that a loaded machine does not fail it, while a
	// cancel that waited for the generation's end (minutes here) still does.
	took, ok := waitFor(15*time.Second, func() bool { return ts.m.Stats().Active == 0 })
	if !ok || time.Since(start) > 10*time.Second {
		t.Errorf("slot freed after %v (ok %v), want within 10 s", took, ok)
	}
	if h := ts.health(t); h.Slots.Active != 0 {
		t.Errorf("/health active %d after cancel", h.Slots.Active)
	}
	// The stream ends with exactly one terminal event: error CANCELLED.
	rest := readSSE(t, br)
	last := rest[len(rest)-1]
	var ne nativeError
	if last.name != "error" || json.Unmarshal([]byte(last.data), &ne) != nil || ne.Code != CodeCancelled {
		t.Fatalf("last event %+v, want error CANCELLED", last)
	}
	for _, ev := range rest[:len(rest)-1] {
		if ev.name != "token" {
			t.Fatalf("event %+v before the terminal one", ev)
		}
	}
	// Idempotent: again, and for an unknown id.
	for _, body := range []string{`{"job_id":"long-1"}`, `{"job_id":"nope"}`} {
		resp := post(t, ts.URL+"/cancel", body)
		b := readAll(t, resp)
		if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(b), "not_running") {
			t.Errorf("/cancel %s again: %d %s", body, resp.StatusCode, b)
		}
	}
	if n := ts.metric(t, `worker_orcd_requests_total{endpoint="/execute",outcome="cancelled"}`); n != 1 {
		t.Errorf("cancelled requests metric %v, want 1", n)
	}
}

func TestDisconnectFreesSlot(t *testing.T) {
	ts := newTestServer(t, opts{model: "slow", parallel: 2})
	ctx, cancel := context.WithCancel(context.Background())
	resp, _ := startLong(t, ts, ctx, "long-2")
	if got := ts.metric(t, "worker_orcd_slots_active"); got != 1 {
		t.Fatalf("slots_active %v while streaming, want 1", got)
	}
	start := time.Now()
	cancel() // the client goes away
	resp.Body.Close()
	// The slot is freed at the next step (well under 100 ms on an idle
	// machine); the bound is generous so that a loaded CI machine does not
	// fail it, while a slot held until the generation's end (minutes on
	// this model) still does.
	_, ok := waitFor(15*time.Second, func() bool { return ts.metric(t, "worker_orcd_slots_active") == 0 })
	if took := time.Since(start); !ok || took > 10*time.Second {
		t.Errorf("slot freed after %v (ok %v), want within 10 s", took, ok)
	}
	// The server goes on serving.
	ts.execute(t, `{"prompt":"x","max_tokens":2}`)
}

func TestQueueFull(t *testing.T) {
	ts := newTestServer(t, opts{model: "slow", parallel: 1, queue: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r1, _ := startLong(t, ts, ctx, "q1")
	defer r1.Body.Close()
	// The second waits in the queue.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/execute", strings.NewReader(`{"job_id":"q2","prompt":"x","max_tokens":1}`))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := client.Do(req); err == nil {
			readAll(t, resp)
		}
	}()
	if _, ok := waitFor(2*time.Second, func() bool { return ts.InFlight() == 2 }); !ok {
		t.Fatalf("second request not in flight")
	}
	resp := post(t, ts.URL+"/execute", `{"prompt":"x","max_tokens":1}`)
	b := readAll(t, resp)
	var ne nativeError
	decodeJSON(t, b, &ne)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || ne.Code != CodeQueueFull || !ne.Retriable {
		t.Errorf("third request: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	resp = post(t, ts.URL+"/v1/completions", `{"prompt":"x","max_tokens":1}`)
	b = readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), `"code":"queue_full"`) {
		t.Errorf("OpenAI third request: %d %s", resp.StatusCode, b)
	}
	post(t, ts.URL+"/cancel", `{"job_id":"q1"}`).Body.Close()
	wg.Wait()
}

func TestJobIDInUse(t *testing.T) {
	ts := newTestServer(t, opts{model: "slow", parallel: 2})
	resp, _ := startLong(t, ts, context.Background(), "dup")
	defer resp.Body.Close()
	r2 := post(t, ts.URL+"/execute", `{"job_id":"dup","prompt":"x","max_tokens":1}`)
	b := readAll(t, r2)
	if r2.StatusCode != http.StatusConflict || !strings.Contains(string(b), `"param":"job_id"`) {
		t.Errorf("duplicate job_id: %d %s", r2.StatusCode, b)
	}
	post(t, ts.URL+"/cancel", `{"job_id":"dup"}`).Body.Close()
}

// TestConcurrentStreams: 64 streaming requests at once on 4 slots complete
// with well-formed streams, and at temperature 0 each gives the tokens it
// gives alone.
func TestConcurrentStreams(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 4, queue: 64})
	prompts := []string{"Hello", "The quick brown fox", "1 2 3 4", "Once upon a time there was", "a", "zebra crossing", "Go is", "<|endoftext|> x"}
	body := func(i int) string {
		b, _ := json.Marshal(map[string]any{"job_id": fmt.Sprintf("c%d", i), "prompt": prompts[i%len(prompts)],
			"max_tokens": 6 + i%5, "temperature": 0})
		return string(b)
	}
	alone := map[int]execResult{} // body(i) and body(i+40) differ only in job_id
	for i := range 40 {
		alone[i] = ts.execute(t, body(i))
	}
	const n = 64
	results := make([]execResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = ts.execute(t, body(i))
		}()
	}
	wg.Wait()
	for i, r := range results {
		want := alone[i%40]
		if r.end == nil {
			t.Errorf("request %d ended with %+v", i, r.errEv)
			continue
		}
		if r.text != want.text || !slices.Equal(r.idx, want.idx) ||
			r.end.TokensOut != want.end.TokensOut || r.end.StopReason != want.end.StopReason {
			t.Errorf("request %d: %q %v %+v under load, %q %v %+v alone", i, r.text, r.idx, *r.end, want.text, want.idx, *want.end)
		}
		if r.jobID != fmt.Sprintf("c%d", i) {
			t.Errorf("request %d: job id %q", i, r.jobID)
		}
	}
	if h := ts.health(t); h.Slots.Active != 0 || h.Queue.Depth != 0 || h.Requests.InFlight != 0 {
		t.Errorf("after the burst: %+v %+v %+v", *h.Slots, *h.Queue, *h.Requests)
	}
	if got := ts.metric(t, `worker_orcd_requests_total{endpoint="/execute",outcome="ok"}`); got != n+40 {
		t.Errorf("ok requests %v, want %d", got, n+40)
	}
}
