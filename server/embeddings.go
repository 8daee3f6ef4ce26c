package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"worker-orcd/engine"
	"worker-orcd/tokenizer"
)

// maxEmbedInputs bounds the inputs of one embeddings request (OpenAI's
// limit).
const maxEmbedInputs = 2048

// embedInput is OpenAI's embeddings input: a string, an array of strings,
// an array of token ids, or an array of arrays of token ids.
type embedInput struct {
	texts []string
	ids   [][]int32
}

func (in *embedInput) UnmarshalJSON(b []byte) error {
	bad := &fieldError{"input", "want a string, an array of strings, an array of token ids or an array of arrays of token ids"}
	b = bytes.TrimSpace(b)
	var s string
	if json.Unmarshal(b, &s) == nil {
		*in = embedInput{texts: []string{s}}
		return nil
	}
	var raw []json.RawMessage
	if json.Unmarshal(b, &raw) != nil || len(raw) == 0 {
		if len(raw) == 0 && len(b) > 0 && b[0] == '[' {
			return &fieldError{"input", "is an empty array"}
		}
		return bad
	}
	switch bytes.TrimSpace(raw[0])[0] {
	case '"':
		var ss []*string
		if json.Unmarshal(b, &ss) != nil {
			return bad
		}
		*in = embedInput{}
		for _, p := range ss {
			if p == nil {
				return bad // a null is not an empty text
			}
			in.texts = append(in.texts, *p)
		}
	case '[':
		var ids [][]*int32
		if json.Unmarshal(b, &ids) != nil {
			return bad
		}
		*in = embedInput{}
		for _, row := range ids {
			r, ok := derefIDs(row)
			if !ok {
				return bad
			}
			in.ids = append(in.ids, r)
		}
	default:
		var ids []*int32
		if json.Unmarshal(b, &ids) != nil {
			return bad
		}
		r, ok := derefIDs(ids)
		if !ok {
			return bad
		}
		*in = embedInput{ids: [][]int32{r}}
	}
	return nil
}

// derefIDs is ids without the pointers; false when one is null (a null id
// is not token 0).
func derefIDs(ids []*int32) ([]int32, bool) {
	out := make([]int32, len(ids))
	for i, p := range ids {
		if p == nil {
			return nil, false
		}
		out[i] = *p
	}
	return out, true
}

// len is the number of inputs.
func (in *embedInput) len() int { return len(in.texts) + len(in.ids) }

// tokens encodes the inputs (BOS/EOS as the model asks, as llama.cpp does
// for embeddings) and checks them; an input longer than the context is
// refused.
func (in *embedInput) tokens(tok *tokenizer.Tokenizer, ctxLen int) ([][]int32, *apiError) {
	return in.encode(tok, ctxLen, false)
}

// truncated is tokens, but with truncate an input longer than the context
// keeps its first tokens instead (Ollama's truncate).
func (in *embedInput) truncated(tok *tokenizer.Tokenizer, ctxLen int, truncate bool) ([][]int32, *apiError) {
	return in.encode(tok, ctxLen, truncate)
}

func (in *embedInput) encode(tok *tokenizer.Tokenizer, ctxLen int, truncate bool) ([][]int32, *apiError) {
	const param = "input"
	n := in.len()
	switch {
	case n == 0:
		return nil, badRequest(param, "missing: give the text to embed")
	case n > maxEmbedInputs:
		return nil, badRequest(param, "%d inputs: want at most %d", n, maxEmbedInputs)
	}
	out := make([][]int32, 0, n)
	for i, t := range in.texts {
		if t == "" {
			return nil, badRequest(param, "input %d is an empty string", i)
		}
		if !utf8.ValidString(t) {
			return nil, badRequest(param, "input %d is not valid UTF-8", i)
		}
		ids, err := tok.Encode(t, tokenizer.EncodeOptions{AddSpecial: true})
		if err != nil {
			return nil, badRequest(param, "input %d: %v", i, err)
		}
		out = append(out, ids)
	}
	for i, ids := range in.ids {
		if len(ids) == 0 {
			return nil, badRequest(param, "input %d is an empty array of token ids", i)
		}
		for j, id := range ids {
			if id < 0 || int(id) >= tok.VocabSize() {
				return nil, badRequest(param, "input %d token %d is id %d, outside the vocabulary [0, %d)", i, j, id, tok.VocabSize())
			}
		}
		out = append(out, ids)
	}
	for i, ids := range out {
		if len(ids) > ctxLen && truncate {
			out[i] = ids[:ctxLen]
		} else if len(ids) > ctxLen {
			e := &engine.ContextLengthError{Length: len(ids), Max: ctxLen, PromptTokens: len(ids)}
			return nil, &apiError{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Param: param, OAICode: "context_length_exceeded",
				Message: "input " + itoa(i) + ": " + e.Error()}
		}
	}
	return out, nil
}

// embed runs every input through the engine, up to the slots' number at
// once (one place each, taken from the queue's budget, so that the engine's
// queue cannot overflow), and returns the vectors in input order with the
// prompt tokens in all. Checks first that the backend computes embeddings.
func (s *Server) embed(r *http.Request, inputs func(*engine.Model) ([][]int32, *apiError)) ([][]float32, int, *apiError) {
	m := s.model.Load()
	if m == nil {
		return nil, 0, s.notReady()
	}
	if err := m.CanEmbed(); err != nil {
		return nil, 0, engineError(err, nil, "input")
	}
	ids, e := inputs(m)
	if e != nil {
		return nil, 0, e
	}
	workers := min(len(ids), m.Options().Parallel)
	pool := s.info.Load().pooling
	m, release, e := s.acquireN(workers)
	if e != nil {
		return nil, 0, e
	}
	defer release()
	ri := info(r)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	start := time.Now()
	out := make([][]float32, len(ids))
	errs := make([]error, len(ids))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				res, err := m.Embed(ctx, ids[i], pool)
				if err != nil {
					errs[i] = err
					cancel() // the request fails: stop the rest
					continue
				}
				out[i] = res.Embedding
			}
		})
	}
feed:
	for i := range ids {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	release()
	tokens := 0
	for _, x := range ids {
		tokens += len(x)
	}
	s.met.prompt.WithLabelValues(s.modelLabel()).Add(float64(tokens))
	s.met.duration.WithLabelValues(ri.endpoint, s.modelLabel()).Observe(time.Since(start).Seconds())
	fail := func(err error) ([][]float32, int, *apiError) {
		ae := engineError(err, context.Cause(r.Context()), "input")
		ri.outcome = outcomeFor(ae.Status)
		if ae.Code == CodeCancelled {
			ri.outcome = outcomeCancelled
		}
		return nil, 0, ae
	}
	if r.Context().Err() != nil { // the client went away
		return fail(engine.ErrCancelled)
	}
	// The first real failure (the others were cancelled because of it).
	var first error
	for _, err := range errs {
		if err != nil && (first == nil || errors.Is(first, engine.ErrCancelled)) {
			first = err
		}
	}
	if first != nil {
		return fail(first)
	}
	return out, tokens, nil
}

// embeddingsRequest is the body of POST /v1/embeddings.
type embeddingsRequest struct {
	Model          string     `json:"model"`
	Input          embedInput `json:"input"`
	EncodingFormat string     `json:"encoding_format"`
	Dimensions     *int       `json:"dimensions"`
	User           string     `json:"user"`
}

type embeddingObject struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32, or a base64 string
}

type embeddingsResponse struct {
	Object string            `json:"object"`
	Data   []embeddingObject `json:"data"`
	Model  string            `json:"model"`
	Usage  struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// handleEmbeddings is POST /v1/embeddings.
func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) {
	if s.model.Load() == nil {
		writeError(w, shapeOpenAI, s.notReady())
		return
	}
	var body embeddingsRequest
	if e := s.decodeBody(w, r, &body); e != nil {
		writeError(w, shapeOpenAI, e)
		return
	}
	info(r).user = body.User
	switch body.EncodingFormat {
	case "", "float", "base64":
	default:
		writeError(w, shapeOpenAI, badRequest("encoding_format", "%.40q: want float or base64", body.EncodingFormat))
		return
	}
	vecs, tokens, e := s.embed(r, func(m *engine.Model) ([][]int32, *apiError) {
		if d := m.Model.Config.NEmbd; body.Dimensions != nil && *body.Dimensions != d {
			return nil, badRequest("dimensions", "%d: this model's embeddings have %d dimensions (no other size is offered)", *body.Dimensions, d)
		}
		return body.Input.tokens(m.Tokenizer(), m.Options().CtxLen)
	})
	if e != nil {
		writeError(w, shapeOpenAI, e)
		return
	}
	resp := embeddingsResponse{Object: "list", Model: s.info.Load().id, Data: make([]embeddingObject, len(vecs))}
	for i, v := range vecs {
		var emb any = v
		if body.EncodingFormat == "base64" {
			emb = base64Floats(v)
		}
		resp.Data[i] = embeddingObject{Object: "embedding", Index: i, Embedding: emb}
	}
	resp.Usage.PromptTokens, resp.Usage.TotalTokens = tokens, tokens
	writeJSON(w, http.StatusOK, resp)
}

// base64Floats is OpenAI's base64 encoding of an embedding: the float32
// values little-endian, base64 (standard, padded).
func base64Floats(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}
