package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"worker-orcd/engine"
	"worker-orcd/sample"
	"worker-orcd/tokenizer"
)

// OllamaVersion is the version of Ollama's API that GET /api/version
// reports: the one whose documentation this implementation follows.
const OllamaVersion = "0.12.0"

// ollamaDefaults are Ollama's sampling defaults: temperature 0.8, top-k
// 40, top-p 0.9, no min-p, repeat penalty 1.1 over the last 64 tokens.
func ollamaDefaults() sample.Params {
	p := sample.DefaultParams()
	p.Temperature, p.TopK, p.TopP, p.MinP, p.RepeatPenalty, p.RepeatLastN = 0.8, 40, 0.9, 0, 1.1, 64
	return p
}

// ollamaOptionsIgnored are Ollama options that set up the model or the
// runner (this worker's command-line flags decide those) or name samplers
// Ollama itself has dropped; they are accepted and have no effect.
var ollamaOptionsIgnored = map[string]bool{
	"numa": true, "num_ctx": true, "num_batch": true, "num_gpu": true, "main_gpu": true, "low_vram": true,
	"f16_kv": true, "logits_all": true, "vocab_only": true, "use_mmap": true, "use_mlock": true,
	"embedding_only": true, "num_thread": true, "num_keep": true, "penalize_newline": true,
	"mirostat_tau": true, "mirostat_eta": true, "num_gqa": true, "rope_frequency_base": true,
	"rope_frequency_scale": true,
}

// ollamaOptions is Ollama's options object: known names are checked and
// mapped to this worker's parameters; unknown names are ignored (as Ollama
// does), and so are the names in ollamaOptionsIgnored.
type ollamaOptions map[string]json.RawMessage

// number reads option name as a number; integral says it must be a whole
// number (Ollama accepts 40.0 for an integer option).
func (o ollamaOptions) number(name string, integral bool) (*float64, *apiError) {
	raw, ok := o[name]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, badRequest("options."+name, "want a number, got %.40s", raw)
	}
	if integral && (v != math.Trunc(v) || math.Abs(v) > 1<<53) {
		return nil, badRequest("options."+name, "want an integer, got %v", v)
	}
	return &v, nil
}

// sampling maps the options onto the shared sampling fields, the number of
// tokens to predict (0: up to the context) and the unknown names.
func (o ollamaOptions) sampling() (sampling, int, []string, *apiError) {
	var s sampling
	floats := []struct {
		name string
		dst  **float64
	}{
		{"temperature", &s.Temperature}, {"top_p", &s.TopP}, {"min_p", &s.MinP},
		{"repeat_penalty", &s.RepetitionPenalty}, {"presence_penalty", &s.PresencePenalty},
		{"frequency_penalty", &s.FrequencyPenalty},
	}
	for _, f := range floats {
		v, e := o.number(f.name, false)
		if e != nil {
			return s, 0, nil, e
		}
		*f.dst = v
	}
	ints := []struct {
		name string
		dst  **int
	}{{"top_k", &s.TopK}, {"repeat_last_n", &s.RepeatLastN}}
	for _, f := range ints {
		v, e := o.number(f.name, true)
		if e != nil {
			return s, 0, nil, e
		}
		if v != nil {
			n := int(*v)
			*f.dst = &n
		}
	}
	if v, e := o.number("seed", true); e != nil {
		return s, 0, nil, e
	} else if v != nil && *v >= 0 {
		s.Seed = &seedValue{set: true, v: uint64(*v)}
	}
	predict := 0
	if v, e := o.number("num_predict", true); e != nil {
		return s, 0, nil, e
	} else if v != nil {
		switch {
		case *v < -2:
			return s, 0, nil, badRequest("options.num_predict", "%v: want -1 (until the model stops), -2 (fill the context) or a positive count", *v)
		case *v > 0:
			predict = int(min(*v, math.MaxInt32))
		}
	}
	for name, neutral := range map[string]float64{"typical_p": 1, "tfs_z": 1, "mirostat": 0} {
		if v, e := o.number(name, false); e != nil {
			return s, 0, nil, e
		} else if v != nil && *v != neutral {
			return s, 0, nil, badRequest("options."+name, "%v is not supported (only %v, which turns it off)", *v, neutral)
		}
	}
	if raw, ok := o["stop"]; ok {
		if err := s.Stop.UnmarshalJSON(raw); err != nil {
			return s, 0, nil, badRequest("options.stop", "want a string or an array of strings")
		}
	}
	var unknown []string
	for name := range o {
		switch name {
		case "temperature", "top_p", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty",
			"top_k", "repeat_last_n", "seed", "num_predict", "typical_p", "tfs_z", "mirostat", "stop":
		default:
			if !ollamaOptionsIgnored[name] {
				unknown = append(unknown, name)
			}
		}
	}
	slices.Sort(unknown)
	return s, predict, unknown, nil
}

// ollamaCommon are the fields /api/generate and /api/chat share.
type ollamaCommon struct {
	Model       string          `json:"model"`
	Stream      *bool           `json:"stream"` // default true
	Format      json.RawMessage `json:"format"`
	KeepAlive   json.RawMessage `json:"keep_alive"` // accepted: the model stays loaded
	Think       json.RawMessage `json:"think"`
	Logprobs    bool            `json:"logprobs"`
	TopLogprobs int             `json:"top_logprobs"`
	Options     ollamaOptions   `json:"options"`
}

// check refuses what this worker cannot honour, and maps the options.
// ollamaRun is what the options and fields of a generation request ask.
type ollamaRun struct {
	p       sample.Params
	predict int // tokens to generate at most (0: up to the context)
	stop    []string
}

func (c *ollamaCommon) params(r *http.Request, vocab int) (ollamaRun, *apiError) {
	var run ollamaRun
	if t := string(bytes.TrimSpace(c.Think)); t != "" && t != "null" && t != "false" {
		return run, badRequest("think", "this worker does not separate thinking from the answer (think %.20s); leave think unset or false", t)
	}
	if c.TopLogprobs < 0 || c.TopLogprobs > engine.MaxTopLogprobs {
		return run, badRequest("top_logprobs", "%d is out of range: want 0 to %d", c.TopLogprobs, engine.MaxTopLogprobs)
	}
	smp, predict, unknown, e := c.Options.sampling()
	if e != nil {
		return run, e
	}
	if len(unknown) > 0 {
		info(r).log.Debug("ignored unknown Ollama options", "options", strings.Join(unknown, ","))
	}
	p, e := smp.params(ollamaDefaults())
	if e != nil {
		if e.Param != "" && !strings.HasPrefix(e.Param, "options.") {
			e.Param = "options." + e.Param
			e.Message = "options." + e.Message
		}
		return run, e
	}
	if e := checkBiasVocab(p, vocab); e != nil {
		return run, e
	}
	return ollamaRun{p: p, predict: predict, stop: smp.Stop}, nil
}

func (c *ollamaCommon) streaming() bool { return c.Stream == nil || *c.Stream }

// ollamaGenerateRequest is the body of POST /api/generate.
type ollamaGenerateRequest struct {
	Prompt   string   `json:"prompt"`
	Suffix   string   `json:"suffix"`
	System   string   `json:"system"`
	Template string   `json:"template"`
	Context  []int32  `json:"context"`
	Raw      bool     `json:"raw"`
	Images   []string `json:"images"`
	ollamaCommon
}

// ollamaMessage is a chat message of /api/chat.
type ollamaMessage struct {
	Role      string          `json:"role"`
	Content   string          `json:"content"`
	Thinking  string          `json:"thinking,omitempty"`
	Images    []string        `json:"images,omitempty"`
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
	ToolName  string          `json:"tool_name,omitempty"`
}

// ollamaChatRequest is the body of POST /api/chat.
type ollamaChatRequest struct {
	Messages []ollamaMessage `json:"messages"`
	Tools    json.RawMessage `json:"tools"`
	ollamaCommon
}

// ollamaStats are the statistics of a final message, durations in
// nanoseconds as Ollama gives them.
type ollamaStats struct {
	TotalDuration      int64 `json:"total_duration"`
	LoadDuration       int64 `json:"load_duration"`
	PromptEvalCount    int   `json:"prompt_eval_count"`
	PromptEvalDuration int64 `json:"prompt_eval_duration"`
	EvalCount          int   `json:"eval_count"`
	EvalDuration       int64 `json:"eval_duration"`
}

type ollamaLogprob struct {
	Token       string          `json:"token"`
	Logprob     float32         `json:"logprob"`
	Bytes       []int           `json:"bytes,omitempty"`
	TopLogprobs []ollamaLogprob `json:"top_logprobs,omitempty"`
}

// ollamaGenerateResponse is one line of /api/generate (or its answer).
type ollamaGenerateResponse struct {
	Model      string          `json:"model"`
	CreatedAt  string          `json:"created_at"`
	Response   string          `json:"response"`
	Done       bool            `json:"done"`
	DoneReason string          `json:"done_reason,omitempty"`
	Context    []int32         `json:"context,omitempty"`
	Logprobs   []ollamaLogprob `json:"logprobs,omitempty"`
	*ollamaStats
}

type ollamaChatResponse struct {
	Model      string          `json:"model"`
	CreatedAt  string          `json:"created_at"`
	Message    ollamaMessage   `json:"message"`
	Done       bool            `json:"done"`
	DoneReason string          `json:"done_reason,omitempty"`
	Logprobs   []ollamaLogprob `json:"logprobs,omitempty"`
	*ollamaStats
}

func ollamaTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func ollamaDoneReason(r engine.StopReason) string {
	if r == engine.StopLength {
		return "length"
	}
	return "stop"
}

func (s *Server) ollamaStatsOf(r *http.Request, res *engine.Result) *ollamaStats {
	t := res.Timings
	return &ollamaStats{TotalDuration: time.Since(info(r).start).Nanoseconds(), PromptEvalCount: res.PromptTokens,
		PromptEvalDuration: t.Prefill.Nanoseconds(), EvalCount: len(res.IDs), EvalDuration: t.Decode.Nanoseconds()}
}

// ndjsonWriter writes newline-delimited JSON, flushing each line.
type ndjsonWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
	enc *json.Encoder
}

func startNDJSON(w http.ResponseWriter) *ndjsonWriter {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	n := &ndjsonWriter{w: w, rc: http.NewResponseController(w)}
	n.enc = json.NewEncoder(&n.buf)
	n.enc.SetEscapeHTML(false)
	return n
}

func (n *ndjsonWriter) line(v any) error {
	n.buf.Reset()
	if err := n.enc.Encode(v); err != nil {
		return err
	}
	if _, err := n.w.Write(n.buf.Bytes()); err != nil {
		return err
	}
	return n.rc.Flush()
}

// ollamaTokenLogprob is a token's logprobs entry, when they were asked for.
func ollamaTokenLogprob(tok *tokenizer.Tokenizer, req engine.Request, t engine.Token) (ollamaLogprob, bool) {
	if !req.Logprobs || !reportable(tok, req, t) {
		return ollamaLogprob{}, false
	}
	text, b := pieceOf(tok, t.ID)
	lp := ollamaLogprob{Token: text, Logprob: t.Logprob, Bytes: b}
	for _, c := range t.Top {
		ct, cb := pieceOf(tok, c.ID)
		lp.TopLogprobs = append(lp.TopLogprobs, ollamaLogprob{Token: ct, Logprob: c.Logprob, Bytes: cb})
	}
	return lp, true
}

// ollamaLoaded answers a request with nothing to generate, as Ollama does
// when a client only wants the model loaded (done_reason "load").
func (s *Server) ollamaLoaded(w http.ResponseWriter, chat bool) {
	model, now := s.info.Load().id, ollamaTime(time.Now())
	if chat {
		writeJSON(w, http.StatusOK, ollamaChatResponse{Model: model, CreatedAt: now,
			Message: ollamaMessage{Role: "assistant"}, Done: true, DoneReason: "load"})
		return
	}
	writeJSON(w, http.StatusOK, ollamaGenerateResponse{Model: model, CreatedAt: now, Done: true, DoneReason: "load"})
}

// handleOllamaGenerate is POST /api/generate.
func (s *Server) handleOllamaGenerate(w http.ResponseWriter, r *http.Request) {
	// The body is read once the model is there (before, the answer is 503
	// loading) and always read: the generation below takes it as read.
	if s.model.Load() == nil {
		writeError(w, shapeOllama, s.notReady())
		return
	}
	var body ollamaGenerateRequest
	if e := s.decodeBodyLoose(w, r, &body); e != nil {
		writeError(w, shapeOllama, e)
		return
	}
	if body.Prompt == "" && len(body.Context) == 0 && body.Suffix == "" { // Ollama's way to load a model: answered as loaded
		if _, e := body.params(r, math.MaxInt32); e != nil {
			writeError(w, shapeOllama, e)
			return
		}
		s.ollamaLoaded(w, false)
		return
	}
	serveGeneration(s, w, r, shapeOllama, &body, func(m *engine.Model, _ *ollamaGenerateRequest) (*generation, *apiError) {
		req, e := s.ollamaGenerateToEngine(r, m, &body)
		if e != nil {
			return nil, e
		}
		return s.ollamaAnswer(w, r, m, req, body.streaming(), false), nil
	})
}

// handleOllamaChat is POST /api/chat.
func (s *Server) handleOllamaChat(w http.ResponseWriter, r *http.Request) {
	// The body is read once the model is there (before, the answer is 503
	// loading) and always read: the generation below takes it as read.
	if s.model.Load() == nil {
		writeError(w, shapeOllama, s.notReady())
		return
	}
	var body ollamaChatRequest
	if e := s.decodeBodyLoose(w, r, &body); e != nil {
		writeError(w, shapeOllama, e)
		return
	}
	if len(body.Messages) == 0 { // Ollama's way to load a model: answered as loaded
		if _, e := body.params(r, math.MaxInt32); e != nil {
			writeError(w, shapeOllama, e)
			return
		}
		s.ollamaLoaded(w, true)
		return
	}
	serveGeneration(s, w, r, shapeOllama, &body, func(m *engine.Model, _ *ollamaChatRequest) (*generation, *apiError) {
		req, e := s.ollamaChatToEngine(r, m, &body)
		if e != nil {
			return nil, e
		}
		return s.ollamaAnswer(w, r, m, req, body.streaming(), true), nil
	})
}

func (s *Server) ollamaGenerateToEngine(r *http.Request, m *engine.Model, b *ollamaGenerateRequest) (engine.Request, *apiError) {
	var req engine.Request
	tok := m.Tokenizer()
	run, e := b.params(r, tok.VocabSize())
	if e != nil {
		return req, e
	}
	switch {
	case b.Suffix != "":
		return req, badRequest("suffix", "fill-in-the-middle is not supported by this worker")
	case len(b.Images) > 0:
		return req, badRequest("images", "this worker reads text only")
	case b.Template != "":
		return req, badRequest("template", "a template of your own is not supported: apply it yourself and send the prompt with raw: true")
	case !utf8.ValidString(b.Prompt) || !utf8.ValidString(b.System):
		return req, badRequest("prompt", "is not valid UTF-8")
	}
	for i, id := range b.Context {
		if id < 0 || int(id) >= tok.VocabSize() {
			return req, badRequest("context", "token %d is id %d, outside the vocabulary [0, %d)", i, id, tok.VocabSize())
		}
	}
	var ids []int32
	var err error
	if b.Raw {
		ids, err = tok.Encode(b.Prompt, tokenizer.EncodeOptions{AddSpecial: len(b.Context) == 0, ParseSpecial: true})
	} else {
		var msgs []tokenizer.Message
		if b.System != "" {
			msgs = append(msgs, tokenizer.Message{Role: "system", Content: b.System})
		}
		msgs = append(msgs, tokenizer.Message{Role: "user", Content: b.Prompt})
		var prompt tokenizer.ChatPrompt
		ids, prompt, err = tok.EncodeChat(msgs, tokenizer.ChatOptions{AddGenerationPrompt: true})
		if err == nil && prompt.Warning != "" {
			s.chatWarn.Do(func() { info(r).log.Warn("chat template", "source", prompt.Source, "warning", prompt.Warning) })
		}
	}
	if err != nil {
		return req, badRequest("prompt", "%v", err)
	}
	req.Prompt = append(slices.Clone(b.Context), ids...)
	if len(req.Prompt) == 0 {
		return req, badRequest("prompt", "is empty: give some text to continue")
	}
	if req.Grammar, e = ollamaFormat(m, b.Format); e != nil {
		return req, e
	}
	return s.ollamaFinish(m, req, run, b.Logprobs, b.TopLogprobs)
}

func (s *Server) ollamaChatToEngine(r *http.Request, m *engine.Model, b *ollamaChatRequest) (engine.Request, *apiError) {
	var req engine.Request
	tok := m.Tokenizer()
	run, e := b.params(r, tok.VocabSize())
	if e != nil {
		return req, e
	}
	if t := string(bytes.TrimSpace(b.Tools)); t != "" && t != "null" && t != "[]" {
		return req, badRequest("tools", "tool calling is not supported by this worker")
	}
	if len(b.Messages) > maxChatEntries {
		return req, badRequest("messages", "%d messages: want at most %d", len(b.Messages), maxChatEntries)
	}
	msgs := make([]tokenizer.Message, len(b.Messages))
	for i, msg := range b.Messages {
		switch msg.Role {
		case "system", "user", "assistant", "tool":
		default:
			return req, badRequest("messages", "message %d has role %q: want system, user, assistant or tool", i, strings.ToValidUTF8(msg.Role, "?"))
		}
		if len(msg.Images) > 0 {
			return req, badRequest("messages", "message %d has images: this worker reads text only", i)
		}
		if !utf8.ValidString(msg.Content) {
			return req, badRequest("messages", "message %d is not valid UTF-8", i)
		}
		msgs[i] = tokenizer.Message{Role: msg.Role, Content: msg.Content}
	}
	ids, prompt, err := tok.EncodeChat(msgs, tokenizer.ChatOptions{AddGenerationPrompt: true})
	if err != nil {
		return req, badRequest("messages", "%v", err)
	}
	if prompt.Warning != "" {
		s.chatWarn.Do(func() { info(r).log.Warn("chat template", "source", prompt.Source, "warning", prompt.Warning) })
	}
	req.Prompt = ids
	if req.Grammar, e = ollamaFormat(m, b.Format); e != nil {
		return req, e
	}
	return s.ollamaFinish(m, req, run, b.Logprobs, b.TopLogprobs)
}

// ollamaFinish completes an engine request from Ollama's fields.
func (s *Server) ollamaFinish(m *engine.Model, req engine.Request, run ollamaRun, logprobs bool, top int) (engine.Request, *apiError) {
	ctx := m.Options().CtxLen
	if len(req.Prompt) >= ctx {
		return req, checkMaxTokens("options.num_predict", run.predict, len(req.Prompt), ctx, "prompt")
	}
	// Ollama stops at the context's end rather than refusing a count that
	// does not fit.
	req.MaxTokens = min(run.predict, ctx-len(req.Prompt))
	req.Params, req.Stop = run.p, run.stop
	if e := checkMaxTokens("options.num_predict", req.MaxTokens, len(req.Prompt), ctx, "prompt"); e != nil {
		return req, e
	}
	req.Logprobs, req.TopLogprobs = logprobs, 0
	if logprobs {
		req.TopLogprobs = top
	}
	return req, nil
}

// ollamaAnswer says how /api/generate (chat false) or /api/chat answers
// req: NDJSON lines then a final one with the statistics, or one object.
func (s *Server) ollamaAnswer(w http.ResponseWriter, r *http.Request, m *engine.Model, req engine.Request, stream, chat bool) *generation {
	tok := m.Tokenizer()
	prefix := "ollama-gen-"
	if chat {
		prefix = "ollama-chat-"
	}
	g := &generation{id: prefix + randomHex(12), req: req, promptParam: "prompt"}
	if chat {
		g.promptParam = "messages"
	}
	model := s.info.Load().id
	var probs []ollamaLogprob
	var out *ndjsonWriter
	// line writes one line (stream) of text with its logprobs.
	line := func(text string, lps []ollamaLogprob, done bool, res *engine.Result) any {
		now := ollamaTime(time.Now())
		if chat {
			c := ollamaChatResponse{Model: model, CreatedAt: now, Message: ollamaMessage{Role: "assistant", Content: text},
				Done: done, Logprobs: lps}
			if done {
				c.DoneReason, c.ollamaStats = ollamaDoneReason(res.StopReason), s.ollamaStatsOf(r, res)
			}
			return c
		}
		c := ollamaGenerateResponse{Model: model, CreatedAt: now, Response: text, Done: done, Logprobs: lps}
		if done {
			c.DoneReason, c.ollamaStats = ollamaDoneReason(res.StopReason), s.ollamaStatsOf(r, res)
			c.Context = append(slices.Clone(req.Prompt), res.IDs...)
		}
		return c
	}
	if !stream {
		g.token = func(_ int, t engine.Token) error {
			if lp, ok := ollamaTokenLogprob(tok, req, t); ok {
				probs = append(probs, lp)
			}
			return nil
		}
		g.done = func(rs []*engine.Result) { writeJSON(w, http.StatusOK, line(rs[0].Text, probs, true, rs[0])) }
		return g
	}
	g.begin = func() error {
		out = startNDJSON(w)
		return nil
	}
	g.token = func(_ int, t engine.Token) error {
		lp, ok := ollamaTokenLogprob(tok, req, t)
		if t.Text == "" && !ok {
			return nil
		}
		var lps []ollamaLogprob
		if ok {
			lps = []ollamaLogprob{lp}
		}
		return out.line(line(t.Text, lps, false, nil))
	}
	g.failed = func(e *apiError) { out.line(ollamaError{Error: e.Message}) }
	g.done = func(rs []*engine.Result) { out.line(line("", nil, true, rs[0])) }
	return g
}

// ollamaModelDetails is Ollama's details object of a model.
type ollamaModelDetails struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

func (inf *modelInfo) ollamaDetails() ollamaModelDetails {
	return ollamaModelDetails{Format: "gguf", Family: inf.arch, Families: []string{inf.arch},
		ParameterSize: humanCount(inf.params), QuantizationLevel: inf.quant}
}

// humanCount writes a parameter count as Ollama does: 494.03M, 7.6B.
func humanCount(n uint64) string {
	switch {
	case n >= 1e9:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", float64(n)/1e9), "0"), ".") + "B"
	case n >= 1e6:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", float64(n)/1e6), "0"), ".") + "M"
	case n >= 1e3:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", float64(n)/1e3), "0"), ".") + "K"
	}
	return fmt.Sprint(n)
}

// ollamaModel is an entry of /api/tags and /api/ps.
type ollamaModel struct {
	Name          string             `json:"name"`
	Model         string             `json:"model"`
	ModifiedAt    string             `json:"modified_at,omitempty"`
	Size          int64              `json:"size"`
	Digest        string             `json:"digest"`
	Details       ollamaModelDetails `json:"details"`
	ExpiresAt     string             `json:"expires_at,omitempty"`
	SizeVRAM      *int64             `json:"size_vram,omitempty"`
	ContextLength int                `json:"context_length,omitempty"`
}

// handleOllamaTags is GET /api/tags: the one model (none while loading).
// Its digest is empty: this worker does not hash the file.
func (s *Server) handleOllamaTags(w http.ResponseWriter, r *http.Request) {
	models := []ollamaModel{}
	if inf := s.info.Load(); inf != nil {
		models = append(models, ollamaModel{Name: inf.id, Model: inf.id, ModifiedAt: ollamaTime(inf.modified),
			Size: inf.fileSize, Details: inf.ollamaDetails()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": models})
}

// handleOllamaPS is GET /api/ps: the model, loaded for as long as the
// worker runs.
func (s *Server) handleOllamaPS(w http.ResponseWriter, r *http.Request) {
	models := []ollamaModel{}
	if inf := s.info.Load(); inf != nil && s.model.Load() != nil {
		mem := s.memory()
		total := mem.Weights + mem.KVCache + mem.Activations + mem.Workspace
		vram := int64(0)
		if inf.device != "cpu" {
			vram = total
		}
		models = append(models, ollamaModel{Name: inf.id, Model: inf.id, Size: total, Details: inf.ollamaDetails(),
			ExpiresAt: ollamaTime(s.start.AddDate(100, 0, 0)), SizeVRAM: &vram, ContextLength: inf.ctxLen})
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": models})
}

// handleOllamaVersion is GET /api/version.
func (s *Server) handleOllamaVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": OllamaVersion, "worker_orcd_version": s.cfg.Version})
}

// handleOllamaRoot is GET /: "Ollama is running", which clients probe.
func (s *Server) handleOllamaRoot(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte("Ollama is running"))
}

// ollamaShowRequest is the body of POST /api/show.
type ollamaShowRequest struct {
	Model   string        `json:"model"`
	Name    string        `json:"name"` // the older spelling
	Verbose bool          `json:"verbose"`
	System  string        `json:"system"`
	Options ollamaOptions `json:"options"`
}

// handleOllamaShow is POST /api/show: the model's details, its GGUF
// metadata (scalars; arrays too with verbose) and chat template.
func (s *Server) handleOllamaShow(w http.ResponseWriter, r *http.Request) {
	m := s.loadedModel(w, shapeOllama)
	if m == nil {
		return
	}
	var body ollamaShowRequest
	if e := s.decodeBodyLoose(w, r, &body); e != nil {
		writeError(w, shapeOllama, e)
		return
	}
	inf := s.info.Load()
	mi := map[string]any{"general.parameter_count": inf.params}
	for _, kv := range m.Model.File.KV {
		if kv.Value.Len() > 0 && !body.Verbose {
			continue // tokenizer vocabularies and the like
		}
		mi[kv.Key] = kv.Value.Any()
	}
	caps := []string{"completion"}
	if m.CanEmbed() == nil {
		caps = append(caps, "embedding")
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"license": "", "modelfile": "", "parameters": "", "system": "",
		"template":     m.Tokenizer().ChatTemplate(),
		"details":      inf.ollamaDetails(),
		"model_info":   mi,
		"capabilities": caps,
		"modified_at":  ollamaTime(inf.modified),
	})
}

// ollamaEmbedRequest is the body of POST /api/embed.
type ollamaEmbedRequest struct {
	Model      string          `json:"model"`
	Input      embedInput      `json:"input"`
	Truncate   *bool           `json:"truncate"` // default true: cut inputs to the context
	Dimensions *int            `json:"dimensions"`
	KeepAlive  json.RawMessage `json:"keep_alive"`
	Options    ollamaOptions   `json:"options"`
}

// handleOllamaEmbed is POST /api/embed: {"embeddings": [[…]]}, each the
// pooled, L2-normalised final hidden state (as /v1/embeddings).
func (s *Server) handleOllamaEmbed(w http.ResponseWriter, r *http.Request) {
	if s.model.Load() == nil {
		writeError(w, shapeOllama, s.notReady())
		return
	}
	var body ollamaEmbedRequest
	if e := s.decodeBodyLoose(w, r, &body); e != nil {
		writeError(w, shapeOllama, e)
		return
	}
	start := time.Now()
	vecs, tokens, e := s.embed(r, func(m *engine.Model) ([][]int32, *apiError) {
		if d := m.Model.Config.NEmbd; body.Dimensions != nil && *body.Dimensions != d {
			return nil, badRequest("dimensions", "%d: this model's embeddings have %d dimensions (no other size is offered)", *body.Dimensions, d)
		}
		return body.Input.truncated(m.Tokenizer(), m.Options().CtxLen, body.Truncate == nil || *body.Truncate)
	})
	if e != nil {
		writeError(w, shapeOllama, e)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"model": s.info.Load().id, "embeddings": vecs,
		"total_duration": time.Since(info(r).start).Nanoseconds(), "load_duration": 0,
		"prompt_eval_count": tokens, "prompt_eval_duration": time.Since(start).Nanoseconds()})
}

// ollamaEmbeddingsRequest is the body of POST /api/embeddings (Ollama's
// older endpoint: one prompt).
type ollamaEmbeddingsRequest struct {
	Model     string          `json:"model"`
	Prompt    string          `json:"prompt"`
	KeepAlive json.RawMessage `json:"keep_alive"`
	Options   ollamaOptions   `json:"options"`
}

// handleOllamaEmbeddings is POST /api/embeddings: {"embedding": […]}.
func (s *Server) handleOllamaEmbeddings(w http.ResponseWriter, r *http.Request) {
	if s.model.Load() == nil {
		writeError(w, shapeOllama, s.notReady())
		return
	}
	var body ollamaEmbeddingsRequest
	if e := s.decodeBodyLoose(w, r, &body); e != nil {
		writeError(w, shapeOllama, e)
		return
	}
	in := embedInput{texts: []string{body.Prompt}}
	vecs, _, e := s.embed(r, func(m *engine.Model) ([][]int32, *apiError) {
		return in.truncated(m.Tokenizer(), m.Options().CtxLen, true)
	})
	if e != nil {
		if e.Param == "input" {
			e.Param = "prompt"
		}
		writeError(w, shapeOllama, e)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"embedding": vecs[0]})
}
