// Package server is worker-orcd's HTTP interface: the native API (POST
// /execute streaming Server-Sent Events, POST /cancel, GET /health, POST
// /tokenize and /detokenize), an OpenAI-compatible API (/v1/completions,
// /v1/chat/completions, /v1/embeddings, /v1/models), Ollama's API (/api/…)
// and Prometheus metrics (GET /metrics), over one engine.Model. Every
// generation endpoint runs through one skeleton (serveGeneration).
//
// A Server exists before its model: it answers /health with 503 "loading"
// until SetModel is called, so that a process can listen first and load
// second. See README.md in this directory for every endpoint and field.
package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"worker-orcd/backend"
	"worker-orcd/engine"
	"worker-orcd/memwatch"
	"worker-orcd/model"
)

// Defaults of Config.
const (
	DefaultMaxBodyBytes      = 1 << 20
	DefaultReadHeaderTimeout = 10 * time.Second  // to send the request line and headers
	DefaultBodyReadTimeout   = 30 * time.Second  // to send a request body
	DefaultWriteTimeout      = 30 * time.Second  // for the client to take one write of a response
	DefaultIdleTimeout       = 120 * time.Second // an idle keep-alive connection stays open
	DefaultMaxConnections    = 1024              // connections open at once
)

// Config configures a Server. The zero value works.
type Config struct {
	// APIKey, when not "", is required as "Authorization: Bearer <key>" on
	// every endpoint except GET /health.
	APIKey string
	// WorkerID names this worker in /health and the logs.
	WorkerID string
	// ModelID is the model's name in /v1/models and in OpenAI responses;
	// "" uses the model file's base name without ".gguf".
	ModelID string
	// ModelPath is the model file, reported by /health.
	ModelPath string
	// MaxBodyBytes bounds a request body (default 1 MiB).
	MaxBodyBytes int64
	// Logger receives one line per request and the server's events; nil
	// uses slog.Default().
	Logger *slog.Logger
	// Version is reported in /health and as OpenAI's system_fingerprint.
	Version string

	// ReadHeaderTimeout bounds the time a client has to send the request
	// line and headers, BodyReadTimeout the time to send the body after
	// them, WriteTimeout the time a client has to take each write of a
	// response (a stalled reader is dropped and its resources freed), and
	// IdleTimeout how long a keep-alive connection may sit idle. Zero
	// values take the defaults above.
	ReadHeaderTimeout, BodyReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxConnections bounds the connections open at once (default 1024):
	// beyond it new connections wait in the listen backlog, and the log
	// says so. Used by Listen.
	MaxConnections int

	// LoopbackOnly says the worker listens on a loopback address: requests
	// must then name a loopback host (localhost, 127.0.0.1, [::1]) in their
	// Host header, or one of AllowedHosts, which defeats DNS rebinding.
	LoopbackOnly bool
	// AllowedHosts are further host names (without port) accepted in the
	// Host header on a loopback bind; "*" accepts any.
	AllowedHosts []string
	// Pooling is how /v1/embeddings and /api/embed pool a text's final
	// hidden states: engine.PoolMean or engine.PoolLast; "" takes the
	// model's <arch>.pooling_type (llama.cpp's: 1 mean, 3 last) where the
	// file has one of those, else the mean.
	Pooling engine.Pooling
	// AllowedOrigins are the browser origins ("https://app.example",
	// scheme://host[:port]) allowed to call the API, with CORS headers;
	// "*" allows any. Loopback origins (http://localhost:PORT, …) are always
	// allowed; a request with any other Origin is refused with 403.
	AllowedOrigins []string
}

// Server serves one model over HTTP. It is an http.Handler; create it with
// New and give it its model with SetModel.
type Server struct {
	cfg   Config
	log   *slog.Logger
	start time.Time
	mux   map[string]route
	met   *metrics

	model     atomic.Pointer[engine.Model]
	info      atomic.Pointer[modelInfo]
	loadErr   atomic.Pointer[string]
	draining  atomic.Bool
	memWatch  atomic.Pointer[memwatch.Watcher] // the memory self-check, when one runs
	inflight  atomic.Int64                     // generation requests holding a place in the queue or a slot
	openConns atomic.Int64                     // connections open through LimitListener
	admitted  atomic.Int64                     // generation requests admitted since the start

	jobsMu sync.Mutex
	jobs   map[string]*job

	chatWarn  sync.Once
	endpoints string // "POST /execute, …", for 404 answers
}

// modelInfo is what /health and /v1/models report about the model; it does
// not change while the model is loaded.
type modelInfo struct {
	id, name, arch, quant, tokKind, device string
	vocab, ctxLen, modelCtxLen             int
	created                                int64
	params                                 uint64 // parameters (tensor elements)
	pooling                                engine.Pooling
	fileSize                               int64     // bytes of the model file
	modified                               time.Time // the model file's modification time (load time if unknown)
}

type route struct {
	method  string
	handler func(http.ResponseWriter, *http.Request)
	shape   errShape // how errors are answered
	public  bool     // no API key needed
}

// job is a generation in progress, cancellable through POST /cancel.
type job struct {
	cancel context.CancelCauseFunc
}

// New returns a server without a model: generation endpoints answer 503
// MODEL_LOADING until SetModel.
func New(cfg Config) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	orDefault := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	orDefault(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	orDefault(&cfg.BodyReadTimeout, DefaultBodyReadTimeout)
	orDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	orDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	s := &Server{cfg: cfg, log: cfg.Logger, start: time.Now(), jobs: map[string]*job{}}
	s.met = newMetrics(s)
	s.mux = map[string]route{
		"/health":              {method: http.MethodGet, handler: s.handleHealth, public: true},
		"/execute":             {method: http.MethodPost, handler: s.handleExecute},
		"/cancel":              {method: http.MethodPost, handler: s.handleCancel},
		"/metrics":             {method: http.MethodGet, handler: s.met.handler().ServeHTTP},
		"/v1/completions":      {method: http.MethodPost, handler: s.handleCompletions, shape: shapeOpenAI},
		"/v1/chat/completions": {method: http.MethodPost, handler: s.handleChat, shape: shapeOpenAI},
		"/v1/models":           {method: http.MethodGet, handler: s.handleModels, shape: shapeOpenAI},
		"/v1/embeddings":       {method: http.MethodPost, handler: s.handleEmbeddings, shape: shapeOpenAI},
		"/tokenize":            {method: http.MethodPost, handler: s.handleTokenize},
		"/":                    {method: http.MethodGet, handler: s.handleOllamaRoot, public: true},
		"/api/generate":        {method: http.MethodPost, handler: s.handleOllamaGenerate, shape: shapeOllama},
		"/api/chat":            {method: http.MethodPost, handler: s.handleOllamaChat, shape: shapeOllama},
		"/api/embed":           {method: http.MethodPost, handler: s.handleOllamaEmbed, shape: shapeOllama},
		"/api/embeddings":      {method: http.MethodPost, handler: s.handleOllamaEmbeddings, shape: shapeOllama},
		"/api/show":            {method: http.MethodPost, handler: s.handleOllamaShow, shape: shapeOllama},
		"/api/tags":            {method: http.MethodGet, handler: s.handleOllamaTags, shape: shapeOllama},
		"/api/ps":              {method: http.MethodGet, handler: s.handleOllamaPS, shape: shapeOllama},
		"/api/version":         {method: http.MethodGet, handler: s.handleOllamaVersion, shape: shapeOllama},
		"/detokenize":          {method: http.MethodPost, handler: s.handleDetokenize},
	}
	var eps []string
	for path, rt := range s.mux {
		eps = append(eps, rt.method+" "+path)
	}
	slices.SortFunc(eps, func(a, b string) int {
		_, pa, _ := strings.Cut(a, " ")
		_, pb, _ := strings.Cut(b, " ")
		return strings.Compare(pa, pb)
	})
	s.endpoints = strings.Join(eps, ", ")
	return s
}

// SetModel makes the server serve m. Call it once, when the model has
// loaded; the caller keeps ownership (close m after the server is done).
func (s *Server) SetModel(m *engine.Model) {
	cfg := m.Model.Config
	tok := m.Tokenizer()
	info := &modelInfo{
		id: s.cfg.ModelID, name: cfg.Name, arch: cfg.Arch.Name, quant: model.QuantKind(m.Model.File),
		tokKind: string(tok.Model()), device: m.Backend().Name(), vocab: tok.VocabSize(),
		ctxLen: m.Options().CtxLen, modelCtxLen: cfg.CtxLen, created: time.Now().Unix(),
		fileSize: m.Model.File.Size, modified: time.Now(),
	}
	for i := range m.Model.File.Tensors {
		info.params += m.Model.File.Tensors[i].Elements()
	}
	info.pooling = s.cfg.Pooling
	if info.pooling == "" {
		info.pooling = engine.PoolMean
		if pt, err := m.Model.File.Uint32(cfg.Arch.Name + ".pooling_type"); err == nil && pt == 3 {
			info.pooling = engine.PoolLast
		}
	}
	if st, err := os.Stat(s.cfg.ModelPath); err == nil {
		info.modified = st.ModTime()
	}
	if info.id == "" {
		info.id = strings.TrimSuffix(filepath.Base(s.cfg.ModelPath), ".gguf")
	}
	if info.id == "" || info.id == "." {
		info.id = info.name
	}
	if info.id == "" {
		info.id = info.arch
	}
	s.info.Store(info)
	s.model.Store(m)
}

// SetLoadError records why the model failed to load; /health reports it.
func (s *Server) SetLoadError(err error) {
	msg := err.Error()
	s.loadErr.Store(&msg)
}

// Drain stops accepting generation requests (they get 503 SHUTTING_DOWN)
// and makes /health answer 503 "draining"; requests in flight go on.
func (s *Server) Drain() { s.draining.Store(true) }

// SetMemWatch makes /health report the memory self-check and answer 503
// "unhealthy" while it finds memory growing without bound.
func (s *Server) SetMemWatch(w *memwatch.Watcher) { s.memWatch.Store(w) }

// CancelAll cancels every generation in flight (shutdown): streams end
// with a SHUTTING_DOWN error event, other requests are answered 503
// SHUTTING_DOWN with Retry-After; both are marked retriable.
func (s *Server) CancelAll() {
	s.jobsMu.Lock()
	defer s.jobsMu.Unlock()
	for _, j := range s.jobs {
		j.cancel(errShutdown)
	}
}

// InFlight reports the generation requests admitted and not yet finished.
func (s *Server) InFlight() int { return int(s.inflight.Load()) }

// WaitIdle waits until no generation is in flight or ctx ends.
func (s *Server) WaitIdle(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for s.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// memoryReporter is an engine that reports its backend's memory safely
// while the scheduler runs (between forward steps). The CPU backend's own
// Memory reads buffers that Forward resizes, so the server prefers this
// when the engine offers it.
type memoryReporter interface{ Memory() backend.Memory }

// memory is the backend's memory by purpose, the KV cache from the engine.
func (s *Server) memory() backend.Memory {
	m := s.model.Load()
	if m == nil {
		return backend.Memory{}
	}
	var mem backend.Memory
	if mr, ok := any(m.Engine).(memoryReporter); ok {
		mem = mr.Memory()
	} else {
		mem = m.Backend().Memory()
	}
	if kv := m.Stats().KVCacheSize; kv > mem.KVCache {
		mem.KVCache = kv
	}
	return mem
}

// reqInfo is what one request carries through the handlers for the access
// log and the request counter.
type reqInfo struct {
	id       string
	endpoint string
	jobID    string
	outcome  string
	log      *slog.Logger
	tokens   int
	user     string    // OpenAI's user field, logged
	start    time.Time // arrival
}

type ctxKey struct{}

func info(r *http.Request) *reqInfo {
	if ri, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{log: slog.Default()}
}

// statusWriter records the status of a response, bounds the reading of a
// request body left unread (so the server never waits for a body that may
// never come: see limitUnreadBody), and gives every
// write a deadline: a client that takes nothing for writeTimeout is
// dropped, its handler's writes fail and its resources are freed.
type statusWriter struct {
	http.ResponseWriter
	status       int
	body         *bodyTracker // nil when the request declared no body
	writeTimeout time.Duration
	rc           *http.ResponseController // of the ResponseWriter: deadlines
}

// writeChunk is the most a single write sends under one deadline: a large
// answer to a slow reader keeps going as long as the reader makes progress.
const writeChunk = 64 << 10

func (w *statusWriter) extendWrite() {
	if w.writeTimeout > 0 {
		w.rc.SetWriteDeadline(time.Now().Add(w.writeTimeout))
	}
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	w.limitUnreadBody()
	w.extendWrite()
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n := 0
	for len(b) > 0 {
		c := b[:min(len(b), writeChunk)]
		w.extendWrite()
		k, err := w.ResponseWriter.Write(c)
		n += k
		if err != nil {
			return n, err
		}
		b = b[len(c):]
	}
	return n, nil
}

// unreadBodyGrace is how long the server may go on reading a request body
// the handler did not read, after the answer starts: Go's server drains up
// to 256 KiB of it to keep the connection (or to see that it is too large
// and close it politely). A body that is not arriving must not hold the
// connection: after the grace the read fails and the connection closes.
const unreadBodyGrace = 500 * time.Millisecond

// limitUnreadBody bounds the reads of a request body the handler left
// unread (a route that takes no body, an error answered before reading it,
// a body that stopped arriving).
func (w *statusWriter) limitUnreadBody() {
	if w.body != nil && !w.body.done.Load() {
		w.rc.SetReadDeadline(time.Now().Add(unreadBodyGrace))
	}
}

// bodyTracker notes when a request body has been read to its end.
type bodyTracker struct {
	io.ReadCloser
	done atomic.Bool
}

func (b *bodyTracker) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.done.Store(true)
	}
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// ServeHTTP routes a request: request id, access log, panic recovery, API
// key, method check.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rt, known := s.mux[r.URL.Path]
	endpoint := r.URL.Path
	shape := shapeOf(r.URL.Path)
	if strings.HasPrefix(r.URL.Path, "/v1/models/") {
		rt, known = route{method: http.MethodGet, handler: s.handleModel, shape: shapeOpenAI}, true
		endpoint = "/v1/models/{id}"
	}
	if !known {
		endpoint = "other"
	}
	rid := r.Header.Get("X-Request-Id")
	if !validJobID(rid) {
		rid = "req-" + randomHex(8)
	}
	ri := &reqInfo{id: rid, endpoint: endpoint, start: start}
	ri.log = s.log.With("request_id", rid)
	w.Header().Set("X-Request-Id", rid)
	sw := &statusWriter{ResponseWriter: w, writeTimeout: s.cfg.WriteTimeout, rc: http.NewResponseController(w)}
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody { // declared or chunked
		sw.body = &bodyTracker{ReadCloser: r.Body}
		r.Body = sw.body
	}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri))

	defer func() {
		sw.limitUnreadBody() // also when the handler wrote nothing
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			ri.log.Error("panic in handler", "panic", p, "stack", string(debug.Stack()))
			ri.outcome = outcomeError
			if sw.status == 0 {
				writeError(sw, shape, &apiError{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error (logged by the worker)"})
			}
		}
		if ri.outcome == "" {
			ri.outcome = outcomeFor(sw.status)
		}
		if endpoint != "/health" && endpoint != "/metrics" {
			s.met.requests.WithLabelValues(endpoint, s.modelLabel(), ri.outcome).Inc()
		}
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", sw.status, "outcome", ri.outcome,
			"duration_ms", time.Since(start).Milliseconds(), "remote", r.RemoteAddr}
		if ri.jobID != "" {
			attrs = append(attrs, "job_id", ri.jobID, "tokens", ri.tokens)
		}
		if ri.user != "" {
			attrs = append(attrs, "user", logField(ri.user))
		}
		level := slog.LevelInfo
		if endpoint == "/health" || endpoint == "/metrics" {
			level = slog.LevelDebug
		}
		ri.log.Log(context.Background(), level, "request", attrs...)
	}()

	if e := s.checkHost(r); e != nil {
		writeError(sw, shape, e)
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if !s.originAllowed(origin) {
			writeError(sw, shape, &apiError{Status: http.StatusForbidden, Code: CodeForbidden,
				Message: "requests from the web origin " + strconv.Quote(origin) + " are not allowed: start the worker with --allowed-origins " + origin + " to let pages from it call the API"})
			return
		}
		h := sw.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", "X-Request-Id, Retry-After")
		if r.Method == http.MethodOptions && known {
			// A CORS preflight: say what the route takes.
			h.Set("Access-Control-Allow-Methods", rt.method+", OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id")
			h.Set("Access-Control-Max-Age", "600")
			sw.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if !known {
		writeError(sw, shape, &apiError{Status: http.StatusNotFound, Code: CodeNotFound,
			Message: "no endpoint " + r.URL.Path + " (endpoints: " + s.endpoints + ")"})
		return
	}
	if !rt.public && s.cfg.APIKey != "" && !s.authorized(r) {
		writeError(sw, rt.shape, &apiError{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
			Message: "missing or wrong API key: send the header Authorization: Bearer <key>", OAICode: "invalid_api_key"})
		return
	}
	if r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead) {
		sw.Header().Set("Allow", rt.method)
		writeError(sw, rt.shape, &apiError{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed,
			Message: r.Method + " " + r.URL.Path + " is not allowed: use " + rt.method})
		return
	}
	if rt.method == http.MethodPost {
		// Only JSON: a browser sends text/plain or form bodies cross-site
		// without asking first, application/json never.
		if e := checkJSONContentType(r); e != nil {
			writeError(sw, rt.shape, e)
			return
		}
	}
	rt.handler(sw, r)
}

func checkJSONContentType(r *http.Request) *apiError {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && mt == "application/json" {
		return nil
	}
	got := "no Content-Type"
	if ct != "" {
		got = "Content-Type " + strconv.Quote(ct)
	}
	return &apiError{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupportedMediaType,
		Message: "the body must be JSON sent with Content-Type: application/json, got " + got + " (curl: add -H 'Content-Type: application/json')"}
}

// checkHost refuses, on a loopback bind, a Host header that names another
// machine: a web page whose domain was rebound to 127.0.0.1 sends its own
// name there.
func (s *Server) checkHost(r *http.Request) *apiError {
	if !s.cfg.LoopbackOnly || r.Host == "" {
		return nil
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if isLoopbackHost(host) {
		return nil
	}
	for _, a := range s.cfg.AllowedHosts {
		if a == "*" || strings.EqualFold(a, host) {
			return nil
		}
	}
	return &apiError{Status: http.StatusForbidden, Code: CodeForbidden,
		Message: "the Host header names " + strconv.Quote(host) + ", but this worker listens on a loopback address and answers only requests for localhost; start it with --allowed-hosts " + host + " if that name is meant to reach it"}
}

// isLoopbackHost reports whether host (no port) is localhost or a loopback IP.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// originAllowed reports whether a browser page of origin may call the API.
func (s *Server) originAllowed(origin string) bool {
	for _, a := range s.cfg.AllowedOrigins {
		if a == "*" || strings.EqualFold(strings.TrimSuffix(a, "/"), origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false // "null" (sandboxed pages, files) and other schemes
	}
	return isLoopbackHost(u.Hostname())
}

func outcomeFor(status int) string {
	switch {
	case status == 0 || status < 400:
		return outcomeOK
	case status == http.StatusUnauthorized:
		return outcomeUnauthorized
	case status == 499:
		return outcomeCancelled
	case status == http.StatusServiceUnavailable:
		return outcomeRejected
	case status < 500:
		return outcomeClientError
	}
	return outcomeError
}

func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(s.cfg.APIKey)) == 1
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// acquireN admits a request that runs n sequences on the engine (a
// generation's choices, an embeddings request's inputs): the model must be
// loaded, the server not draining, and fewer than parallel+queue sequences
// in flight with its n places (so that the engine's queue cannot be full
// when the request reaches it).
func (s *Server) acquireN(n int) (*engine.Model, func(), *apiError) {
	m := s.model.Load()
	if m == nil {
		return nil, nil, s.notReady()
	}
	if s.draining.Load() {
		return nil, nil, &apiError{Status: http.StatusServiceUnavailable, Code: CodeShuttingDown,
			Message: "the worker is shutting down; retry on another worker", Retriable: true}
	}
	o := m.Options()
	limit := int64(o.Parallel + o.QueueSize)
	s.admitted.Add(1)
	if k := s.inflight.Add(int64(n)); k > limit {
		s.inflight.Add(-int64(n))
		return nil, nil, &apiError{Status: http.StatusServiceUnavailable, Code: CodeQueueFull, Retriable: true,
			Message: "every slot is busy and the queue is full (" + itoa(o.Parallel) + " slots, queue " + itoa(o.QueueSize) + "); retry after a second",
			OAIType: "server_error", OAICode: "queue_full"}
	}
	// The place is given back when generation ends, before the answer is
	// written (a client slow to read it must not hold a place), or when the
	// handler returns, whichever comes first.
	var once sync.Once
	return m, func() { once.Do(func() { s.inflight.Add(-int64(n)) }) }, nil
}

func (s *Server) notReady() *apiError {
	if p := s.loadErr.Load(); p != nil {
		return &apiError{Status: http.StatusServiceUnavailable, Code: CodeInternal, Message: "the model failed to load: " + *p}
	}
	return &apiError{Status: http.StatusServiceUnavailable, Code: CodeLoading, Retriable: true,
		Message: "the model is still loading; retry in a few seconds (GET /health says when it is ready)"}
}

// register makes a job cancellable by id; false when the id is in use.
func (s *Server) register(id string, cancel context.CancelCauseFunc) bool {
	s.jobsMu.Lock()
	defer s.jobsMu.Unlock()
	if _, ok := s.jobs[id]; ok {
		return false
	}
	s.jobs[id] = &job{cancel: cancel}
	return true
}

func (s *Server) unregister(id string) {
	s.jobsMu.Lock()
	delete(s.jobs, id)
	s.jobsMu.Unlock()
}

func itoa(n int) string { return strconv.Itoa(n) }

// modelLabel is the model label of the metrics: the model's id, "" before
// it has loaded.
func (s *Server) modelLabel() string {
	if inf := s.info.Load(); inf != nil {
		return inf.id
	}
	return ""
}

// maxLogField bounds a client-chosen string in a log line.
const maxLogField = 256

// logField is a client-chosen string as logged: valid UTF-8, at most
// maxLogField bytes (the log handler quotes it).
func logField(v string) string {
	v = strings.ToValidUTF8(v, "\uFFFD")
	if len(v) > maxLogField {
		cut := maxLogField
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		v = v[:cut] + "…"
	}
	return v
}
