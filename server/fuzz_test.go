package server

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"worker-orcd/engine"
)

var fuzzSeeds = []string{
	``, `{}`, `null`, `[]`, `"x"`, `{"prompt":`, `{"prompt":"hi","max_tokens":3}`,
	`{"prompt":"hi","max_tokens":-1}`, `{"prompt":"hi","max_tokens":1e400}`, `{"prompt":"hi","temperature":"hot"}`,
	`{"prompt":"hi","stop":["a","b"],"seed":18446744073709551615,"top_k":5,"top_p":0.5,"min_p":0.1,"repetition_penalty":1.1,"max_tokens":2}`,
	`{"prompt_ids":[1,2,3],"max_tokens":2}`, `{"prompt_ids":[1,2,"x"]}`, `{"job_id":"","prompt":"x","max_tokens":1}`,
	`{"prompt":"x","unknown":{"deep":[1,2,{"a":null}]}}`, `{"prompt":"\ud800","max_tokens":1}`, `{"prompt":"x"}garbage`,
	`{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}`, `{"prompt":["a"],"max_tokens":1}`, `{"prompt":[[1,2]],"max_tokens":1}`,
	`{"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"logprobs":true,"top_logprobs":3,"max_tokens":2,"stream":true}`,
	`{"prompt":"hi","max_tokens":4,"grammar":"root ::= [a-z]+ (\" \" [0-9]{1,3})?"}`,
	`{"prompt":"hi","max_tokens":6,"json_schema":{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}}`,
	`{"messages":[{"role":"user","content":"hi"}],"max_tokens":8,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"enum":[1,"two"]}}}}`,
	`{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"1"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","max_tokens":30,"stream":true}`,
}

// fuzzServer is one server shared by the fuzz inputs of a process.
func fuzzServer(f *testing.F) *Server {
	m, err := engine.Load(modelPath(f, "micro"), engine.LoadOptions{Device: "cpu", Threads: 1, Engine: engine.Options{Parallel: 2}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { m.Close() })
	s := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.SetModel(m)
	return s
}

// checkResponse fails on a 5xx, a 4xx without a code, or a stream without
// exactly one terminal event.
func checkResponse(t *testing.T, path string, rec *httptest.ResponseRecorder) {
	body := rec.Body.Bytes()
	switch {
	case rec.Code >= 500:
		t.Fatalf("%s: %d %s", path, rec.Code, body)
	case rec.Code >= 400:
		if !json.Valid(body) || !bytes.Contains(body, []byte(`"code"`)) {
			t.Fatalf("%s: %d without a JSON code: %s", path, rec.Code, body)
		}
	case path == "/execute":
		checkExecute(t, readSSE(t, bytes.NewReader(body)))
	case rec.Header().Get("Content-Type") == "text/event-stream":
		evs := readSSE(t, bytes.NewReader(body))
		if len(evs) == 0 || evs[len(evs)-1].data != "[DONE]" {
			t.Fatalf("%s: stream without [DONE]: %s", path, body)
		}
	default:
		if !json.Valid(body) {
			t.Fatalf("%s: %d invalid JSON %s", path, rec.Code, body)
		}
	}
}

// clamp keeps fuzz inputs from asking for long generations: it runs them
// with max_tokens at most 4 where the body sets a larger one.
func clamp(body []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || m == nil {
		return body
	}
	if raw, ok := m["max_tokens"]; ok {
		var n int
		if json.Unmarshal(raw, &n) != nil || (n >= 1 && n <= 4) {
			return body // a bad max_tokens is the server's to reject
		}
	}
	m["max_tokens"] = json.RawMessage("4")
	delete(m, "max_completion_tokens")
	b, _ := json.Marshal(m)
	return b
}

func FuzzExecuteBody(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{"/execute", "/v1/completions", "/v1/chat/completions"} {
			b := clamp(body)
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			start := time.Now()
			srv.ServeHTTP(rec, req)
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("%s took %v for %q", path, d, b)
			}
			checkResponse(t, path, rec)
		}
		if n := srv.InFlight(); n != 0 {
			t.Fatalf("%d requests still in flight", n)
		}
	})
}

// TestParseJSONErrorsNameFields checks the decoder's messages directly.
func TestParseJSONErrorsNameFields(t *testing.T) {
	for _, c := range []struct{ body, param, contains string }{
		{`{"max_tokens":"x"}`, "max_tokens", "want an integer"},
		{`{"temperature":true}`, "temperature", "want a number"},
		{`{"max_tokens":1e99}`, "max_tokens", "out of range"},
		{`{"zzz":1}`, "zzz", "known fields"},
		{`{"stop":7}`, "stop", "string or an array"},
		{`[`, "", "not valid JSON"},
	} {
		var r executeRequest
		e := parseJSON([]byte(c.body), &r)
		if e == nil || e.Param != c.param || !strings.Contains(e.Message, c.contains) {
			t.Errorf("%s: %+v; want param %q and %q", c.body, e, c.param, c.contains)
		}
	}
}
