package server

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"worker-orcd/backend"
	"worker-orcd/engine"
)

// Request outcomes, the values of the outcome label of
// worker_orcd_requests_total.
const (
	outcomeOK           = "ok"           // answered or streamed to its end
	outcomeCancelled    = "cancelled"    // stopped by /cancel, a client disconnect or shutdown
	outcomeClientError  = "client_error" // 4xx other than 401
	outcomeUnauthorized = "unauthorized" // 401
	outcomeRejected     = "rejected"     // 503: queue full, loading, shutting down
	outcomeError        = "error"        // the worker failed (5xx, or an error event mid-stream)
)

// metrics are one server's Prometheus collectors, on a registry of its own
// so that several servers can live in one process (tests).
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec   // endpoint, model, outcome
	duration  *prometheus.HistogramVec // endpoint, model
	prompt    *prometheus.CounterVec   // model
	generated *prometheus.CounterVec   // model
	ttft      prometheus.Histogram
	itl       prometheus.Histogram
	// connLimitHits counts the connections that had to wait because
	// MaxConnections were open.
	connLimitHits prometheus.Counter
	rates         throughput
}

// throughput sums the tokens and the time spent reading prompts and
// decoding, over every finished request, for the tokens-per-second gauges.
type throughput struct {
	mu                       sync.Mutex
	promptTokens, promptTime float64
	decodeTokens, decodeTime float64
}

// add records one finished request.
func (t *throughput) add(res *engine.Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := res.Timings.Prefill.Seconds(); d > 0 {
		t.promptTokens += float64(res.PromptTokens)
		t.promptTime += d
	}
	if d := res.Timings.Decode.Seconds(); d > 0 && len(res.IDs) > 1 {
		t.decodeTokens += float64(len(res.IDs) - 1) // the first token ends the prefill
		t.decodeTime += d
	}
}

func (t *throughput) prompt() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.promptTime == 0 {
		return 0
	}
	return t.promptTokens / t.promptTime
}

func (t *throughput) generated() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.decodeTime == 0 {
		return 0
	}
	return t.decodeTokens / t.decodeTime
}

func newMetrics(s *Server) *metrics {
	const ns = "worker_orcd"
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
			Help: "HTTP requests by endpoint, model and outcome (ok, cancelled, client_error, unauthorized, rejected, error)."},
			[]string{"endpoint", "model", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "request_duration_seconds",
			Help:    "Time from a generation (or embeddings) request's arrival to the end of its work.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12)}, []string{"endpoint", "model"}),
		prompt: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "prompt_tokens_total",
			Help: "Prompt (and embedding input) tokens of the requests that reached the engine (once a request, whatever its choices)."}, []string{"model"}),
		generated: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "generated_tokens_total",
			Help: "Tokens generated."}, []string{"model"}),
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "time_to_first_token_seconds",
			Help:    "Time from a generation request's arrival to its first generated token (queue and prefill included).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14)}),
		itl: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "inter_token_latency_seconds",
			Help:    "Time between consecutive generated tokens of one request.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2.2, 14)}),
		connLimitHits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "connection_limit_waits_total",
			Help: "Connections that waited to be accepted because --max-connections were open."}),
	}
	stats := func(f func(active, queued, slots int) float64) func() float64 {
		return func() float64 {
			mdl := s.model.Load()
			if mdl == nil {
				return 0
			}
			st := mdl.Stats()
			return f(st.Active, st.Queued, st.Slots)
		}
	}
	kvStat := func(f func(engine.Stats) float64) func() float64 {
		return func() float64 {
			mdl := s.model.Load()
			if mdl == nil {
				return 0
			}
			return f(mdl.Stats())
		}
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, f)
	}
	mem := func(pick func(backend.Memory) int64) func() float64 {
		return func() float64 { return float64(pick(s.memory())) }
	}
	memGauge := func(purpose string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "memory_bytes",
			Help:        "Memory held by the backend, by purpose (device memory on a GPU, host memory on the CPU backend).",
			ConstLabels: prometheus.Labels{"purpose": purpose}}, f)
	}
	m.reg.MustRegister(m.requests, m.duration, m.prompt, m.generated, m.ttft, m.itl, m.connLimitHits,
		gauge("connections_open", "HTTP connections open (accepted through Listen or LimitListener).",
			func() float64 { return float64(s.openConns.Load()) }),
		gauge("queue_depth", "Requests waiting for a slot.", stats(func(_, q, _ int) float64 { return float64(q) })),
		gauge("requests_deferred", "Requests waiting for a slot (llama-server's requests_deferred; the same as queue_depth).",
			stats(func(_, q, _ int) float64 { return float64(q) })),
		gauge("requests_processing", "Requests holding a slot (llama-server's requests_processing; the same as slots_active).",
			stats(func(a, _, _ int) float64 { return float64(a) })),
		gauge("kv_cache_usage_ratio", "Positions held in the slots' KV caches over what the slots can hold (--parallel × --ctx), 0 to 1.",
			func() float64 {
				mdl := s.model.Load()
				if mdl == nil {
					return 0
				}
				st, o := mdl.Stats(), mdl.Options()
				return float64(st.KVPositions) / float64(o.Parallel*o.CtxLen)
			}),
		&kvBlocksCollector{s: s,
			blocks: prometheus.NewDesc(ns+"_kv_blocks",
				"Blocks of KV memory by state: used (running sequences and scoring), cached (the prefix cache: prompt rows of ended requests, evicted least recently used first when blocks are needed), free; they add up to kv_blocks_total.",
				[]string{"state"}, nil),
			total: prometheus.NewDesc(ns+"_kv_blocks_total",
				"Blocks of KV memory the budget holds (--kv-memory over the bytes a block: kv_block_positions positions).", nil, nil)},
		gauge("kv_block_positions", "Positions a block of KV memory counts.",
			kvStat(func(st engine.Stats) float64 { return float64(st.KVBlockPositions) })),
		gauge("kv_memory_budget_bytes", "Bytes the KV caches of all sequences may hold together (--kv-memory; 0: no limit).",
			kvStat(func(st engine.Stats) float64 { return float64(st.KVMemory) })),
		counter("kv_blocks_evicted_total", "Cached blocks (the prefix cache's) evicted to make room for a request, a growing sequence or scoring.",
			kvStat(func(st engine.Stats) float64 { return float64(st.KVEvictedBlocks) })),
		counter("prefix_cache_lookups_total", "Requests that looked for their prompt's start in the prefix cache (--prefix-cache; not those that opted out).",
			kvStat(func(st engine.Stats) float64 { return float64(st.PrefixLookups) })),
		counter("prefix_cache_hits_total", "Requests that took at least one prompt token from the prefix cache.",
			kvStat(func(st engine.Stats) float64 { return float64(st.PrefixHits) })),
		counter("prefix_cache_lookup_tokens_total", "Prompt tokens of the requests that looked in the prefix cache.",
			kvStat(func(st engine.Stats) float64 { return float64(st.PrefixLookupTokens) })),
		counter("prefix_cache_hit_tokens_total", "Prompt tokens taken from the prefix cache instead of being computed (--prefix-cache).",
			kvStat(func(st engine.Stats) float64 { return float64(st.PrefixHitTokens) })),
		gauge("prefix_cache_hit_ratio", "Prompt tokens taken from the prefix cache over the prompt tokens of the requests that looked in it, since the start (0 to 1; 0 before any lookup).",
			kvStat(func(st engine.Stats) float64 { return st.PrefixHitRate })),
		gauge("prompt_tokens_per_second", "Prompt tokens read per second of prompt processing, over the requests so far (llama-server's prompt_tokens_seconds).",
			func() float64 { return m.rates.prompt() }),
		gauge("generated_tokens_per_second", "Tokens generated per second of decoding, over the requests so far (llama-server's predicted_tokens_seconds).",
			func() float64 { return m.rates.generated() }),
		gauge("slots_active", "Slots decoding a sequence.", stats(func(a, _, _ int) float64 { return float64(a) })),
		gauge("slots_total", "Configured slots (--parallel).", stats(func(_, _, n int) float64 { return float64(n) })),
		gauge("requests_in_flight", "Generation requests admitted by the HTTP layer and not yet finished.",
			func() float64 { return float64(s.inflight.Load()) }),
		gauge("model_loaded", "1 once the model is loaded and serving.", func() float64 {
			if s.model.Load() != nil {
				return 1
			}
			return 0
		}),
		gauge("uptime_seconds", "Seconds since the server started.", func() float64 { return time.Since(s.start).Seconds() }),
		memGauge("weights", mem(func(m backend.Memory) int64 { return m.Weights })),
		memGauge("kv_cache", mem(func(m backend.Memory) int64 { return m.KVCache })),
		memGauge("activations", mem(func(m backend.Memory) int64 { return m.Activations })),
		memGauge("workspace", mem(func(m backend.Memory) int64 { return m.Workspace })),
		newGraphCollector(s),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// graphCollector exposes the CUDA graph counts of a backend that keeps
// them (backend.GraphReporter); it exposes nothing for other backends.
type graphCollector struct {
	s                                                  *Server
	cached, captures, replays, direct, evicted, failed *prometheus.Desc
	disabled                                           *prometheus.Desc
}

func newGraphCollector(s *Server) *graphCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("worker_orcd_cuda_"+name, help, nil, nil)
	}
	return &graphCollector{s: s,
		cached:   d("graphs_cached", "Captured launch graphs held (one per batch layout, bounded)."),
		captures: d("graph_captures_total", "Decode steps captured into a new graph."),
		replays:  d("graph_replays_total", "Decode steps replayed from a captured graph."),
		direct:   d("graph_direct_steps_total", "Steps launched kernel by kernel (prompt steps, or graphs off)."),
		evicted:  d("graph_evictions_total", "Graphs dropped to keep the cache bounded."),
		failed:   d("graph_capture_failures_total", "Graph captures that failed (the step then ran directly; the log says why)."),
		disabled: d("graphs_disabled", "1 when a failed capture turned graphs off."),
	}
}

func (c *graphCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cached, c.captures, c.replays, c.direct, c.evicted, c.failed, c.disabled} {
		ch <- d
	}
}

func (c *graphCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.s.model.Load()
	if m == nil {
		return
	}
	gr, ok := m.Backend().(backend.GraphReporter)
	if !ok {
		return
	}
	st := gr.GraphStats()
	disabled := 0.0
	if st.Disabled {
		disabled = 1
	}
	ch <- prometheus.MustNewConstMetric(c.cached, prometheus.GaugeValue, float64(st.Cached))
	ch <- prometheus.MustNewConstMetric(c.captures, prometheus.CounterValue, float64(st.Captures))
	ch <- prometheus.MustNewConstMetric(c.replays, prometheus.CounterValue, float64(st.Replays))
	ch <- prometheus.MustNewConstMetric(c.direct, prometheus.CounterValue, float64(st.Direct))
	ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(st.Evictions))
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(st.CaptureFailures))
	ch <- prometheus.MustNewConstMetric(c.disabled, prometheus.GaugeValue, disabled)
}

// kvBlocksCollector reports kv_blocks{state} and kv_blocks_total from one
// engine.Stats a scrape, so that used + cached + free = total in every
// scrape (separate gauges each read the engine at their own moment, and a
// generation takes blocks in between).
type kvBlocksCollector struct {
	s             *Server
	blocks, total *prometheus.Desc
}

func (c *kvBlocksCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.blocks
	ch <- c.total
}

func (c *kvBlocksCollector) Collect(ch chan<- prometheus.Metric) {
	var st engine.Stats
	if mdl := c.s.model.Load(); mdl != nil {
		st = mdl.Stats()
	}
	for _, v := range []struct {
		state string
		n     int
	}{{"used", st.KVBlocksUsed}, {"cached", st.KVBlocksCached}, {"free", st.KVBlocksFree}} {
		ch <- prometheus.MustNewConstMetric(c.blocks, prometheus.GaugeValue, float64(v.n), v.state)
	}
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(st.KVBlocksTotal))
}
