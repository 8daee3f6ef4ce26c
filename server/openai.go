package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"worker-orcd/engine"
	"worker-orcd/sample"
	"worker-orcd/tokenizer"
)

// Fields shared by /v1/completions and /v1/chat/completions. Fields that
// OpenAI defines and this worker cannot honour are accepted only with their
// neutral value, so that a request is never silently answered differently.
type oaiCommon struct {
	Model         string         `json:"model"`
	MaxTokens     *int           `json:"max_tokens"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options"`
	N             *int           `json:"n"`
	// User is an end-user id for abuse monitoring: logged with the request.
	User string `json:"user"`
	sampling
	constraintFields
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
	// IncludeObfuscation is accepted and ignored (OpenAI pads chunks with
	// it; there is nothing to hide on a local worker).
	IncludeObfuscation *bool `json:"include_obfuscation"`
}

func (c *oaiCommon) check() *apiError {
	if c.N != nil && (*c.N < 1 || *c.N > maxChoices) {
		return badRequest("n", "%d choices asked: want 1 to %d", *c.N, maxChoices)
	}
	if c.StreamOptions != nil && !c.Stream {
		return badRequest("stream_options", "is only allowed when stream is true")
	}
	return nil
}

// choices is n: the choices asked for (serveGeneration takes up to one
// place per choice; check bounds it).
func (c *oaiCommon) choices() int {
	if c.N == nil {
		return 1
	}
	return *c.N
}

// oaiDefaults are the sampling defaults of the OpenAI endpoints: OpenAI's
// own (temperature 1, top_p 1, no other filter), so that a client that sets
// nothing gets what it would get from OpenAI.
func oaiDefaults() sample.Params {
	p := sample.DefaultParams()
	p.Temperature, p.TopK, p.TopP, p.MinP, p.RepeatPenalty = 1, 0, 1, 0, 1
	return p
}

// promptValue is /v1/completions' prompt: a string, an array of one string,
// an array of token ids, or an array of one array of token ids.
type promptValue struct {
	set  bool
	text *string
	ids  []int32
}

func (p *promptValue) UnmarshalJSON(b []byte) error {
	bad := &fieldError{"prompt", "want a string, an array of one string, or an array of token ids"}
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*p = promptValue{}
		return nil
	}
	var s string
	if json.Unmarshal(b, &s) == nil {
		*p = promptValue{set: true, text: &s}
		return nil
	}
	var raw []json.RawMessage
	if json.Unmarshal(b, &raw) != nil {
		return bad
	}
	if len(raw) == 0 {
		return &fieldError{"prompt", "is an empty array"}
	}
	t := bytes.TrimSpace(raw[0])
	switch t[0] {
	case '"', '[':
		if len(raw) > 1 {
			return &fieldError{"prompt", "holds several prompts: this worker answers one prompt per request (send one request per prompt; n asks for several completions of one prompt)"}
		}
		if t[0] == '"' {
			json.Unmarshal(t, &s)
			*p = promptValue{set: true, text: &s}
			return nil
		}
		var ids []int32
		if json.Unmarshal(t, &ids) != nil {
			return bad
		}
		*p = promptValue{set: true, ids: ids}
		return nil
	}
	var ids []int32
	if json.Unmarshal(b, &ids) != nil {
		return bad
	}
	*p = promptValue{set: true, ids: ids}
	return nil
}

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	Prompt   promptValue `json:"prompt"`
	Logprobs *int        `json:"logprobs"`
	Echo     bool        `json:"echo"`
	BestOf   *int        `json:"best_of"`
	Suffix   *string     `json:"suffix"`
	oaiCommon
}

// chatRequest is the body of POST /v1/chat/completions.
type chatRequest struct {
	Messages            []chatMessage   `json:"messages"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Logprobs            *bool           `json:"logprobs"`
	TopLogprobs         *int            `json:"top_logprobs"`
	ResponseFormat      *responseFormat `json:"response_format"`
	Tools               json.RawMessage `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls"`
	Store               *bool           `json:"store"`
	Metadata            map[string]any  `json:"metadata"`
	ServiceTier         *string         `json:"service_tier"`
	// ChatTemplateKwargs are extra variables for the chat template
	// (enable_thinking, …), as other OpenAI-compatible servers accept them.
	ChatTemplateKwargs map[string]any `json:"chat_template_kwargs"`
	oaiCommon
}

type chatMessage struct {
	Role       string          `json:"role"`
	Content    chatContent     `json:"content"`
	Name       string          `json:"name"`
	ToolCalls  json.RawMessage `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
	Refusal    *string         `json:"refusal"`
}

// chatContent is a message's content: a string, null, or an array of
// parts of which only {"type":"text","text":...} are supported.
type chatContent string

func (c *chatContent) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*c = ""
		return nil
	}
	var s string
	if json.Unmarshal(b, &s) == nil {
		*c = chatContent(s)
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(b, &parts) != nil {
		return &fieldError{"messages", "a message's content must be a string or an array of {\"type\":\"text\",\"text\":...} parts"}
	}
	var sb strings.Builder
	for i, p := range parts {
		if p.Type != "text" {
			return &fieldError{"messages", "content part of type " + strings.ToValidUTF8(p.Type, "?") + " is not supported: this worker reads text only"}
		}
		if i > 0 {
			sb.WriteByte('\n')
		}
		sb.WriteString(p.Text)
	}
	*c = chatContent(sb.String())
	return nil
}

// Response shapes.
type (
	oaiUsage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
		// PromptTokensDetails.CachedTokens: prompt tokens taken from the
		// prefix cache (--prefix-cache) instead of being computed.
		PromptTokensDetails struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	}
	completionChoice struct {
		Text         string       `json:"text"`
		Index        int          `json:"index"`
		Logprobs     *legacyProbs `json:"logprobs"`
		FinishReason *string      `json:"finish_reason"`
	}
	completionResponse struct {
		ID                string             `json:"id"`
		Object            string             `json:"object"`
		Created           int64              `json:"created"`
		Model             string             `json:"model"`
		SystemFingerprint string             `json:"system_fingerprint"`
		Choices           []completionChoice `json:"choices"`
		Usage             *oaiUsage          `json:"usage,omitempty"`
	}
	legacyProbs struct {
		Tokens        []string             `json:"tokens"`
		TokenLogprobs []float32            `json:"token_logprobs"`
		TopLogprobs   []map[string]float32 `json:"top_logprobs"`
		TextOffset    []int                `json:"text_offset"`
	}

	chatMessageOut struct {
		Role      string        `json:"role"`
		Content   string        `json:"content"`
		Refusal   *string       `json:"refusal"`
		ToolCalls []oaiToolCall `json:"tool_calls,omitempty"`
		noContent bool          // content is null (an answer of tool calls only)
	}
	chatChoice struct {
		Index        int            `json:"index"`
		Message      chatMessageOut `json:"message"`
		Logprobs     *chatLogprobs  `json:"logprobs"`
		FinishReason string         `json:"finish_reason"`
	}
	chatResponse struct {
		ID                string       `json:"id"`
		Object            string       `json:"object"`
		Created           int64        `json:"created"`
		Model             string       `json:"model"`
		SystemFingerprint string       `json:"system_fingerprint"`
		Choices           []chatChoice `json:"choices"`
		Usage             oaiUsage     `json:"usage"`
	}
	chatDelta struct {
		Role      string        `json:"role,omitempty"`
		Content   *string       `json:"content,omitempty"`
		ToolCalls []oaiToolCall `json:"tool_calls,omitempty"`
	}
	chatChunkChoice struct {
		Index        int           `json:"index"`
		Delta        chatDelta     `json:"delta"`
		Logprobs     *chatLogprobs `json:"logprobs"`
		FinishReason *string       `json:"finish_reason"`
	}
	chatChunk struct {
		ID                string            `json:"id"`
		Object            string            `json:"object"`
		Created           int64             `json:"created"`
		Model             string            `json:"model"`
		SystemFingerprint string            `json:"system_fingerprint"`
		Choices           []chatChunkChoice `json:"choices"`
		Usage             *oaiUsage         `json:"usage,omitempty"`
	}
	chatLogprobs struct {
		Content []chatTokenLogprob `json:"content"`
		Refusal []chatTokenLogprob `json:"refusal"`
	}
	chatTokenLogprob struct {
		Token       string           `json:"token"`
		Logprob     float32          `json:"logprob"`
		Bytes       []int            `json:"bytes"`
		TopLogprobs []chatTopLogprob `json:"top_logprobs"`
	}
	chatTopLogprob struct {
		Token   string  `json:"token"`
		Logprob float32 `json:"logprob"`
		Bytes   []int   `json:"bytes"`
	}
)

func finishReason(r engine.StopReason) string {
	if r == engine.StopLength {
		return "length"
	}
	return "stop"
}

// usageOf is the usage of a request's choices: the prompt counted once
// (with the tokens the first choice took from a cache: the other choices
// take the prompt from the first one's), the tokens of every choice.
func usageOf(rs []*engine.Result) oaiUsage {
	u := oaiUsage{PromptTokens: rs[0].PromptTokens}
	for _, res := range rs {
		u.CompletionTokens += len(res.IDs)
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	u.PromptTokensDetails.CachedTokens = rs[0].CachedTokens
	return u
}

// pieceOf is a token's text for logprobs and its exact bytes.
func pieceOf(tok *tokenizer.Tokenizer, id int32) (string, []int) {
	b, _ := tok.Piece(id)
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), out
}

// reportable says whether a token belongs in logprobs: the end-of-generation
// token that stopped the run does not (OpenAI does not list it).
func reportable(tok *tokenizer.Tokenizer, req engine.Request, t engine.Token) bool {
	return req.IgnoreEOS || !tok.IsEOG(t.ID)
}

func (s *Server) fingerprint() string { return "worker-orcd-" + s.cfg.Version }

// handleCompletions is POST /v1/completions.
func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	serveGeneration(s, w, r, shapeOpenAI, nil, func(m *engine.Model, body *completionRequest) (*generation, *apiError) {
		req, e := s.completionToEngine(r, m, body)
		if e != nil {
			return nil, e
		}
		return s.completionAnswer(w, m, body, req), nil
	})
}

// completionAnswer says how /v1/completions answers req: one JSON object,
// or chunks of text_completion objects; each of the n choices has its index.
func (s *Server) completionAnswer(w http.ResponseWriter, m *engine.Model, body *completionRequest, req engine.Request) *generation {
	tok := m.Tokenizer()
	n := body.choices()
	g := &generation{id: "cmpl-" + randomHex(12), req: req, promptParam: "prompt", n: n}
	created := time.Now().Unix()
	model := s.info.Load().id
	wantProbs := body.Logprobs != nil

	offsets := make([]int, n) // each choice's text offset so far
	addProbs := func(lp *legacyProbs, choice int, t engine.Token) {
		if !wantProbs || !reportable(tok, req, t) {
			return
		}
		text, _ := pieceOf(tok, t.ID)
		lp.Tokens = append(lp.Tokens, text)
		lp.TokenLogprobs = append(lp.TokenLogprobs, t.Logprob)
		top := map[string]float32{}
		for _, c := range t.Top {
			ct, _ := pieceOf(tok, c.ID)
			if _, dup := top[ct]; !dup {
				top[ct] = c.Logprob
			}
		}
		lp.TopLogprobs = append(lp.TopLogprobs, top)
		lp.TextOffset = append(lp.TextOffset, offsets[choice])
		offsets[choice] += len(t.Text)
	}
	newProbs := func() *legacyProbs {
		if !wantProbs {
			return nil
		}
		return &legacyProbs{Tokens: []string{}, TokenLogprobs: []float32{}, TopLogprobs: []map[string]float32{}, TextOffset: []int{}}
	}

	if !body.Stream {
		probs := make([]*legacyProbs, n)
		for i := range probs {
			probs[i] = newProbs()
		}
		g.token = func(i int, t engine.Token) error {
			if probs[i] != nil {
				addProbs(probs[i], i, t)
			}
			return nil
		}
		g.done = func(rs []*engine.Result) {
			choices := make([]completionChoice, len(rs))
			for i, res := range rs {
				fr := finishReason(res.StopReason)
				choices[i] = completionChoice{Text: res.Text, Index: i, Logprobs: probs[i], FinishReason: &fr}
			}
			u := usageOf(rs)
			writeJSON(w, http.StatusOK, completionResponse{ID: g.id, Object: "text_completion", Created: created, Model: model,
				SystemFingerprint: s.fingerprint(), Usage: &u, Choices: choices})
		}
		return g
	}

	includeUsage := body.StreamOptions != nil && body.StreamOptions.IncludeUsage
	var sse *sseWriter
	chunk := func(c completionChoice, usage *oaiUsage, last bool) error {
		ch := completionResponse{ID: g.id, Object: "text_completion", Created: created, Model: model,
			SystemFingerprint: s.fingerprint(), Choices: []completionChoice{c}}
		if last {
			ch.Choices = []completionChoice{}
		}
		if !includeUsage {
			return sse.event("", ch)
		}
		// With include_usage every chunk carries "usage": null but the last.
		return sse.event("", struct {
			completionResponse
			Usage *oaiUsage `json:"usage"`
		}{ch, usage})
	}
	g.begin = func() error {
		sse = startSSE(w)
		return nil
	}
	g.token = func(i int, t engine.Token) error {
		lp := newProbs()
		if lp != nil {
			addProbs(lp, i, t)
			if len(lp.Tokens) == 0 && t.Text == "" {
				return nil
			}
		} else if t.Text == "" {
			return nil
		}
		return chunk(completionChoice{Text: t.Text, Index: i, Logprobs: lp}, nil, false)
	}
	g.end = func(i int, res *engine.Result) error {
		fr := finishReason(res.StopReason)
		return chunk(completionChoice{Text: "", Index: i, FinishReason: &fr}, nil, false)
	}
	g.failed = func(e *apiError) { s.streamError(sse, e) }
	g.done = func(rs []*engine.Result) {
		if includeUsage {
			u := usageOf(rs)
			if chunk(completionChoice{}, &u, true) != nil {
				return
			}
		}
		sse.event("", "[DONE]")
	}
	return g
}

// streamError ends an OpenAI stream with an error chunk (the openai clients
// raise it as an APIError); no [DONE] follows.
func (s *Server) streamError(sse *sseWriter, e *apiError) {
	sse.event("", struct {
		Error oaiError `json:"error"`
	}{e.openai()})
}

func (s *Server) completionToEngine(r *http.Request, m *engine.Model, b *completionRequest) (engine.Request, *apiError) {
	var req engine.Request
	info(r).user = b.User
	if e := b.check(); e != nil {
		return req, e
	}
	if b.Echo {
		return req, badRequest("echo", "is not supported (only false)")
	}
	if b.BestOf != nil && *b.BestOf != 1 {
		return req, badRequest("best_of", "is not supported (only 1)")
	}
	if b.Suffix != nil && *b.Suffix != "" {
		return req, badRequest("suffix", "is not supported")
	}
	ga, e := b.constraintFields.automaton(m)
	if e != nil {
		return req, e
	}
	req.Grammar = ga
	p, e := b.params(oaiDefaults())
	if e != nil {
		return req, e
	}
	if e := checkBiasVocab(p, m.Tokenizer().VocabSize()); e != nil {
		return req, e
	}
	if b.Logprobs != nil {
		if *b.Logprobs < 0 || *b.Logprobs > engine.MaxTopLogprobs {
			return req, badRequest("logprobs", "%d is out of range: want 0 to %d", *b.Logprobs, engine.MaxTopLogprobs)
		}
		req.Logprobs, req.TopLogprobs = true, *b.Logprobs
	}
	tok := m.Tokenizer()
	switch {
	case !b.Prompt.set:
		return req, badRequest("prompt", "missing: give the text to continue")
	case b.Prompt.ids != nil:
		if len(b.Prompt.ids) == 0 {
			return req, badRequest("prompt", "is an empty array of token ids")
		}
		for i, id := range b.Prompt.ids {
			if id < 0 || int(id) >= tok.VocabSize() {
				return req, badRequest("prompt", "token %d is id %d, outside the vocabulary [0, %d)", i, id, tok.VocabSize())
			}
		}
		req.Prompt = b.Prompt.ids
	default:
		ids, err := tok.Encode(*b.Prompt.text, tokenizer.EncodeOptions{AddSpecial: true})
		if err != nil {
			return req, badRequest("prompt", "%v", err)
		}
		if len(ids) == 0 {
			return req, badRequest("prompt", "is empty: give some text to continue")
		}
		req.Prompt = ids
	}
	req.MaxTokens = 16 // OpenAI's default for completions
	if b.MaxTokens != nil {
		if *b.MaxTokens < 1 {
			return req, badRequest("max_tokens", "%d: want at least 1", *b.MaxTokens)
		}
		req.MaxTokens = *b.MaxTokens
	}
	if e := checkMaxTokens("max_tokens", req.MaxTokens, len(req.Prompt), m.Options().CtxLen, "prompt"); e != nil {
		return req, e
	}
	req.Params, req.Stop, req.IgnoreEOS, req.NoPrefixCache = p, b.Stop, b.IgnoreEOS, b.noPrefixCache()
	return req, nil
}

// handleChat is POST /v1/chat/completions.
func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	serveGeneration(s, w, r, shapeOpenAI, nil, func(m *engine.Model, body *chatRequest) (*generation, *apiError) {
		req, tools, e := s.chatToEngine(r, m, body)
		if e != nil {
			return nil, e
		}
		return s.chatAnswer(w, m, body, req, tools), nil
	})
}

// chatAnswer says how /v1/chat/completions answers req: one
// chat.completion object, or chat.completion.chunk objects; each of the n
// choices has its index, and its own tool-call parser.
func (s *Server) chatAnswer(w http.ResponseWriter, m *engine.Model, body *chatRequest, req engine.Request, tools *toolSetup) *generation {
	tok := m.Tokenizer()
	n := body.choices()
	g := &generation{id: "chatcmpl-" + randomHex(12), req: req, promptParam: "messages", n: n}
	created := time.Now().Unix()
	model := s.info.Load().id
	wantProbs := req.Logprobs
	entry := func(t engine.Token) (chatTokenLogprob, bool) {
		if !wantProbs || !reportable(tok, req, t) {
			return chatTokenLogprob{}, false
		}
		text, b := pieceOf(tok, t.ID)
		e := chatTokenLogprob{Token: text, Logprob: t.Logprob, Bytes: b, TopLogprobs: []chatTopLogprob{}}
		for _, c := range t.Top {
			ct, cb := pieceOf(tok, c.ID)
			e.TopLogprobs = append(e.TopLogprobs, chatTopLogprob{Token: ct, Logprob: c.Logprob, Bytes: cb})
		}
		return e, true
	}
	parsers := make([]*toolParser, n) // each choice's tool calls (nil: not parsed)
	if tools != nil && tools.parse {
		for i := range parsers {
			parsers[i] = &toolParser{ts: tools}
		}
	}

	if !body.Stream {
		probs := make([]*chatLogprobs, n)
		contents := make([]strings.Builder, n)
		calls := make([][]oaiToolCall, n)
		if wantProbs {
			for i := range probs {
				probs[i] = &chatLogprobs{Content: []chatTokenLogprob{}}
			}
		}
		g.token = func(i int, t engine.Token) error {
			if e, ok := entry(t); ok {
				probs[i].Content = append(probs[i].Content, e)
			}
			if tp := parsers[i]; tp != nil {
				c, cs := tp.feed(t.Text)
				contents[i].WriteString(c)
				calls[i] = append(calls[i], cs...)
			}
			return nil
		}
		g.done = func(rs []*engine.Result) {
			choices := make([]chatChoice, len(rs))
			for i, res := range rs {
				msg := chatMessageOut{Role: "assistant", Content: res.Text}
				fr := finishReason(res.StopReason)
				if tp := parsers[i]; tp != nil {
					contents[i].WriteString(tp.flush())
					msg.Content = contents[i].String()
					if cs := calls[i]; len(cs) > 0 {
						for k := range cs {
							cs[k].Index = nil
						}
						msg.ToolCalls = cs
						msg.noContent = msg.Content == ""
					}
					fr = tp.finish(fr)
				}
				choices[i] = chatChoice{Index: i, Message: msg, Logprobs: probs[i], FinishReason: fr}
			}
			writeJSON(w, http.StatusOK, chatResponse{ID: g.id, Object: "chat.completion", Created: created, Model: model,
				SystemFingerprint: s.fingerprint(), Usage: usageOf(rs), Choices: choices})
		}
		return g
	}

	includeUsage := body.StreamOptions != nil && body.StreamOptions.IncludeUsage
	var sse *sseWriter
	chunk := func(c chatChunkChoice, usage *oaiUsage, last bool) error {
		ch := chatChunk{ID: g.id, Object: "chat.completion.chunk", Created: created, Model: model,
			SystemFingerprint: s.fingerprint(), Choices: []chatChunkChoice{c}}
		if last {
			ch.Choices = []chatChunkChoice{}
		}
		if !includeUsage {
			return sse.event("", ch)
		}
		// With include_usage every chunk carries "usage": null but the last.
		return sse.event("", struct {
			chatChunk
			Usage *oaiUsage `json:"usage"`
		}{ch, usage})
	}
	g.begin = func() error {
		sse = startSSE(w)
		empty := ""
		for i := range n {
			if err := chunk(chatChunkChoice{Index: i, Delta: chatDelta{Role: "assistant", Content: &empty}}, nil, false); err != nil {
				return err
			}
		}
		return nil
	}
	g.token = func(i int, t engine.Token) error {
		c := chatChunkChoice{Index: i}
		text := t.Text
		var calls []oaiToolCall
		if tp := parsers[i]; tp != nil {
			text, calls = tp.feed(t.Text)
		}
		if e, ok := entry(t); ok {
			c.Logprobs = &chatLogprobs{Content: []chatTokenLogprob{e}}
		} else if text == "" && len(calls) == 0 {
			return nil
		}
		if text != "" || len(calls) == 0 {
			c.Delta.Content = &text
		}
		c.Delta.ToolCalls = calls
		return chunk(c, nil, false)
	}
	g.end = func(i int, res *engine.Result) error {
		fr := finishReason(res.StopReason)
		if tp := parsers[i]; tp != nil {
			if rest := tp.flush(); rest != "" {
				if err := chunk(chatChunkChoice{Index: i, Delta: chatDelta{Content: &rest}}, nil, false); err != nil {
					return err
				}
			}
			fr = tp.finish(fr)
		}
		return chunk(chatChunkChoice{Index: i, FinishReason: &fr}, nil, false)
	}
	g.failed = func(e *apiError) { s.streamError(sse, e) }
	g.done = func(rs []*engine.Result) {
		if includeUsage {
			u := usageOf(rs)
			if chunk(chatChunkChoice{}, &u, true) != nil {
				return
			}
		}
		sse.event("", "[DONE]")
	}
	return g
}

func (s *Server) chatToEngine(r *http.Request, m *engine.Model, b *chatRequest) (req engine.Request, tools *toolSetup, _ *apiError) {
	info(r).user = b.User
	if e := b.check(); e != nil {
		return req, nil, e
	}
	tools, e := parseTools(b.Tools, b.ToolChoice)
	if e != nil {
		return req, nil, e
	}
	ga, e := b.ResponseFormat.automaton(m)
	if e != nil {
		return req, nil, e
	}
	if tools.constrained() {
		if ga != nil || b.Grammar != nil || present(b.JSONSchema) {
			return req, nil, badRequest("tool_choice", "%s asks for tool calls: leave out response_format, grammar and json_schema", tools.choice)
		}
		if ga, e = tools.automaton(m, b.ParallelToolCalls == nil || *b.ParallelToolCalls); e != nil {
			return req, nil, e
		}
	}
	if ga != nil && (b.Grammar != nil || present(b.JSONSchema)) {
		return req, nil, badRequest("response_format", "give response_format or grammar/json_schema, not both")
	}
	if ga == nil {
		if ga, e = b.constraintFields.automaton(m); e != nil {
			return req, nil, e
		}
	}
	req.Grammar = ga
	p, e := b.params(oaiDefaults())
	if e != nil {
		return req, nil, e
	}
	if e := checkBiasVocab(p, m.Tokenizer().VocabSize()); e != nil {
		return req, nil, e
	}
	if b.Logprobs != nil && *b.Logprobs {
		req.Logprobs = true
	}
	if b.TopLogprobs != nil {
		if !req.Logprobs {
			return req, nil, badRequest("top_logprobs", "needs logprobs: true")
		}
		if *b.TopLogprobs < 0 || *b.TopLogprobs > engine.MaxTopLogprobs {
			return req, nil, badRequest("top_logprobs", "%d is out of range: want 0 to %d", *b.TopLogprobs, engine.MaxTopLogprobs)
		}
		req.TopLogprobs = *b.TopLogprobs
	}
	if len(b.Messages) == 0 {
		return req, nil, badRequest("messages", "missing or empty: give at least one message")
	}
	if len(b.Messages) > maxChatEntries {
		return req, nil, badRequest("messages", "%d messages: want at most %d", len(b.Messages), maxChatEntries)
	}
	for _, name := range tokenizer.ReservedChatVars {
		if _, ok := b.ChatTemplateKwargs[name]; ok {
			return req, nil, badRequest("chat_template_kwargs", "%q is set by the worker and cannot be given here (reserved: %s); send messages in the messages field",
				name, strings.Join(tokenizer.ReservedChatVars, ", "))
		}
	}
	msgs := make([]tokenizer.Message, len(b.Messages))
	toolTurns := false
	for i, msg := range b.Messages {
		role := msg.Role
		switch role {
		case "system", "user", "assistant", "tool":
		case "developer":
			role = "system"
		default:
			return req, nil, badRequest("messages", "message %d has role %q: want system, developer, user, assistant or tool", i, strings.ToValidUTF8(role, "?"))
		}
		if !utf8.ValidString(string(msg.Content)) {
			return req, nil, badRequest("messages", "message %d is not valid UTF-8", i)
		}
		calls, e := parseMessageToolCalls(i, msg.ToolCalls)
		if e != nil {
			return req, nil, e
		}
		msgs[i] = tokenizer.Message{Role: role, Content: string(msg.Content), ToolCalls: calls, ToolCallID: msg.ToolCallID, Name: msg.Name}
		toolTurns = toolTurns || len(calls) > 0 || role == "tool"
	}
	tok := m.Tokenizer()
	chatOpts := tokenizer.ChatOptions{AddGenerationPrompt: true, Vars: b.ChatTemplateKwargs}
	switch {
	case templateRendersTools(tok.ChatTemplate()):
		chatOpts.Tools = tools.render
	case tools.render != nil || toolTurns:
		msgs = withoutToolTemplate(msgs, tools.render)
	}
	ids, prompt, err := tok.EncodeChat(msgs, chatOpts)
	if err != nil {
		return req, nil, badRequest("messages", "%v", err)
	}
	if prompt.Warning != "" {
		s.chatWarn.Do(func() { info(r).log.Warn("chat template", "source", prompt.Source, "warning", prompt.Warning) })
	}
	req.Prompt = ids
	if b.MaxTokens != nil && b.MaxCompletionTokens != nil && *b.MaxTokens != *b.MaxCompletionTokens {
		return req, nil, badRequest("max_completion_tokens", "max_tokens and max_completion_tokens differ: give one")
	}
	name, mt := "max_tokens", b.MaxTokens
	if b.MaxCompletionTokens != nil {
		name, mt = "max_completion_tokens", b.MaxCompletionTokens
	}
	if mt != nil {
		if *mt < 1 {
			return req, nil, badRequest(name, "%d: want at least 1", *mt)
		}
		req.MaxTokens = *mt
	}
	if e := checkMaxTokens(name, req.MaxTokens, len(req.Prompt), m.Options().CtxLen, "messages"); e != nil {
		return req, nil, e
	}
	req.Params, req.Stop, req.IgnoreEOS, req.NoPrefixCache = p, b.Stop, b.IgnoreEOS, b.noPrefixCache()
	return req, tools, nil
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *Server) modelObject() (modelObject, bool) {
	inf := s.info.Load()
	if inf == nil {
		return modelObject{}, false
	}
	return modelObject{ID: inf.id, Object: "model", Created: inf.created, OwnedBy: "worker-orcd"}, true
}

// handleModels is GET /v1/models: the one model this worker serves (an
// empty list while it loads).
func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	data := []modelObject{}
	if mo, ok := s.modelObject(); ok {
		data = append(data, mo)
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

// handleModel is GET /v1/models/{id}.
func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/v1/models/")
	mo, ok := s.modelObject()
	if !ok || id != mo.ID {
		writeError(w, shapeOpenAI, &apiError{Status: http.StatusNotFound, Code: CodeNotFound, Param: "model",
			Message: "the model " + id + " does not exist on this worker", OAICode: "model_not_found"})
		return
	}
	writeJSON(w, http.StatusOK, mo)
}
