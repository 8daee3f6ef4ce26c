package server

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"worker-orcd/backend"
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
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	prompt    prometheus.Counter
	generated prometheus.Counter
	ttft      prometheus.Histogram
	itl       prometheus.Histogram
	// connLimitHits counts the connections that had to wait because
	// MaxConnections were open.
	connLimitHits prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	const ns = "worker_orcd"
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
			Help: "HTTP requests by endpoint and outcome (ok, cancelled, client_error, unauthorized, rejected, error)."},
			[]string{"endpoint", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "request_duration_seconds",
			Help:    "Time from a generation request's arrival to its last byte.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12)}, []string{"endpoint"}),
		prompt: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "prompt_tokens_total",
			Help: "Prompt tokens of the requests that reached the engine."}),
		generated: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "generated_tokens_total",
			Help: "Tokens generated."}),
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
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help}, f)
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
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
