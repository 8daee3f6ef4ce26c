package server

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMalformedBodies: every bad body gets a 4xx with a code naming the
// problem, and the server keeps serving.
func TestMalformedBodies(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 2})
	huge := `{"prompt":"` + strings.Repeat("a", 10<<20) + `"}`
	cases := []struct {
		name, body string
		status     int
		param      string
	}{
		{"empty", ``, 400, ""},
		{"bad json", `{"prompt":`, 400, ""},
		{"not json", `hello`, 400, ""},
		{"array", `[1,2]`, 400, ""},
		{"string", `"x"`, 400, ""},
		{"trailing", `{"prompt":"x"} {"prompt":"y"}`, 400, ""},
		{"wrong type prompt", `{"prompt":5}`, 400, "prompt"},
		{"wrong type max_tokens", `{"prompt":"x","max_tokens":"5"}`, 400, "max_tokens"},
		{"float max_tokens", `{"prompt":"x","max_tokens":1.5}`, 400, "max_tokens"},
		{"huge max_tokens", `{"prompt":"x","max_tokens":1e300}`, 400, "max_tokens"},
		{"int64 max_tokens", `{"prompt":"x","max_tokens":9223372036854775807}`, 400, "max_tokens"},
		{"negative max_tokens", `{"prompt":"x","max_tokens":-1}`, 400, "max_tokens"},
		{"huge temperature", `{"prompt":"x","temperature":1e999}`, 400, "temperature"},
		{"negative temperature", `{"prompt":"x","temperature":-0.5}`, 400, "temperature"},
		{"negative top_p", `{"prompt":"x","top_p":-0.1}`, 400, "top_p"},
		{"presence_penalty 3", `{"prompt":"x","presence_penalty":3}`, 400, "presence_penalty"},
		{"frequency_penalty -2.5", `{"prompt":"x","frequency_penalty":-2.5}`, 400, "frequency_penalty"},
		{"logit_bias key", `{"prompt":"x","logit_bias":{"abc":1}}`, 400, "logit_bias"},
		{"logit_bias leading zero", `{"prompt":"x","logit_bias":{"01":1}}`, 400, "logit_bias"},
		{"logit_bias negative id", `{"prompt":"x","logit_bias":{"-1":1}}`, 400, "logit_bias"},
		{"logit_bias minus zero", `{"prompt":"x","logit_bias":{"-0":1}}`, 400, "logit_bias"},
		{"logit_bias range", `{"prompt":"x","logit_bias":{"1":101}}`, 400, "logit_bias"},
		{"logit_bias not a number", `{"prompt":"x","logit_bias":{"1":"x"}}`, 400, "logit_bias"},
		{"negative top_k", `{"prompt":"x","top_k":-3}`, 400, "top_k"},
		{"min_p 2", `{"prompt":"x","min_p":2}`, 400, "min_p"},
		{"zero penalty", `{"prompt":"x","repetition_penalty":0}`, 400, "repetition_penalty"},
		{"bad seed", `{"prompt":"x","seed":"abc"}`, 400, "seed"},
		{"negative seed", `{"prompt":"x","seed":-7}`, 400, "seed"},
		{"empty stop", `{"prompt":"x","stop":[""]}`, 400, "stop"},
		{"stop object", `{"prompt":"x","stop":{"a":1}}`, 400, "stop"},
		{"many stops", `{"prompt":"x","stop":[` + strings.Repeat(`"a",`, 40) + `"b"]}`, 400, "stop"},
		{"unknown field", `{"prompt":"x","bogus":true}`, 400, "bogus"},
		{"no prompt", `{"max_tokens":3}`, 400, "prompt"},
		{"both prompts", `{"prompt":"x","prompt_ids":[1]}`, 400, "prompt"},
		{"bad ids", `{"prompt_ids":[-1]}`, 400, "prompt_ids"},
		{"empty ids", `{"prompt_ids":[]}`, 400, "prompt_ids"},
		{"id overflow", `{"prompt_ids":[99999999999]}`, 400, "prompt_ids"},
		{"bad job id", `{"prompt":"x","job_id":"a b"}`, 400, "job_id"},
		{"null", `null`, 400, "prompt"},
		{"context", `{"prompt":"x","max_tokens":600}`, 400, "max_tokens"},
		{"10 MB body", huge, 413, ""},
	}
	for _, c := range cases {
		resp := post(t, ts.URL+"/execute", c.body)
		b := readAll(t, resp)
		var ne nativeError
		if err := json.Unmarshal(b, &ne); err != nil {
			t.Errorf("%s: %d, body not JSON: %.200s", c.name, resp.StatusCode, b)
			continue
		}
		if resp.StatusCode != c.status || ne.Code != CodeInvalidRequest || ne.Param != c.param || ne.Message == "" || ne.Retriable {
			t.Errorf("%s: %d %.300s; want %d INVALID_REQUEST param %q", c.name, resp.StatusCode, b, c.status, c.param)
		}
	}
	// Other endpoints, other shapes.
	for _, c := range []struct{ path, body string }{
		{"/cancel", `{}`}, {"/cancel", `{"job_id":3}`}, {"/cancel", `nope`},
		{"/v1/completions", huge}, {"/v1/chat/completions", `{"messages":"hi"}`},
	} {
		resp := post(t, ts.URL+c.path, c.body)
		b := readAll(t, resp)
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || !bytes.Contains(b, []byte(`"code"`)) {
			t.Errorf("%s %.60s: %d %.200s", c.path, c.body, resp.StatusCode, b)
		}
	}
	ts.execute(t, `{"prompt":"still serving","max_tokens":2}`)
}

func TestBodyLimitFlag(t *testing.T) {
	ts := newTestServer(t, opts{maxBody: 100})
	resp := post(t, ts.URL+"/execute", `{"prompt":"`+strings.Repeat("x", 200)+`"}`)
	if b := readAll(t, resp); resp.StatusCode != 413 || !strings.Contains(string(b), "100 bytes") {
		t.Errorf("%d %s", resp.StatusCode, b)
	}
	ts.execute(t, `{"prompt":"ok","max_tokens":1}`)
}

func TestAPIKey(t *testing.T) {
	ts := newTestServer(t, opts{apiKey: "s3cret"})
	for _, c := range []struct {
		method, path, body string
	}{
		{"POST", "/execute", `{"prompt":"x","max_tokens":1}`},
		{"POST", "/cancel", `{"job_id":"x"}`},
		{"GET", "/metrics", ""},
		{"GET", "/v1/models", ""},
		{"POST", "/v1/completions", `{"prompt":"x","max_tokens":1}`},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"max_tokens":1}`},
	} {
		for _, auth := range []string{"", "Bearer wrong", "Basic s3cret", "Bearer s3cret"} {
			req, _ := http.NewRequest(c.method, ts.URL+c.path, strings.NewReader(c.body))
			req.Header.Set("Content-Type", "application/json")
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b := readAll(t, resp)
			ok := auth == "Bearer s3cret"
			if ok != (resp.StatusCode != http.StatusUnauthorized) {
				t.Errorf("%s %s with %q: %d %.200s", c.method, c.path, auth, resp.StatusCode, b)
			}
			if !ok && (resp.Header.Get("WWW-Authenticate") == "" || !bytes.Contains(b, []byte("UNAUTHORIZED")) && !bytes.Contains(b, []byte("invalid_api_key"))) {
				t.Errorf("%s %s with %q: 401 without the right body or header: %s", c.method, c.path, auth, b)
			}
		}
	}
	// /health needs no key.
	if resp := get(t, ts.URL+"/health"); resp.StatusCode != 200 {
		t.Errorf("/health without a key: %d", resp.StatusCode)
	}
	if n := ts.metric(t, `worker_orcd_requests_total{endpoint="/execute",outcome="unauthorized"}`, "Authorization", "Bearer s3cret"); n != 3 {
		t.Errorf("unauthorized metric %v, want 3", n)
	}
}

func TestMetricsExposition(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 2})
	ts.execute(t, `{"prompt":"Hello","max_tokens":4,"ignore_eos":true}`)
	b := string(readAll(t, get(t, ts.URL+"/metrics")))
	for _, name := range []string{
		`worker_orcd_requests_total{endpoint="/execute",model="micro",outcome="ok"} 1`,
		`worker_orcd_prompt_tokens_total{model="micro"} `, `worker_orcd_generated_tokens_total{model="micro"} 4`,
		"worker_orcd_requests_processing 0", "worker_orcd_requests_deferred 0", "worker_orcd_kv_cache_usage_ratio 0",
		"worker_orcd_prompt_tokens_per_second ", "worker_orcd_generated_tokens_per_second ",
		"worker_orcd_time_to_first_token_seconds_count 1", "worker_orcd_inter_token_latency_seconds_count 3",
		"worker_orcd_queue_depth 0", "worker_orcd_slots_active 0", "worker_orcd_slots_total 2",
		`worker_orcd_memory_bytes{purpose="weights"}`, `worker_orcd_memory_bytes{purpose="kv_cache"}`,
		`worker_orcd_memory_bytes{purpose="activations"}`, `worker_orcd_memory_bytes{purpose="workspace"}`,
		"worker_orcd_uptime_seconds ", "worker_orcd_model_loaded 1", "worker_orcd_request_duration_seconds_bucket",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(b, name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
	// Throughput: 4 prompt-and-generated tokens over positive times.
	for _, name := range []string{"worker_orcd_prompt_tokens_per_second", "worker_orcd_generated_tokens_per_second"} {
		if v := ts.metric(t, name); !(v > 0) {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
}

// TestKVCacheUsageRatio: while a long generation runs, the ratio is the
// positions it holds over what the slots can hold; 0 once it ends.
func TestKVCacheUsageRatio(t *testing.T) {
	ts := newTestServer(t, opts{model: "slow", parallel: 2})
	ctx, cancel := context.WithCancel(context.Background())
	stream, _ := startLong(t, ts, ctx, "ratio")
	defer stream.Body.Close()
	capacity := float64(2 * ts.m.Options().CtxLen)
	if _, ok := waitFor(10*time.Second, func() bool {
		v := ts.metric(t, "worker_orcd_kv_cache_usage_ratio")
		return v > 0 && v < 1 && v*capacity == math.Round(v*capacity)
	}); !ok {
		t.Fatalf("ratio %v while a generation runs", ts.metric(t, "worker_orcd_kv_cache_usage_ratio"))
	}
	if ts.metric(t, "worker_orcd_requests_processing") != 1 {
		t.Error("requests_processing is not 1")
	}
	cancel()
	if _, ok := waitFor(5*time.Second, func() bool { return ts.metric(t, "worker_orcd_kv_cache_usage_ratio") == 0 }); !ok {
		t.Errorf("ratio %v after the end", ts.metric(t, "worker_orcd_kv_cache_usage_ratio"))
	}
}

// TestRequestID: a client's X-Request-Id is echoed, otherwise one is made.
func TestRequestID(t *testing.T) {
	ts := newTestServer(t, opts{})
	if resp := get(t, ts.URL+"/health", "X-Request-Id", "abc-123"); resp.Header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("X-Request-Id %q", resp.Header.Get("X-Request-Id"))
	}
	if resp := get(t, ts.URL+"/health"); !strings.HasPrefix(resp.Header.Get("X-Request-Id"), "req-") {
		t.Errorf("X-Request-Id %q", resp.Header.Get("X-Request-Id"))
	}
}

// rss reads the resident set size from /proc (0 where there is none).
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// TestMemoryStable: 500 sequential requests (every endpoint, stream and
// not) after a warm-up leave the heap and the resident set within 50 MB.
func TestMemoryStable(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	ts := newTestServer(t, opts{parallel: 2})
	bodies := []struct{ path, body string }{
		{"/execute", `{"prompt":"The memory test","max_tokens":8,"ignore_eos":true}`},
		{"/v1/completions", `{"prompt":"The memory test","max_tokens":8,"ignore_eos":true,"logprobs":2}`},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"memory"}],"max_tokens":8,"ignore_eos":true,"stream":true}`},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"memory"}],"max_tokens":8,"ignore_eos":true}`},
		{"/execute", `{"prompt":"x","max_tokens":-1}`},
	}
	do := func(i int) {
		c := bodies[i%len(bodies)]
		resp := post(t, ts.URL+c.path, c.body)
		readAll(t, resp)
	}
	for i := range 100 { // warm-up
		do(i)
	}
	measure := func() (heap uint64, res int64) {
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc, rss()
	}
	heap0, rss0 := measure()
	start := time.Now()
	for i := range 500 {
		do(i)
	}
	heap1, rss1 := measure()
	t.Logf("500 requests in %v; heap %d → %d bytes, RSS %d → %d bytes", time.Since(start), heap0, heap1, rss0, rss1)
	const limit = 50 << 20
	if int64(heap1)-int64(heap0) > limit || rss1-rss0 > limit {
		t.Errorf("memory grew: heap %+d, RSS %+d bytes", int64(heap1)-int64(heap0), rss1-rss0)
	}
	if g := runtime.NumGoroutine(); g > 50 {
		t.Errorf("%d goroutines after the requests", g)
	}
}

// TestKVBlocksReported: /metrics and /health report the KV memory in
// blocks: while a long generation runs some are used; used + cached + free
// is the total in both; once it ends none is used and its blocks are
// cached (its prompt's rows kept for reuse), and the same prompt again
// takes them: the prefix cache's figures count the hit in both.
func TestKVBlocksReported(t *testing.T) {
	ts := newTestServer(t, opts{model: "slow", parallel: 2})
	blocks := func() (used, cached, free, total float64) { // one scrape
		v := ts.metrics(t, []string{`worker_orcd_kv_blocks{state="used"}`, `worker_orcd_kv_blocks{state="cached"}`,
			`worker_orcd_kv_blocks{state="free"}`, "worker_orcd_kv_blocks_total"})
		return v[0], v[1], v[2], v[3]
	}
	type healthKV struct {
		KV     kvBlocksJSON `json:"kv_blocks"`
		Prefix prefixJSON   `json:"prefix_cache"`
	}
	healthAll := func() healthKV {
		var h healthKV
		if err := json.Unmarshal(readAll(t, get(t, ts.URL+"/health")), &h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	health := func() kvBlocksJSON { return healthAll().KV }
	// The CPU backend's caches are paged: blocks of its 16 positions.
	if total := ts.metric(t, "worker_orcd_kv_blocks_total"); total < 1 || ts.metric(t, "worker_orcd_kv_block_positions") != 16 || !health().Paged {
		t.Fatalf("kv_blocks_total %v, kv_block_positions %v, paged %v", total, ts.metric(t, "worker_orcd_kv_block_positions"), health().Paged)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, _ := startLong(t, ts, ctx, "blocks")
	defer stream.Body.Close()
	if _, ok := waitFor(10*time.Second, func() bool { u, _, _, _ := blocks(); return u > 0 }); !ok {
		t.Fatal("no KV block used while a generation runs")
	}
	if u, c, f, n := blocks(); u+c+f != n {
		t.Errorf("/metrics while running: %v used + %v cached + %v free != %v", u, c, f, n)
	}
	if h := health(); h.Used < 1 || h.Used+h.Cached+h.Free != h.Total || h.BlockPositions != 16 || h.BlockBytes <= 0 || h.BudgetSource == "" {
		t.Errorf("/health while running: %+v", h)
	}
	cancel()
	if _, ok := waitFor(5*time.Second, func() bool { u, c, _, _ := blocks(); return u == 0 && c > 0 }); !ok {
		u, c, f, n := blocks()
		t.Errorf("after the end: %v used, %v cached, %v free of %v", u, c, f, n)
	}
	if h := health(); h.Used != 0 || h.Cached+h.Free != h.Total {
		t.Errorf("/health after the end: %+v", h)
	}
	resp := post(t, ts.URL+"/v1/completions", `{"prompt":"once upon a time","max_tokens":2,"temperature":0}`)
	var out struct {
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
			Details      struct {
				CachedTokens int `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(readAll(t, resp), &out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the same prompt again: %d, %v", resp.StatusCode, err)
	}
	if u := out.Usage; u.Details.CachedTokens != u.PromptTokens-1 {
		t.Errorf("the same prompt again: %d of its %d prompt tokens from the cache, want all but the last", u.Details.CachedTokens, u.PromptTokens)
	}
	lookups, hits := ts.metric(t, "worker_orcd_prefix_cache_lookups_total"), ts.metric(t, "worker_orcd_prefix_cache_hits_total")
	hitTokens, ratio := ts.metric(t, "worker_orcd_prefix_cache_hit_tokens_total"), ts.metric(t, "worker_orcd_prefix_cache_hit_ratio")
	lookupTokens := ts.metric(t, "worker_orcd_prefix_cache_lookup_tokens_total")
	if lookups != 2 || hits != 1 || hitTokens != float64(out.Usage.Details.CachedTokens) || lookupTokens != 2*float64(out.Usage.PromptTokens) || ratio != hitTokens/lookupTokens {
		t.Errorf("/metrics: %v lookups, %v hits, %v of %v tokens, ratio %v", lookups, hits, hitTokens, lookupTokens, ratio)
	}
	if p := healthAll().Prefix; !p.Enabled || p.Lookups != 2 || p.Hits != 1 || float64(p.HitTokens) != hitTokens || p.HitRate != ratio || p.CachedBlocks < 1 {
		t.Errorf("/health prefix_cache: %+v", p)
	}
}
