package server

import (
	"worker-orcd/memwatch"

	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"worker-orcd/engine"
	"worker-orcd/sample"
	"worker-orcd/tokenizer"
)

// sseWriter writes Server-Sent Events, flushing each one.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
	enc *json.Encoder
}

// startSSE sends the headers of an event stream.
func startSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	s.enc = json.NewEncoder(&s.buf)
	s.enc.SetEscapeHTML(false)
	return s
}

// event writes "event: name" (omitted when "") and "data: <json of v>".
func (s *sseWriter) event(name string, v any) error {
	s.buf.Reset()
	if name != "" {
		s.buf.WriteString("event: ")
		s.buf.WriteString(name)
		s.buf.WriteByte('\n')
	}
	s.buf.WriteString("data: ")
	if raw, ok := v.(string); ok {
		s.buf.WriteString(raw)
		s.buf.WriteByte('\n')
	} else if err := s.enc.Encode(v); err != nil { // Encode ends the line
		return err
	}
	s.buf.WriteByte('\n')
	return s.write()
}

func (s *sseWriter) write() error {
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return err
	}
	return s.rc.Flush()
}

// writeJSON answers 200 with a JSON document.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// executeRequest is the body of POST /execute.
type executeRequest struct {
	JobID        string  `json:"job_id"`
	Prompt       *string `json:"prompt"`
	PromptIDs    []int32 `json:"prompt_ids"`
	AddSpecial   *bool   `json:"add_special"`
	ParseSpecial bool    `json:"parse_special"`
	MaxTokens    *int    `json:"max_tokens"`
	sampling
	constraintFields
}

// SSE event payloads of /execute.
type (
	startedEvent struct {
		JobID        string `json:"job_id"`
		PromptTokens int    `json:"prompt_tokens"`
		Model        string `json:"model"`
	}
	tokenEvent struct {
		T string `json:"t"`
		I int    `json:"i"`
	}
	metricsEvent struct {
		PromptTokens int     `json:"prompt_tokens"`
		TokensOut    int     `json:"tokens_out"`
		QueueMs      float64 `json:"queue_ms"`
		PrefillMs    float64 `json:"prefill_ms"`
		DecodeMs     float64 `json:"decode_ms"`
		PromptTPS    float64 `json:"prompt_tokens_per_s"`
		GenerateTPS  float64 `json:"generate_tokens_per_s"`
		Seed         uint64  `json:"seed"`
		StopString   string  `json:"stop_string,omitempty"`
	}
	endEvent struct {
		TokensOut    int    `json:"tokens_out"`
		DecodeTimeMs int64  `json:"decode_time_ms"`
		StopReason   string `json:"stop_reason"`
	}
)

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// handleExecute is POST /execute: one generation streamed as SSE events
// started → token* → metrics → end, or → error.
func (s *Server) handleExecute(w http.ResponseWriter, r *http.Request) {
	serveGeneration(s, w, r, shapeNative, nil, func(m *engine.Model, body *executeRequest) (*generation, *apiError) {
		req, e := s.executeToEngine(m, body)
		if e != nil {
			return nil, e
		}
		id := body.JobID
		if id == "" {
			id = "job-" + randomHex(12)
		}
		if !validJobID(id) {
			return nil, badRequest("job_id", "want 1 to %d printable ASCII characters without spaces or quotes", maxJobIDLen)
		}
		var sse *sseWriter
		return &generation{id: id, req: req, promptParam: "prompt",
			begin: func() error {
				sse = startSSE(w)
				return sse.event("started", startedEvent{JobID: id, PromptTokens: len(req.Prompt), Model: s.info.Load().id})
			},
			token: func(_ int, t engine.Token) error {
				if t.Text == "" {
					return nil
				}
				return sse.event("token", tokenEvent{T: t.Text, I: t.Index})
			},
			failed: func(e *apiError) { sse.event("error", e.native()) },
			done: func(rs []*engine.Result) {
				res := rs[0]
				t := res.Timings
				sse.event("metrics", metricsEvent{PromptTokens: res.PromptTokens, TokensOut: len(res.IDs),
					QueueMs: msf(t.Queue), PrefillMs: msf(t.Prefill), DecodeMs: msf(t.Decode),
					PromptTPS: t.PromptTPS, GenerateTPS: t.GenerateTPS, Seed: res.Seed, StopString: res.StopString})
				sse.event("end", endEvent{TokensOut: len(res.IDs), DecodeTimeMs: t.Decode.Milliseconds(), StopReason: string(res.StopReason)})
			},
		}, nil
	})
}

// executeToEngine checks an /execute body and makes the engine request.
func (s *Server) executeToEngine(m *engine.Model, b *executeRequest) (engine.Request, *apiError) {
	var req engine.Request
	p, e := b.params(sample.DefaultParams())
	if e != nil {
		return req, e
	}
	tok := m.Tokenizer()
	if e := checkBiasVocab(p, tok.VocabSize()); e != nil {
		return req, e
	}
	switch {
	case b.Prompt != nil && b.PromptIDs != nil:
		return req, badRequest("prompt", "give prompt (text) or prompt_ids (token ids), not both")
	case b.PromptIDs != nil:
		req.Prompt = b.PromptIDs
		if len(req.Prompt) == 0 {
			return req, badRequest("prompt_ids", "is empty: give at least one token id")
		}
		for i, id := range req.Prompt {
			if id < 0 || int(id) >= tok.VocabSize() {
				return req, badRequest("prompt_ids", "token %d is id %d, outside the vocabulary [0, %d)", i, id, tok.VocabSize())
			}
		}
	case b.Prompt != nil:
		addSpecial := b.AddSpecial == nil || *b.AddSpecial
		ids, err := tok.Encode(*b.Prompt, tokenizer.EncodeOptions{AddSpecial: addSpecial, ParseSpecial: b.ParseSpecial})
		if err != nil {
			return req, badRequest("prompt", "%v", err)
		}
		if len(ids) == 0 {
			return req, badRequest("prompt", "the prompt is empty: give some text to continue")
		}
		req.Prompt = ids
	default:
		return req, badRequest("prompt", "missing: give prompt (text) or prompt_ids (token ids)")
	}
	if b.MaxTokens != nil {
		req.MaxTokens = *b.MaxTokens
	}
	if e := checkMaxTokens("max_tokens", req.MaxTokens, len(req.Prompt), m.Options().CtxLen, "prompt"); e != nil {
		return req, e
	}
	if req.Grammar, e = b.constraintFields.automaton(m); e != nil {
		return req, e
	}
	req.Params = p
	req.Stop = b.Stop
	req.IgnoreEOS = b.IgnoreEOS
	req.NoPrefixCache = b.noPrefixCache()
	return req, nil
}

// handleCancel is POST /cancel {"job_id"}: 202 whether or not the job is
// running (cancelling twice, or after the end, is not an error).
func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	var body struct {
		JobID string `json:"job_id"`
	}
	if e := s.decodeBody(w, r, &body); e != nil {
		writeError(w, shapeNative, e)
		return
	}
	if body.JobID == "" {
		writeError(w, shapeNative, badRequest("job_id", "missing: give the job_id to cancel"))
		return
	}
	info(r).jobID = body.JobID
	s.jobsMu.Lock()
	j, running := s.jobs[body.JobID]
	if running {
		j.cancel(errCancelRequested)
	}
	s.jobsMu.Unlock()
	status := "not_running"
	if running {
		status = "cancelling"
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"job_id": body.JobID, "status": status})
}

// healthResponse is the body of GET /health.
type healthResponse struct {
	Status       string           `json:"status"` // loading, ready, draining, unhealthy, failed
	MemoryCheck  *memwatch.Status `json:"memory_check,omitempty"`
	WorkerID     string           `json:"worker_id,omitempty"`
	Version      string           `json:"version"`
	UptimeS      float64          `json:"uptime_s"`
	Error        string           `json:"error,omitempty"`
	Model        string           `json:"model,omitempty"`
	ModelName    string           `json:"model_name,omitempty"`
	ModelPath    string           `json:"model_path,omitempty"`
	Architecture string           `json:"architecture,omitempty"`
	QuantKind    string           `json:"quant_kind,omitempty"`
	Resident     bool             `json:"resident"`
	Device       string           `json:"device,omitempty"`
	// MemoryBytesUsed is the backend's memory by purpose, wherever it
	// lives (MemoryKind); VRAMBytesUsed repeats it on a GPU only.
	MemoryBytesUsed *memoryJSON     `json:"memory_bytes_used,omitempty"`
	VRAMBytesUsed   *memoryJSON     `json:"vram_bytes_used,omitempty"`
	MemoryKind      string          `json:"memory_kind,omitempty"` // "device" or "host": where memory_bytes_used lives
	TokenizerKind   string          `json:"tokenizer_kind,omitempty"`
	VocabSize       int             `json:"vocab_size,omitempty"`
	ContextLength   int             `json:"context_length,omitempty"`
	ModelContext    int             `json:"model_context_length,omitempty"`
	Slots           *slotsJSON      `json:"slots,omitempty"`
	Queue           *queueJSON      `json:"queue,omitempty"`
	KVBlocks        *kvBlocksJSON   `json:"kv_blocks,omitempty"`
	PrefixCache     *prefixJSON     `json:"prefix_cache,omitempty"`
	Requests        *inFlightHealth `json:"requests,omitempty"`
}

type memoryJSON struct {
	Weights     int64 `json:"weights"`
	KVCache     int64 `json:"kv_cache"`
	Activations int64 `json:"activations"`
	Workspace   int64 `json:"workspace"`
	Total       int64 `json:"total"`
}

type slotsJSON struct {
	Total  int `json:"total"`
	Active int `json:"active"`
	Idle   int `json:"idle"`
}

// kvBlocksJSON is the KV memory budget in blocks (engine.Stats): used by
// running sequences (and scoring), cached by the prefix cache (evicted
// when needed), free; used + cached + free = total. Paged: the caches are
// block tables over one pool of them (else one allocation a slot).
type kvBlocksJSON struct {
	Paged          bool   `json:"paged"`
	Total          int    `json:"total"`
	Used           int    `json:"used"`
	Cached         int    `json:"cached"`
	Free           int    `json:"free"`
	BlockPositions int    `json:"block_positions"`
	BlockBytes     int64  `json:"block_bytes"`
	BudgetBytes    int64  `json:"budget_bytes"` // 0: no limit
	BudgetSource   string `json:"budget_source"`
	Evicted        int64  `json:"evicted_total"`
}

// prefixJSON is the prefix cache's figures since the start
// (engine.Stats): requests that looked in it and those that found rows
// there, their prompt tokens and those taken from it, and the share of
// prompt tokens taken (hit_rate); its blocks are kv_blocks.cached.
type prefixJSON struct {
	Enabled      bool    `json:"enabled"`
	Lookups      int64   `json:"lookups"`
	Hits         int64   `json:"hits"`
	LookupTokens int64   `json:"lookup_tokens"`
	HitTokens    int64   `json:"hit_tokens"`
	HitRate      float64 `json:"hit_rate"`
	CachedBlocks int     `json:"cached_blocks"`
}

type queueJSON struct {
	Depth    int `json:"depth"`
	Capacity int `json:"capacity"`
}

type inFlightHealth struct {
	InFlight int `json:"in_flight"`
}

// handleHealth is GET /health: 503 while loading (or draining, or after a
// failed load), 200 with the model's facts once serving. With an API key
// configured, a request without it gets only {"status"}.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	h := healthResponse{WorkerID: s.cfg.WorkerID, Version: s.cfg.Version, UptimeS: time.Since(s.start).Seconds(), ModelPath: s.cfg.ModelPath}
	m := s.model.Load()
	status := http.StatusOK
	switch {
	case m == nil && s.loadErr.Load() != nil:
		h.Status, h.Error, status = "failed", *s.loadErr.Load(), http.StatusServiceUnavailable
	case m == nil:
		h.Status, status = "loading", http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	case s.draining.Load():
		h.Status, status = "draining", http.StatusServiceUnavailable
	case s.memWatch.Load() != nil && !s.memWatch.Load().Healthy():
		h.Status, h.Error, status = "unhealthy", s.memWatch.Load().Status().Reason, http.StatusServiceUnavailable
	default:
		h.Status = "ready"
	}
	if s.cfg.APIKey != "" && !s.authorized(r) {
		// Without the key, only whether the worker serves: no path, host
		// name or model details for whoever can reach the port.
		writeJSON(w, status, struct {
			Status string `json:"status"`
		}{h.Status})
		return
	}
	if m != nil {
		inf := s.info.Load()
		mem := s.memory()
		st := m.Stats()
		h.Model, h.ModelName, h.Architecture, h.QuantKind = inf.id, inf.name, inf.arch, inf.quant
		resident, err := m.Resident()
		h.Resident, h.Device, h.TokenizerKind = resident && err == nil, inf.device, inf.tokKind
		h.VocabSize, h.ContextLength, h.ModelContext = inf.vocab, inf.ctxLen, inf.modelCtxLen
		h.MemoryKind = "device"
		if inf.device == "cpu" {
			h.MemoryKind = "host"
		}
		h.MemoryBytesUsed = &memoryJSON{Weights: mem.Weights, KVCache: mem.KVCache, Activations: mem.Activations,
			Workspace: mem.Workspace, Total: mem.Weights + mem.KVCache + mem.Activations + mem.Workspace}
		if h.MemoryKind == "device" {
			h.VRAMBytesUsed = h.MemoryBytesUsed
		}
		h.Slots = &slotsJSON{Total: st.Slots, Active: st.Active, Idle: st.Slots - st.Active}
		h.Queue = &queueJSON{Depth: st.Queued, Capacity: m.Options().QueueSize}
		h.PrefixCache = &prefixJSON{Enabled: !m.Options().NoPrefixCache, Lookups: st.PrefixLookups, Hits: st.PrefixHits,
			LookupTokens: st.PrefixLookupTokens, HitTokens: st.PrefixHitTokens, HitRate: st.PrefixHitRate, CachedBlocks: st.KVBlocksCached}
		h.KVBlocks = &kvBlocksJSON{Paged: st.KVPaged, Total: st.KVBlocksTotal, Used: st.KVBlocksUsed, Cached: st.KVBlocksCached, Free: st.KVBlocksFree,
			BlockPositions: st.KVBlockPositions, BlockBytes: st.KVBlockBytes, BudgetBytes: st.KVMemory, BudgetSource: st.KVMemorySource,
			Evicted: st.KVEvictedBlocks}
		h.Requests = &inFlightHealth{InFlight: s.InFlight()}
	}
	if mw := s.memWatch.Load(); mw != nil {
		st := mw.Status()
		h.MemoryCheck = &st
	}
	writeJSON(w, status, h)
}
