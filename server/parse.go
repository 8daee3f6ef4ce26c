package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"worker-orcd/engine"
	"worker-orcd/sample"
	"worker-orcd/stop"
)

// Limits on request fields that the engine does not bound itself.
const (
	maxStops       = 16   // stop strings per request
	maxStopBytes   = 1024 // bytes per stop string
	maxJobIDLen    = 128
	maxChatEntries = 4096 // messages per chat request
)

// fieldError is returned by the custom JSON decoders below; it names the
// field so that the client can find it.
type fieldError struct {
	param string
	msg   string
}

func (e *fieldError) Error() string { return e.param + ": " + e.msg }

// decodeBody reads a JSON object of at most limit bytes into dst. Unknown
// fields, trailing data, wrong types and numbers that do not fit are
// INVALID_REQUEST errors that name the field; a body over the limit is 413.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, dst any) *apiError {
	rc := http.NewResponseController(w)
	// Bound the time a client may take to send the body (the header has
	// its own timeout); lift it afterwards so that a long stream is not cut.
	// A body that does not arrive in time is answered 408 and the
	// connection closed (see statusWriter).
	rc.SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout))
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	rc.SetReadDeadline(time.Time{})
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return &apiError{Status: http.StatusRequestTimeout, Code: CodeInvalidRequest,
				Message: fmt.Sprintf("the request body did not arrive within %v (Content-Length promised more than was sent?)", s.cfg.BodyReadTimeout)}
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{Status: http.StatusRequestEntityTooLarge, Code: CodeInvalidRequest,
				Message: fmt.Sprintf("the request body is over the limit of %d bytes (start the worker with a larger --max-body to allow it)", mbe.Limit)}
		}
		return badRequest("", "reading the request body: %v", err)
	}
	return parseJSON(data, dst)
}

// decodeBodyLoose is decodeBody for Ollama's API, whose server ignores
// fields it does not know (clients written for it send some).
func (s *Server) decodeBodyLoose(w http.ResponseWriter, r *http.Request, dst any) *apiError {
	return s.decodeBody(w, r, &looseBody{dst})
}

// looseBody marks a destination that parseJSON decodes without refusing
// unknown fields.
type looseBody struct{ v any }

// parseJSON decodes one JSON object into dst strictly (see decodeBody),
// or without refusing unknown fields when dst is a *looseBody.
func parseJSON(data []byte, dst any) *apiError {
	if len(bytes.TrimSpace(data)) == 0 {
		return badRequest("", "the request body is empty: want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if lb, ok := dst.(*looseBody); ok {
		dst = lb.v
	} else {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(dst); err != nil {
		return jsonError(err, dst)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("", "unexpected data after the JSON object: send exactly one object")
	}
	return nil
}

func jsonError(err error, dst any) *apiError {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var fe *fieldError
	switch {
	case errors.As(err, &fe):
		return badRequest(fe.param, "%s", fe.msg)
	case errors.As(err, &se):
		return badRequest("", "the body is not valid JSON: %v (at byte %d)", se, se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "the body is not valid JSON: it ends before the object is complete")
	case errors.As(err, &te):
		field := te.Field
		for _, embedded := range []string{"oaiCommon.", "sampling.", "constraintFields."} {
			field = strings.TrimPrefix(field, embedded)
		}
		if field == "" {
			return badRequest("", "the body must be a JSON object, not a JSON %s", te.Value)
		}
		want := typeName(te.Type)
		if strings.HasPrefix(te.Value, "number") && (te.Type.Kind() == reflect.Int || te.Type.Kind() == reflect.Float64 || te.Type.Kind() == reflect.Int32) {
			return badRequest(field, "%s is out of range for %s", strings.TrimPrefix(te.Value, "number "), want)
		}
		return badRequest(field, "want %s, got a JSON %s", want, te.Value)
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return badRequest(name, "unknown field %q (known fields: %s)", name, strings.Join(knownFields(dst), ", "))
	}
	return badRequest("", "the body is not valid JSON: %v", strings.TrimPrefix(msg, "json: "))
}

func typeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// knownFields lists the JSON names of a struct's fields, embedded ones
// included.
func knownFields(v any) []string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "" && name != "-" {
				out = append(out, name)
			}
		}
	}
	if t.Kind() == reflect.Struct {
		walk(t)
	}
	return out
}

// stopList is OpenAI's stop: null, a string, or an array of strings.
type stopList []string

func (s *stopList) UnmarshalJSON(b []byte) error {
	switch b = bytes.TrimSpace(b); {
	case string(b) == "null":
		*s = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return &fieldError{"stop", "want a string or an array of strings"}
		}
		*s = stopList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return &fieldError{"stop", "want a string or an array of strings"}
	}
	*s = many
	return nil
}

// seedValue is a seed: an integer in [0, 2^64), or -1 (or null) for a fresh
// one.
type seedValue struct {
	set bool
	v   uint64
}

func (s *seedValue) UnmarshalJSON(b []byte) error {
	t := string(bytes.TrimSpace(b))
	if t == "null" {
		*s = seedValue{}
		return nil
	}
	if u, err := strconv.ParseUint(t, 10, 64); err == nil {
		*s = seedValue{set: true, v: u}
		return nil
	}
	if t == "-1" {
		*s = seedValue{}
		return nil
	}
	return &fieldError{"seed", fmt.Sprintf("want an integer from 0 to 18446744073709551615 (or -1 for a random seed), got %.40s", t)}
}

// sampling holds the generation fields that every endpoint shares.
type sampling struct {
	Temperature       *float64   `json:"temperature"`
	TopP              *float64   `json:"top_p"`
	TopK              *int       `json:"top_k"`
	MinP              *float64   `json:"min_p"`
	RepetitionPenalty *float64   `json:"repetition_penalty"`
	RepeatLastN       *int       `json:"repeat_last_n"`
	Seed              *seedValue `json:"seed"`
	Stop              stopList   `json:"stop"`
	IgnoreEOS         bool       `json:"ignore_eos"`
	// CachePrompt false opts the request out of the prefix cache: its
	// whole prompt is computed, and its rows are offered to no other
	// request (llama-server's field; default true).
	CachePrompt      *bool    `json:"cache_prompt"`
	PresencePenalty  *float64 `json:"presence_penalty"`
	FrequencyPenalty *float64 `json:"frequency_penalty"`
	// LogitBias maps token ids (as decimal strings, OpenAI's shape) to a
	// bias in [-100, 100].
	LogitBias map[string]float64 `json:"logit_bias"`
}

// noPrefixCache says whether the request opted out of the prefix cache.
func (s *sampling) noPrefixCache() bool { return s.CachePrompt != nil && !*s.CachePrompt }

// params checks the sampling fields and turns them into sample.Params,
// starting from defaults.
func (s *sampling) params(defaults sample.Params) (sample.Params, *apiError) {
	p := defaults
	if v := s.Temperature; v != nil {
		if *v < 0 || *v > 2 {
			return p, badRequest("temperature", "%g is out of range: want 0 to 2 (0 = greedy)", *v)
		}
		p.Temperature = *v
	}
	if v := s.TopP; v != nil {
		if *v < 0 || *v > 1 {
			return p, badRequest("top_p", "%g is out of range: want 0 to 1 (1 = off, 0 = only the most likely token)", *v)
		}
		p.TopP = *v
	}
	if v := s.TopK; v != nil {
		if *v < 0 {
			return p, badRequest("top_k", "%d is negative: want 0 (off) or more", *v)
		}
		p.TopK = *v
	}
	if v := s.MinP; v != nil {
		if *v < 0 || *v > 1 {
			return p, badRequest("min_p", "%g is out of range: want 0 (off) to 1", *v)
		}
		p.MinP = *v
	}
	if v := s.RepetitionPenalty; v != nil {
		if !(*v > 0) || *v > math.MaxFloat32 {
			return p, badRequest("repetition_penalty", "%g is out of range: want more than 0 (1 = off)", *v)
		}
		p.RepeatPenalty = *v
	}
	if v := s.RepeatLastN; v != nil {
		if *v < -1 {
			return p, badRequest("repeat_last_n", "%d is out of range: want -1 (the whole history), 0 (off) or more", *v)
		}
		p.RepeatLastN = *v
	}
	if p.TopP == 0 {
		// Top-p 0 keeps the smallest set whose probability reaches 0: the
		// most likely token alone (ties to the lower id), which is top-k 1
		// at any place in the sampler's order.
		p.TopP, p.TopK = 1, 1
	}
	if v := s.PresencePenalty; v != nil {
		if !(*v >= -2 && *v <= 2) {
			return p, badRequest("presence_penalty", "%g is out of range: want -2 to 2 (0 = off)", *v)
		}
		p.PresencePenalty = *v
	}
	if v := s.FrequencyPenalty; v != nil {
		if !(*v >= -2 && *v <= 2) {
			return p, badRequest("frequency_penalty", "%g is out of range: want -2 to 2 (0 = off)", *v)
		}
		p.FrequencyPenalty = *v
	}
	if len(s.LogitBias) > 0 {
		bias, e := parseLogitBias(s.LogitBias)
		if e != nil {
			return p, e
		}
		p.LogitBias = bias
	}
	if s.Seed != nil && s.Seed.set {
		seed := s.Seed.v
		p.Seed = &seed
	}
	if err := p.Validate(); err != nil {
		return p, badRequest("", "%v", err)
	}
	if len(s.Stop) > maxStops {
		return p, badRequest("stop", "%d stop strings: want at most %d", len(s.Stop), maxStops)
	}
	for i, st := range s.Stop {
		if len(st) > maxStopBytes {
			return p, badRequest("stop", "stop string %d is %d bytes long: want at most %d", i, len(st), maxStopBytes)
		}
	}
	if err := stop.Validate(s.Stop); err != nil {
		return p, badRequest("stop", "%v", err)
	}
	return p, nil
}

// parseLogitBias reads OpenAI's logit_bias: token ids as decimal strings,
// each with a bias in [-100, 100]. Errors name the smallest bad key, so
// that the same request always gets the same answer.
func parseLogitBias(in map[string]float64) (map[int32]float64, *apiError) {
	if len(in) > sample.MaxLogitBias {
		return nil, badRequest("logit_bias", "%d entries: want at most %d", len(in), sample.MaxLogitBias)
	}
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make(map[int32]float64, len(in))
	for _, k := range keys {
		id, err := strconv.ParseInt(k, 10, 32)
		if err != nil || id < 0 || (len(k) > 1 && k[0] == '0') || k[0] == '+' || k[0] == '-' {
			return nil, badRequest("logit_bias", "key %.40q is not a token id: want decimal integers from 0 (\"1234\": -100)", k)
		}
		v := in[k]
		if !(v >= -100 && v <= 100) {
			return nil, badRequest("logit_bias", "token %d has bias %g: want -100 to 100 (-100 bans the token, 100 forces it)", id, v)
		}
		if _, dup := out[int32(id)]; dup {
			return nil, badRequest("logit_bias", "token %d is given twice", id)
		}
		out[int32(id)] = v
	}
	return out, nil
}

// checkBiasVocab refuses a logit_bias that names an id outside the
// vocabulary (the smallest such id).
func checkBiasVocab(p sample.Params, vocab int) *apiError {
	bad := int32(-1)
	for id := range p.LogitBias {
		if int(id) >= vocab && (bad < 0 || id < bad) {
			bad = id
		}
	}
	if bad >= 0 {
		return badRequest("logit_bias", "token %d is outside the vocabulary [0, %d)", bad, vocab)
	}
	return nil
}

// checkMaxTokens bounds max_tokens before the engine adds it to the prompt
// length (a huge value must not overflow there).
func checkMaxTokens(name string, n, promptLen, ctxLen int, promptParam string) *apiError {
	if n < 0 {
		return badRequest(name, "%d is negative: want 0 (up to the context) or more", n)
	}
	if promptLen >= ctxLen {
		e := &engine.ContextLengthError{Length: promptLen + max(n, 1), Max: ctxLen, PromptTokens: promptLen, MaxTokens: n}
		return &apiError{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Message: e.Error(), Param: promptParam, OAICode: "context_length_exceeded"}
	}
	if n > ctxLen || promptLen+n > ctxLen {
		e := &engine.ContextLengthError{Length: promptLen + n, Max: ctxLen, PromptTokens: promptLen, MaxTokens: n}
		if n > math.MaxInt-promptLen {
			e.Length = math.MaxInt // the sum does not fit an int
		}
		return &apiError{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Message: e.Error(), Param: name, OAICode: "context_length_exceeded"}
	}
	return nil
}

// validJobID reports whether a client-chosen job id is acceptable: 1 to 128
// printable ASCII characters without spaces or quotes.
func validJobID(id string) bool {
	if id == "" || len(id) > maxJobIDLen || !utf8.ValidString(id) {
		return false
	}
	for _, c := range id {
		if c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
