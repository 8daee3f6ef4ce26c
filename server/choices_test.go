package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// choiceAnswer is one choice reduced to what the stream, the whole answer
// and a request of that choice alone must agree on.
type choiceAnswer struct {
	Text     string
	Calls    [][2]string // tool calls: name, arguments
	Finish   string
	Logprobs int // logprobs entries
}

// askChoices posts body (with "n", or without for one choice) to path,
// streamed (with usage) or not, and returns the choices in index order
// and the usage. It checks the shape: every index from 0 to n-1 once in a
// whole answer; in a stream one choice per chunk, a chat choice's first
// chunk giving the role, nothing for a choice after its finish_reason, and
// exactly one finish_reason per choice.
func askChoices(t *testing.T, ts *testServer, path, body string, n int, stream bool) ([]choiceAnswer, oaiUsage) {
	t.Helper()
	chat := strings.Contains(path, "chat")
	if stream {
		body = strings.Replace(body, "{", `{"stream":true,"stream_options":{"include_usage":true},`, 1)
	}
	resp := post(t, ts.URL+path, body)
	if !stream {
		b := readAll(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %.200s: status %d: %s", path, body, resp.StatusCode, b)
		}
		var r struct {
			Choices []struct {
				Index   int     `json:"index"`
				Text    *string `json:"text"`
				Message *struct {
					Role      string        `json:"role"`
					Content   *string       `json:"content"`
					ToolCalls []oaiToolCall `json:"tool_calls"`
				} `json:"message"`
				Logprobs *struct {
					Content []json.RawMessage `json:"content"` // chat
					Tokens  []string          `json:"tokens"`  // completions
				} `json:"logprobs"`
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
			Usage oaiUsage `json:"usage"`
		}
		decodeJSON(t, b, &r)
		if len(r.Choices) != n {
			t.Fatalf("%d choices, want %d: %s", len(r.Choices), n, b)
		}
		out := make([]choiceAnswer, n)
		for i, c := range r.Choices {
			if c.Index != i {
				t.Errorf("choice %d has index %d", i, c.Index)
			}
			a := &out[i]
			a.Finish = c.FinishReason
			switch {
			case chat && c.Message != nil:
				if c.Message.Role != "assistant" {
					t.Errorf("choice %d: role %q", i, c.Message.Role)
				}
				if c.Message.Content != nil {
					a.Text = *c.Message.Content
				}
				for _, tc := range c.Message.ToolCalls {
					a.Calls = append(a.Calls, [2]string{tc.Function.Name, tc.Function.Arguments})
				}
			case !chat && c.Text != nil:
				a.Text = *c.Text
			default:
				t.Fatalf("choice %d has neither message nor text: %s", i, b)
			}
			if c.Logprobs != nil {
				a.Logprobs = len(c.Logprobs.Content) + len(c.Logprobs.Tokens)
			}
		}
		return out, r.Usage
	}
	chunks := oaiStream(t, resp)
	out := make([]choiceAnswer, n)
	seen := make([]bool, n)
	var usage *oaiUsage
	for k, raw := range chunks {
		var ch struct {
			Choices []struct {
				Index int     `json:"index"`
				Text  *string `json:"text"`
				Delta struct {
					Role      string        `json:"role"`
					Content   *string       `json:"content"`
					ToolCalls []oaiToolCall `json:"tool_calls"`
				} `json:"delta"`
				Logprobs *struct {
					Content []json.RawMessage `json:"content"`
					Tokens  []string          `json:"tokens"`
				} `json:"logprobs"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage *oaiUsage `json:"usage"`
		}
		decodeJSON(t, raw, &ch)
		if k == len(chunks)-1 {
			if len(ch.Choices) != 0 || ch.Usage == nil {
				t.Fatalf("last chunk %s: want no choices and the usage", raw)
			}
			usage = ch.Usage
			continue
		}
		if len(ch.Choices) != 1 {
			t.Fatalf("chunk %d has %d choices, want 1: %s", k, len(ch.Choices), raw)
		}
		c := ch.Choices[0]
		if c.Index < 0 || c.Index >= n {
			t.Fatalf("chunk %d: index %d outside [0, %d)", k, c.Index, n)
		}
		a := &out[c.Index]
		if a.Finish != "" {
			t.Errorf("chunk %d for choice %d after its finish_reason: %s", k, c.Index, raw)
		}
		if chat && !seen[c.Index] && c.Delta.Role != "assistant" {
			t.Errorf("choice %d's first chunk does not give the role: %s", c.Index, raw)
		}
		seen[c.Index] = true
		if c.Text != nil {
			a.Text += *c.Text
		}
		if c.Delta.Content != nil {
			a.Text += *c.Delta.Content
		}
		for _, tc := range c.Delta.ToolCalls {
			if tc.Index == nil || *tc.Index != len(a.Calls) {
				t.Errorf("choice %d: tool call delta index %v, want %d", c.Index, tc.Index, len(a.Calls))
			}
			a.Calls = append(a.Calls, [2]string{tc.Function.Name, tc.Function.Arguments})
		}
		if c.Logprobs != nil {
			a.Logprobs += len(c.Logprobs.Content) + len(c.Logprobs.Tokens)
		}
		if c.FinishReason != nil {
			a.Finish = *c.FinishReason
		}
	}
	for i, a := range out {
		if a.Finish == "" {
			t.Errorf("choice %d has no finish_reason in the stream", i)
		}
	}
	if usage == nil {
		t.Fatal("no usage chunk")
	}
	return out, *usage
}

// The OpenAI bodies say how many choices they ask, so that a request of n
// choices runs them up to one per slot at once.
var (
	_ choices = (*chatRequest)(nil)
	_ choices = (*completionRequest)(nil)
)

// withField adds "name":value to a JSON object body.
func withField(body, name string, value any) string {
	v, _ := json.Marshal(value)
	return strings.Replace(body, "{", fmt.Sprintf(`{%q:%s,`, name, v), 1)
}

// TestChoices: n > 1 on both endpoints, streamed and not, greedy, seeded,
// with logprobs, a JSON schema and tool calls. Each choice has its index
// and finish_reason; greedy choices are the same; seeded choice i is what
// the request alone with seed + i gives (so choices differ); usage counts
// the prompt once and every choice's tokens; stream and whole answer
// agree; and the prompt is computed once: the engine's prefix-cache hits
// grow by (n−1)·(prompt−1) beside what the first choice took from the
// cache (every choice reads the prompt's last token itself).
func TestChoices(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 2, model: micro4k(t)})
	schema := `{"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}`
	validator := compileValidator(t, schema)
	cases := []struct {
		name, path, body string
		n                int
		seed             int // 0: greedy (temperature 0)
		tokens           int // completion tokens per choice (ignore_eos), 0: not fixed
		check            func(t *testing.T, a choiceAnswer)
	}{
		{name: "chat greedy", path: "/v1/chat/completions", n: 3, tokens: 8,
			body: `{"messages":[{"role":"user","content":"Tell me three things ({v})."}],"max_tokens":8,"ignore_eos":true,"temperature":0,"logprobs":true,"top_logprobs":2}`},
		{name: "completions greedy", path: "/v1/completions", n: 2, tokens: 6,
			body: `{"prompt":"Once upon a time ({v}) there was a","max_tokens":6,"ignore_eos":true,"temperature":0,"logprobs":1}`},
		{name: "chat seeded", path: "/v1/chat/completions", n: 4, seed: 11, tokens: 10,
			body: `{"messages":[{"role":"user","content":"Write a word ({v})."}],"max_tokens":10,"ignore_eos":true,"temperature":1}`},
		{name: "completions seeded", path: "/v1/completions", n: 3, seed: 5, tokens: 12,
			body: `{"prompt":"({v}) The capital of France is","max_tokens":12,"ignore_eos":true,"temperature":1.2,"logprobs":0}`},
		{name: "completions seeded, cache_prompt false", path: "/v1/completions", n: 2, seed: 8, tokens: 5,
			body: `{"prompt":"({v}) Nothing cached","max_tokens":5,"ignore_eos":true,"cache_prompt":false}`},
		{name: "chat json schema", path: "/v1/chat/completions", n: 2, seed: 3,
			body: `{"messages":[{"role":"user","content":"A person as JSON ({v})."}],"max_tokens":200,"temperature":1,
				"response_format":{"type":"json_schema","json_schema":{"name":"p","strict":true,"schema":` + schema + `}}}`,
			check: func(t *testing.T, a choiceAnswer) {
				inst, err := jsonschema.UnmarshalJSON(strings.NewReader(a.Text))
				if err != nil {
					t.Fatalf("not JSON: %q: %v", a.Text, err)
				}
				if err := validator.Validate(inst); err != nil {
					t.Errorf("%q does not validate: %v", a.Text, err)
				}
			}},
		{name: "chat tools required", path: "/v1/chat/completions", n: 2, seed: 7,
			body: `{"messages":[{"role":"user","content":"Weather in Paris ({v})?"}],"tools":` + weatherTools + `,"tool_choice":"required","temperature":1,"max_tokens":200}`,
			check: func(t *testing.T, a choiceAnswer) {
				if len(a.Calls) == 0 || a.Finish != "tool_calls" || a.Text != "" {
					t.Errorf("want tool calls only, finish tool_calls: %+v", a)
				}
				for _, c := range a.Calls {
					if c[0] != "get_weather" && c[0] != "add" {
						t.Errorf("call of %q", c[0])
					}
					if !json.Valid([]byte(c[1])) {
						t.Errorf("arguments %q are not JSON", c[1])
					}
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, stream := range []bool{false, true} {
				// A prompt no earlier request read (but for the chat
				// template's start), so that the first choice computes it.
				body := strings.Replace(tc.body, "{v}", fmt.Sprintf("stream %v", stream), 1)
				hits := ts.m.Stats().PrefixHitTokens
				const promptSeries = `worker_orcd_prompt_tokens_total`
				promptBefore := ts.metric(t, promptSeries)
				n := withField(body, "n", tc.n)
				if tc.seed != 0 {
					n = withField(n, "seed", tc.seed)
				}
				got, u := askChoices(t, ts, tc.path, n, tc.n, stream)
				hits = ts.m.Stats().PrefixHitTokens - hits
				if d := ts.metric(t, promptSeries) - promptBefore; d != float64(u.PromptTokens) {
					t.Errorf("stream %v: prompt_tokens_total grew by %v for %d choices of a %d-token prompt: want the prompt once", stream, d, tc.n, u.PromptTokens)
				}
				// Each choice alone: n left out, the seed it is documented
				// to use.
				alone := make([]choiceAnswer, tc.n)
				var aloneUsage oaiUsage
				for i := range tc.n {
					b := body
					if tc.seed != 0 {
						b = withField(b, "seed", tc.seed+i)
					}
					one, u := askChoices(t, ts, tc.path, b, 1, false)
					alone[i], aloneUsage = one[0], u
				}
				if !reflect.DeepEqual(got, alone) {
					t.Errorf("stream %v: choices\n%+v\nwant each as the request alone gives it\n%+v", stream, got, alone)
				}
				for i, a := range got {
					if tc.check != nil {
						tc.check(t, a)
					}
					if tc.tokens != 0 && a.Finish != "length" {
						t.Errorf("stream %v: choice %d finish_reason %q, want length", stream, i, a.Finish)
					}
					if tc.seed == 0 && !reflect.DeepEqual(a, got[0]) {
						t.Errorf("stream %v: greedy choice %d %+v differs from choice 0 %+v", stream, i, a, got[0])
					}
					for j := range i {
						if tc.seed != 0 && reflect.DeepEqual(a, got[j]) {
							t.Errorf("stream %v: seeded choices %d and %d are the same: %+v", stream, j, i, a)
						}
					}
				}
				sum := 0
				for range got {
					sum += tc.tokens
				}
				if tc.tokens == 0 {
					sum = u.CompletionTokens // not fixed: checked against the choices alone below
				}
				if u.PromptTokens != aloneUsage.PromptTokens || u.CompletionTokens != sum || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
					t.Errorf("stream %v: usage %+v: want prompt_tokens %d (once) and completion_tokens %d (all choices)", stream, u, aloneUsage.PromptTokens, sum)
				}
				// The prompt is computed once: the other choices take all
				// of it but its last token from the first one's cache.
				p := int64(u.PromptTokens)
				want := int64(u.PromptTokensDetails.CachedTokens) + int64(tc.n-1)*(p-1)
				if strings.Contains(body, `"cache_prompt":false`) {
					want = 0 // opted out: every choice computes the prompt
				}
				if hits != want {
					t.Errorf("stream %v: %d prompt tokens from the cache, want %d (first choice %d, then %d × %d)",
						stream, hits, want, u.PromptTokensDetails.CachedTokens, tc.n-1, p-1)
				}
			}
		})
	}
}

// TestChoicesBounds: n outside 1…16 is a 400 that names the field, the
// bounds and the value; n = 1 is the plain answer.
func TestChoicesBounds(t *testing.T) {
	ts := newTestServer(t, opts{})
	for _, tc := range []struct {
		path, n string
		want    string // in the message; "" for 200
	}{
		{"/v1/chat/completions", "0", "n: 0 choices asked: want 1 to 16"},
		{"/v1/chat/completions", "17", "n: 17 choices asked: want 1 to 16"},
		{"/v1/completions", "-3", "n: -3 choices asked: want 1 to 16"},
		{"/v1/completions", `"2"`, "n: want an integer, got a JSON string"},
		{"/v1/completions", "16", ""},
		{"/v1/chat/completions", "1", ""},
	} {
		body := `{"prompt":"a","max_tokens":2,"n":` + tc.n + `}`
		if strings.Contains(tc.path, "chat") {
			body = `{"messages":[{"role":"user","content":"a"}],"max_tokens":2,"n":` + tc.n + `}`
		}
		resp := post(t, ts.URL+tc.path, body)
		b := readAll(t, resp)
		if tc.want == "" {
			var r struct{ Choices []json.RawMessage }
			decodeJSON(t, b, &r)
			if n := fmt.Sprint(len(r.Choices)); resp.StatusCode != 200 || n != tc.n {
				t.Errorf("%s n=%s: %d, %s choices: %s", tc.path, tc.n, resp.StatusCode, n, b)
			}
			continue
		}
		var e struct{ Error oaiError }
		decodeJSON(t, b, &e)
		if resp.StatusCode != 400 || e.Error.Param == nil || *e.Error.Param != "n" || e.Error.Message != tc.want {
			t.Errorf("%s n=%s: %d %s; want 400 param n, message %q", tc.path, tc.n, resp.StatusCode, b, tc.want)
		}
	}
}

// TestChoicesFailure: when a choice fails, the request answers that
// failure (not the cancellation of the other choices it causes): here no
// token the JSON schema allows first is left by logit_bias.
func TestChoicesFailure(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 2})
	tok := ts.m.Tokenizer()
	bias := map[string]int{}
	for id := range tok.VocabSize() {
		p, _ := tok.Piece(int32(id))
		if s := strings.TrimLeft(string(p), " \t\n\r"); s == "" || s[0] == '"' {
			bias[fmt.Sprint(id)] = -100
		}
	}
	if len(bias) > 1024 {
		t.Fatalf("%d tokens to ban: over logit_bias's bound", len(bias))
	}
	bb, _ := json.Marshal(bias)
	for _, stream := range []bool{false, true} {
		body := fmt.Sprintf(`{"messages":[{"role":"user","content":"x"}],"n":3,"max_tokens":20,"stream":%v,
			"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"enum":["yes","no"]}}},"logit_bias":%s}`, stream, bb)
		resp := post(t, ts.URL+"/v1/chat/completions", body)
		b := string(readAll(t, resp))
		switch {
		case !stream && (resp.StatusCode != 400 || !strings.Contains(b, "is every one banned by logit_bias")):
			t.Errorf("whole answer: %d %s; want 400 naming logit_bias", resp.StatusCode, b)
		case stream && (resp.StatusCode != 200 || !strings.Contains(b, `"error"`) || !strings.Contains(b, "is every one banned by logit_bias") || strings.Contains(b, "[DONE]")):
			t.Errorf("stream: %d %s; want an error chunk naming logit_bias and no [DONE]", resp.StatusCode, b)
		}
	}
	if _, ok := waitFor(5*time.Second, func() bool { return ts.InFlight() == 0 && ts.m.Stats().Active == 0 }); !ok {
		t.Errorf("after the failures: %d in flight, %d slots busy", ts.InFlight(), ts.m.Stats().Active)
	}
}
