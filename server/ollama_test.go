package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// ollamaLines reads an NDJSON answer: every line one JSON object, the last
// one done (or an error).
func ollamaLines(t testing.TB, resp *http.Response) []map[string]any {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		b := new(bytes.Buffer)
		b.ReadFrom(resp.Body)
		t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	var out []map[string]any
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		t.Fatal("no lines")
	}
	for i, m := range out[:len(out)-1] {
		if m["done"] != false {
			t.Fatalf("line %d of %d: done %v", i, len(out), m["done"])
		}
	}
	return out
}

func ollamaJSON(t testing.TB, resp *http.Response, want int) map[string]any {
	t.Helper()
	b := readAll(t, resp)
	var m map[string]any
	if resp.StatusCode != want || json.Unmarshal(b, &m) != nil {
		t.Fatalf("status %d (want %d): %s", resp.StatusCode, want, b)
	}
	return m
}

// TestOllamaGenerateAndChat: /api/generate and /api/chat answer what the
// OpenAI endpoints answer for the same prompt and parameters, streamed as
// NDJSON or in one object, with Ollama's final statistics.
func TestOllamaGenerateAndChat(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 2})
	greedy := `"options":{"temperature":0,"num_predict":8,"repeat_penalty":1}`

	// Chat: the same text as /v1/chat/completions.
	var oai chatResponse
	decodeJSON(t, readAll(t, post(t, ts.URL+"/v1/chat/completions",
		`{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":8,"temperature":0,"ignore_eos":true}`)), &oai)
	msgs := `"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]`
	// ignore_eos has no Ollama spelling: compare up to the OpenAI text's length.
	chat := ollamaJSON(t, post(t, ts.URL+"/api/chat", `{"model":"any",`+msgs+`,"stream":false,`+greedy+`}`), 200)
	msg := chat["message"].(map[string]any)
	if msg["role"] != "assistant" || !strings.HasPrefix(oai.Choices[0].Message.Content, msg["content"].(string)) || chat["done"] != true {
		t.Fatalf("chat %v, OpenAI %q", chat, oai.Choices[0].Message.Content)
	}
	for _, k := range []string{"total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"} {
		if _, ok := chat[k].(float64); !ok {
			t.Errorf("chat answer lacks %s: %v", k, chat)
		}
	}
	if chat["prompt_eval_count"].(float64) != float64(oai.Usage.PromptTokens) {
		t.Errorf("prompt_eval_count %v, OpenAI prompt_tokens %d", chat["prompt_eval_count"], oai.Usage.PromptTokens)
	}
	if r := chat["done_reason"]; r != "length" && r != "stop" {
		t.Errorf("done_reason %v", r)
	}
	lines := ollamaLines(t, post(t, ts.URL+"/api/chat", `{"model":"any",`+msgs+`,`+greedy+`}`)) // streams by default
	var text strings.Builder
	for _, l := range lines[:len(lines)-1] {
		text.WriteString(l["message"].(map[string]any)["content"].(string))
	}
	last := lines[len(lines)-1]
	if text.String() != msg["content"] || last["done"] != true || last["eval_count"] != chat["eval_count"] {
		t.Errorf("streamed %q (last %v), whole %q", text.String(), last, msg["content"])
	}

	// Generate raw: /v1/completions' text; the final line carries context.
	var cmp completionResponse
	decodeJSON(t, readAll(t, post(t, ts.URL+"/v1/completions", `{"prompt":"Once upon a time","max_tokens":8,"temperature":0,"ignore_eos":true}`)), &cmp)
	gen := ollamaJSON(t, post(t, ts.URL+"/api/generate", `{"model":"m","prompt":"Once upon a time","raw":true,"stream":false,`+greedy+`}`), 200)
	if !strings.HasPrefix(cmp.Choices[0].Text, gen["response"].(string)) || gen["done"] != true {
		t.Errorf("generate %v, completions %q", gen, cmp.Choices[0].Text)
	}
	ctx, _ := gen["context"].([]any)
	if len(ctx) != int(gen["prompt_eval_count"].(float64)+gen["eval_count"].(float64)) {
		t.Errorf("context of %d ids for %v prompt and %v generated", len(ctx), gen["prompt_eval_count"], gen["eval_count"])
	}
	lines = ollamaLines(t, post(t, ts.URL+"/api/generate", `{"model":"m","prompt":"Once upon a time","raw":true,`+greedy+`}`))
	text.Reset()
	for _, l := range lines {
		text.WriteString(l["response"].(string))
	}
	if text.String() != gen["response"] || lines[len(lines)-1]["context"] == nil {
		t.Errorf("streamed %q, whole %q", text.String(), gen["response"])
	}
	// Templated (not raw), with a system prompt and a stop string; seeded.
	a := ollamaJSON(t, post(t, ts.URL+"/api/generate", `{"prompt":"Hi","system":"Be brief.","stream":false,"options":{"seed":4,"num_predict":6,"stop":["zzz"],"top_k":10.0}}`), 200)
	b := ollamaJSON(t, post(t, ts.URL+"/api/generate", `{"prompt":"Hi","system":"Be brief.","stream":false,"options":{"seed":4,"num_predict":6,"stop":["zzz"],"top_k":10}}`), 200)
	if a["response"] != b["response"] {
		t.Errorf("same seed, different answers: %q %q", a["response"], b["response"])
	}
	// Logprobs.
	lp := ollamaJSON(t, post(t, ts.URL+"/api/generate", `{"prompt":"Hi","raw":true,"stream":false,"logprobs":true,"top_logprobs":2,"options":{"num_predict":3}}`), 200)
	if l, _ := lp["logprobs"].([]any); len(l) == 0 || len(l[0].(map[string]any)["top_logprobs"].([]any)) != 2 {
		t.Errorf("logprobs: %v", lp["logprobs"])
	}
	// Nothing to generate: the model is loaded, done_reason "load".
	for path, body := range map[string]string{"/api/generate": `{"model":"m"}`, "/api/chat": `{"model":"m","messages":[]}`} {
		l := ollamaJSON(t, post(t, ts.URL+path, body), 200)
		if l["done"] != true || l["done_reason"] != "load" {
			t.Errorf("%s %s: %v", path, body, l)
		}
	}
	if n := ts.metric(t, `worker_orcd_requests_total{endpoint="/api/chat",outcome="ok"}`); n != 3 {
		t.Errorf("/api/chat ok requests counted %v, want 3", n)
	}
	if ts.InFlight() != 0 {
		t.Errorf("%d places held", ts.InFlight())
	}
}

// TestOllamaErrors: refusals in Ollama's shape {"error": "..."} with the
// HTTP status Ollama uses; unknown fields and options are ignored.
func TestOllamaErrors(t *testing.T) {
	ts := newTestServer(t, opts{})
	cases := []struct {
		path, body string
		status     int
		contains   string
	}{
		{"/api/generate", `{"prompt":"x","options":{"temperature":"hot"}}`, 400, "options.temperature"},
		{"/api/generate", `{"prompt":"x","options":{"temperature":5}}`, 400, "options.temperature"},
		{"/api/generate", `{"prompt":"x","options":{"num_predict":1.5}}`, 400, "options.num_predict"},
		{"/api/generate", `{"prompt":"x","options":{"num_predict":-3}}`, 400, "options.num_predict"},
		{"/api/generate", `{"prompt":"x","options":{"mirostat":2}}`, 400, "options.mirostat"},
		{"/api/generate", `{"prompt":"x","options":{"stop":5}}`, 400, "options.stop"},
		{"/api/generate", `{"prompt":"x","format":"yaml"}`, 400, "format"},
		{"/api/generate", `{"prompt":"x","format":{"type":"object","minProperties":1}}`, 400, `keyword "minProperties" is not supported`},
		{"/api/generate", `{"prompt":"x","think":true}`, 400, "think"},
		{"/api/generate", `{"prompt":"x","images":["aGk="]}`, 400, "text only"},
		{"/api/generate", `{"prompt":"x","suffix":"y"}`, 400, "fill-in-the-middle"},
		{"/api/generate", `{"prompt":"x","template":"{{ .Prompt }}"}`, 400, "template"},
		{"/api/generate", `{"prompt":"x","context":[-1]}`, 400, "context"},
		{"/api/generate", `{"prompt":` + mustJSON(strings.Repeat("word ", 600)) + `}`, 400, "ContextLengthExceeded"},
		{"/api/generate", `{"prompt":5}`, 400, "prompt"},
		{"/api/generate", `[1]`, 400, "JSON object"},
		{"/api/chat", `{"messages":[{"role":"wizard","content":"x"}]}`, 400, "role"},
		{"/api/chat", `{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}`, 400, "tool calling"},
		{"/api/chat", `{"messages":[{"role":"user","content":"x","images":["aGk="]}]}`, 400, "text only"},
		{"/api/embed", `{"input":[]}`, 400, "input"},
		{"/api/embed", `{"input":"x","dimensions":2}`, 400, "dimensions"},
		{"/api/embed", `{"input":` + mustJSON(strings.Repeat("word ", 600)) + `,"truncate":false}`, 400, "ContextLengthExceeded"},
		{"/api/nothing", `{}`, 404, "no endpoint"},
	}
	for _, c := range cases {
		resp := post(t, ts.URL+c.path, c.body)
		b := readAll(t, resp)
		var e map[string]any
		if json.Unmarshal(b, &e) != nil || resp.StatusCode != c.status || len(e) != 1 || !strings.Contains(e["error"].(string), c.contains) {
			t.Errorf("%s %.60s: %d %s; want %d {\"error\"} with %q", c.path, c.body, resp.StatusCode, b, c.status, c.contains)
		}
	}
	resp := get(t, ts.URL+"/api/generate")
	if b := readAll(t, resp); resp.StatusCode != 405 || !strings.HasPrefix(string(b), `{"error":`) {
		t.Errorf("GET /api/generate: %d %s", resp.StatusCode, b)
	}
	resp = post(t, ts.URL+"/api/generate", `{"prompt":"x"}`, "Content-Type", "application/x-www-form-urlencoded")
	if b := readAll(t, resp); resp.StatusCode != 415 || !strings.HasPrefix(string(b), `{"error":`) {
		t.Errorf("form-encoded body: %d %s", resp.StatusCode, b)
	}
	// Ignored: unknown fields and options, load-time options, keep_alive.
	ok := ollamaJSON(t, post(t, ts.URL+"/api/generate", `{"prompt":"x","stream":false,"keep_alive":"5m","shift":true,
		"options":{"num_predict":2,"num_ctx":99999,"num_gpu":1,"use_mmap":false,"brand_new_option":3}}`), 200)
	if ok["done"] != true {
		t.Errorf("%v", ok)
	}
	// An embedding input longer than the context is cut by default.
	long := ollamaJSON(t, post(t, ts.URL+"/api/embed", `{"input":`+mustJSON(strings.Repeat("word ", 600))+`}`), 200)
	if long["prompt_eval_count"].(float64) != float64(ts.m.Options().CtxLen) {
		t.Errorf("truncated input: %v tokens, want %d", long["prompt_eval_count"], ts.m.Options().CtxLen)
	}
}

// TestOllamaModelEndpoints: /, /api/tags, /api/ps, /api/show, /api/version,
// /api/embed and /api/embeddings.
func TestOllamaModelEndpoints(t *testing.T) {
	ts := newTestServer(t, opts{})
	resp := get(t, ts.URL+"/")
	if b := readAll(t, resp); resp.StatusCode != 200 || string(b) != "Ollama is running" {
		t.Errorf("GET /: %d %q", resp.StatusCode, b)
	}
	tags := ollamaJSON(t, get(t, ts.URL+"/api/tags"), 200)
	models := tags["models"].([]any)
	m := models[0].(map[string]any)
	id := ts.info.Load().id
	det := m["details"].(map[string]any)
	if len(models) != 1 || m["name"] != id || m["model"] != id || m["size"].(float64) <= 0 || det["format"] != "gguf" ||
		det["family"] != "qwen2" || det["quantization_level"] == "" || det["parameter_size"] == "" {
		t.Errorf("tags %v", tags)
	}
	if _, err := time.Parse(time.RFC3339Nano, m["modified_at"].(string)); err != nil {
		t.Errorf("modified_at: %v", err)
	}
	ps := ollamaJSON(t, get(t, ts.URL+"/api/ps"), 200)
	p := ps["models"].([]any)[0].(map[string]any)
	// size_vram: 0 on the CPU, the model's size on a GPU (as Ollama reports).
	if p["name"] != id || (p["size_vram"] == 0.0) != (testDevice() == "cpu") || p["context_length"].(float64) != float64(ts.m.Options().CtxLen) {
		t.Errorf("ps %v", ps)
	}
	show := ollamaJSON(t, post(t, ts.URL+"/api/show", `{"model":"`+id+`"}`), 200)
	mi := show["model_info"].(map[string]any)
	if mi["general.architecture"] != "qwen2" || mi["qwen2.context_length"] == nil || mi["general.parameter_count"].(float64) <= 0 ||
		mi["tokenizer.ggml.tokens"] != nil || !slices.Contains(show["capabilities"].([]any), any("embedding")) {
		t.Errorf("show %v", show)
	}
	verbose := ollamaJSON(t, post(t, ts.URL+"/api/show", `{"model":"`+id+`","verbose":true}`), 200)
	if verbose["model_info"].(map[string]any)["tokenizer.ggml.tokens"] == nil {
		t.Error("verbose show has no tokenizer.ggml.tokens")
	}
	if v := ollamaJSON(t, get(t, ts.URL+"/api/version"), 200); v["version"] != OllamaVersion {
		t.Errorf("version %v", v)
	}

	var oai embeddingsBody
	decodeJSON(t, readAll(t, post(t, ts.URL+"/v1/embeddings", `{"input":["a text","another"]}`)), &oai)
	want := oai.vectors(t)
	emb := ollamaJSON(t, post(t, ts.URL+"/api/embed", `{"model":"m","input":["a text","another"]}`), 200)
	vecs := emb["embeddings"].([]any)
	if len(vecs) != 2 || emb["prompt_eval_count"].(float64) != float64(oai.Usage.PromptTokens) {
		t.Fatalf("embed %v", emb)
	}
	for i, v := range vecs {
		got := make([]float32, len(v.([]any)))
		for j, x := range v.([]any) {
			got[j] = float32(x.(float64))
		}
		if !slices.Equal(got, want[i]) {
			t.Errorf("/api/embed vector %d differs from /v1/embeddings'", i)
		}
	}
	old := ollamaJSON(t, post(t, ts.URL+"/api/embeddings", `{"model":"m","prompt":"a text"}`), 200)
	if got := old["embedding"].([]any); len(got) != len(want[0]) || float32(got[0].(float64)) != want[0][0] {
		t.Errorf("/api/embeddings %v", old)
	}
}

// FuzzOllamaBody: whatever the body, Ollama's endpoints answer 2xx with
// valid JSON (NDJSON ending in a done or error line) or a 4xx {"error"};
// never a 5xx, a hang or a place left held.
func FuzzOllamaBody(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"prompt":"hi"}`, `{"prompt":"hi","stream":false,"options":{"num_predict":2}}`,
		`{"prompt":"hi","options":{"temperature":"x","top_k":1e300}}`, `{"prompt":"hi","raw":true,"context":[1,2,3]}`,
		`{"prompt":"hi","options":{"stop":["a"],"seed":-1,"num_predict":-2,"typical_p":1}}`, `{"prompt":"hi","format":"json"}`,
		`{"messages":[{"role":"user","content":"hi"}],"options":{"num_predict":3},"stream":true}`,
		`{"messages":[{"role":"assistant","content":"\ud800"}]}`, `{"messages":null,"tools":[]}`,
		`{"input":["a","b"],"truncate":false}`, `{"input":[[1,2],[3]]}`, `{"prompt":"x","think":"high","logprobs":true,"top_logprobs":99}`,
		`{"model":"m","verbose":true}`, `{"prompt":"x","options":{"num_predict":4},"keep_alive":0}`,
	} {
		f.Add([]byte(s))
	}
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		b := clampOllama(body)
		for _, path := range []string{"/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show"} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			start := time.Now()
			srv.ServeHTTP(rec, req)
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("%s took %v for %q", path, d, b)
			}
			out := rec.Body.Bytes()
			switch {
			case rec.Code >= 500:
				t.Fatalf("%s: %d %s", path, rec.Code, out)
			case rec.Code >= 400:
				var e map[string]string
				if json.Unmarshal(out, &e) != nil || e["error"] == "" || len(e) != 1 {
					t.Fatalf("%s: %d not {\"error\"}: %s", path, rec.Code, out)
				}
			case rec.Header().Get("Content-Type") == "application/x-ndjson":
				lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
				var last map[string]any
				for _, l := range lines {
					last = nil
					if json.Unmarshal(l, &last) != nil {
						t.Fatalf("%s: line %q", path, l)
					}
				}
				if last["done"] != true && last["error"] == nil {
					t.Fatalf("%s: stream ends with %s", path, lines[len(lines)-1])
				}
			default:
				if !json.Valid(out) {
					t.Fatalf("%s: %d invalid JSON %s", path, rec.Code, out)
				}
			}
		}
		if n := srv.InFlight(); n != 0 {
			t.Fatalf("%d requests still in flight", n)
		}
	})
}

// clampOllama keeps fuzz inputs from asking for long generations: at most
// 4 tokens (options.num_predict), and ignore the rest of the context.
func clampOllama(body []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || m == nil {
		return body
	}
	var o map[string]json.RawMessage
	if raw, ok := m["options"]; ok && json.Unmarshal(raw, &o) != nil {
		return body // a bad options object is the server's to reject
	}
	if o == nil {
		o = map[string]json.RawMessage{}
	}
	var n float64
	if raw, ok := o["num_predict"]; ok && (json.Unmarshal(raw, &n) != nil || n != float64(int(n)) || n < -2) {
		return body
	}
	if !(n >= 1 && n <= 4) {
		o["num_predict"] = json.RawMessage("4")
	}
	m["options"], _ = json.Marshal(o)
	b, _ := json.Marshal(m)
	return b
}
