package server

import (
	"fmt"
	"slices"

	"worker-orcd/tokenizer"

	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// oaiStream reads an OpenAI stream: data-only events ending with [DONE].
func oaiStream(t *testing.T, resp *http.Response) []json.RawMessage {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), readAll(t, resp))
	}
	evs := readSSE(t, resp.Body)
	if len(evs) == 0 || evs[len(evs)-1].data != "[DONE]" {
		t.Fatalf("stream does not end with [DONE]: %+v", evs)
	}
	var out []json.RawMessage
	for _, ev := range evs[:len(evs)-1] {
		if ev.name != "" {
			t.Fatalf("named event %q in an OpenAI stream", ev.name)
		}
		out = append(out, json.RawMessage(ev.data))
	}
	return out
}

func TestChatCompletion(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 2})
	body := `{"model":"anything","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]}],
		"max_tokens":5,"temperature":0,"seed":42,"logprobs":true,"top_logprobs":2,"ignore_eos":true}`
	resp := post(t, ts.URL+"/v1/chat/completions", body)
	b := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	var cr chatResponse
	decodeJSON(t, b, &cr)
	c := cr.Choices
	if cr.Object != "chat.completion" || !strings.HasPrefix(cr.ID, "chatcmpl-") || cr.Model != "micro" || len(c) != 1 ||
		c[0].Message.Role != "assistant" || c[0].FinishReason != "length" || cr.Usage.CompletionTokens != 5 ||
		cr.Usage.PromptTokens == 0 || cr.Usage.TotalTokens != cr.Usage.PromptTokens+5 {
		t.Fatalf("response %s", b)
	}
	if c[0].Logprobs == nil || len(c[0].Logprobs.Content) != 5 || len(c[0].Logprobs.Content[0].TopLogprobs) != 2 {
		t.Fatalf("logprobs %s", b)
	}
	var joined string
	for _, e := range c[0].Logprobs.Content {
		joined += e.Token
		if e.Logprob > 0 || e.TopLogprobs[0].Logprob < e.TopLogprobs[1].Logprob {
			t.Errorf("logprob entry %+v", e)
		}
	}

	// The same request streamed, with usage.
	sbody := strings.Replace(body, `"max_tokens":5`, `"max_tokens":5,"stream":true,"stream_options":{"include_usage":true}`, 1)
	chunks := oaiStream(t, post(t, ts.URL+"/v1/chat/completions", sbody))
	var text string
	var finish string
	var usage *oaiUsage
	for i, raw := range chunks {
		var ch struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Choices []struct {
				Delta struct {
					Role    string  `json:"role"`
					Content *string `json:"content"`
				} `json:"delta"`
				Logprobs     *chatLogprobs `json:"logprobs"`
				FinishReason *string       `json:"finish_reason"`
			} `json:"choices"`
			Usage *oaiUsage `json:"usage"`
		}
		decodeJSON(t, raw, &ch)
		if ch.Object != "chat.completion.chunk" || !strings.HasPrefix(ch.ID, "chatcmpl-") {
			t.Fatalf("chunk %s", raw)
		}
		if !strings.Contains(string(raw), `"usage":`) {
			t.Errorf("chunk without usage (include_usage): %s", raw)
		}
		if i == 0 && (len(ch.Choices) != 1 || ch.Choices[0].Delta.Role != "assistant") {
			t.Errorf("first chunk %s", raw)
		}
		if i == len(chunks)-1 {
			if len(ch.Choices) != 0 || ch.Usage == nil {
				t.Errorf("last chunk %s, want no choices and usage", raw)
			}
			usage = ch.Usage
			continue
		}
		if ch.Usage != nil {
			t.Errorf("usage before the last chunk: %s", raw)
		}
		if d := ch.Choices[0].Delta.Content; d != nil {
			text += *d
		}
		if f := ch.Choices[0].FinishReason; f != nil {
			finish = *f
		}
	}
	// The same counts; the stream ran second, so its prompt came from the
	// slot's cache (all but its last token).
	if usage != nil {
		if want := cr.Usage.PromptTokens - 1; usage.PromptTokensDetails.CachedTokens != want {
			t.Errorf("stream: %d cached prompt tokens, want %d (the request before had the same prompt)", usage.PromptTokensDetails.CachedTokens, want)
		}
		usage.PromptTokensDetails = cr.Usage.PromptTokensDetails
	}
	if text != c[0].Message.Content || finish != "length" || usage == nil || *usage != cr.Usage {
		t.Errorf("stream: %q %q %+v; non-stream: %q %+v", text, finish, usage, c[0].Message.Content, cr.Usage)
	}

	// "cache_prompt": false opts out of the prefix cache: the same prompt a
	// third time, computed whole (and the same answer).
	resp = post(t, ts.URL+"/v1/chat/completions", strings.Replace(body, `"ignore_eos":true`, `"ignore_eos":true,"cache_prompt":false`, 1))
	b = readAll(t, resp)
	var nc chatResponse
	decodeJSON(t, b, &nc)
	if resp.StatusCode != 200 || nc.Usage.PromptTokensDetails.CachedTokens != 0 || len(nc.Choices) != 1 || nc.Choices[0].Message.Content != c[0].Message.Content {
		t.Errorf("cache_prompt false: %d %s, want no cached tokens and the answer %q", resp.StatusCode, b, c[0].Message.Content)
	}

	// max_completion_tokens; no include_usage → no usage key at all.
	chunks = oaiStream(t, post(t, ts.URL+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"Hi"}],"max_completion_tokens":3,"stream":true}`))
	for _, raw := range chunks {
		if strings.Contains(string(raw), `"usage"`) {
			t.Errorf("usage without include_usage: %s", raw)
		}
	}
}

func TestCompletion(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 2})
	resp := post(t, ts.URL+"/v1/completions", `{"model":"m","prompt":"Hello","max_tokens":6,"temperature":0,"logprobs":3,"ignore_eos":true}`)
	b := readAll(t, resp)
	var cr completionResponse
	decodeJSON(t, b, &cr)
	if resp.StatusCode != 200 || cr.Object != "text_completion" || len(cr.Choices) != 1 || cr.Usage == nil || cr.Usage.CompletionTokens != 6 ||
		*cr.Choices[0].FinishReason != "length" || cr.Choices[0].Logprobs == nil || len(cr.Choices[0].Logprobs.Tokens) != 6 ||
		len(cr.Choices[0].Logprobs.TopLogprobs[0]) == 0 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	// The native API gives the same greedy text.
	if r := ts.execute(t, `{"prompt":"Hello","max_tokens":6,"temperature":0,"ignore_eos":true}`); r.text != cr.Choices[0].Text {
		t.Errorf("completions %q, execute %q", cr.Choices[0].Text, r.text)
	}
	// Prompt as token ids and as an array of one string; stop as a string.
	for _, p := range []string{`["Hello"]`, `[` + idsJSON(t, ts, "Hello") + `]`, idsJSON(t, ts, "Hello")} {
		resp := post(t, ts.URL+"/v1/completions", `{"prompt":`+p+`,"max_tokens":6,"temperature":0,"ignore_eos":true,"stop":"\u0000never"}`)
		b := readAll(t, resp)
		var c2 completionResponse
		decodeJSON(t, b, &c2)
		if resp.StatusCode != 200 || c2.Choices[0].Text != cr.Choices[0].Text {
			t.Errorf("prompt %s: %d %s", p, resp.StatusCode, b)
		}
	}
	// Streamed, with usage.
	chunks := oaiStream(t, post(t, ts.URL+"/v1/completions", `{"prompt":"Hello","max_tokens":6,"temperature":0,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}`))
	var text, finish string
	for i, raw := range chunks {
		var ch completionResponse
		decodeJSON(t, raw, &ch)
		if i == len(chunks)-1 {
			if len(ch.Choices) != 0 || ch.Usage == nil || *ch.Usage != *cr.Usage {
				t.Errorf("last chunk %s", raw)
			}
			continue
		}
		text += ch.Choices[0].Text
		if f := ch.Choices[0].FinishReason; f != nil {
			finish = *f
		}
	}
	if text != cr.Choices[0].Text || finish != "length" {
		t.Errorf("stream %q %q, want %q length", text, finish, cr.Choices[0].Text)
	}
	// The default max_tokens is OpenAI's 16.
	resp = post(t, ts.URL+"/v1/completions", `{"prompt":"Hello","ignore_eos":true}`)
	decodeJSON(t, readAll(t, resp), &cr)
	if cr.Usage.CompletionTokens != 16 {
		t.Errorf("default max_tokens: %d tokens", cr.Usage.CompletionTokens)
	}
}

func idsJSON(t *testing.T, ts *testServer, text string) string {
	ids, err := ts.m.Tokenizer().Encode(text, tokenizerOpts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ids)
	return string(b)
}

func TestModels(t *testing.T) {
	ts := newTestServer(t, opts{})
	var list struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}
	decodeJSON(t, readAll(t, get(t, ts.URL+"/v1/models")), &list)
	if list.Object != "list" || len(list.Data) != 1 || list.Data[0].ID != "micro" || list.Data[0].Object != "model" {
		t.Fatalf("%+v", list)
	}
	resp := get(t, ts.URL+"/v1/models/micro")
	if b := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(string(b), `"id":"micro"`) {
		t.Errorf("/v1/models/micro: %d %s", resp.StatusCode, b)
	}
	resp = get(t, ts.URL+"/v1/models/other")
	if b := readAll(t, resp); resp.StatusCode != 404 || !strings.Contains(string(b), `"code":"model_not_found"`) {
		t.Errorf("/v1/models/other: %d %s", resp.StatusCode, b)
	}
}

// TestOpenAIErrors: 4xx in OpenAI's shape, naming the parameter.
func TestOpenAIErrors(t *testing.T) {
	ts := newTestServer(t, opts{})
	cases := []struct {
		path, body, param, code string
		status                  int
	}{
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"n":17}`, "n", "invalid_request", 400},
		{"/v1/chat/completions", `{"messages":[]}`, "messages", "invalid_request", 400},
		{"/v1/chat/completions", `{"messages":[{"role":"wizard","content":"x"}]}`, "messages", "invalid_request", 400},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, "messages", "invalid_request", 400},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"top_logprobs":2}`, "top_logprobs", "invalid_request", 400},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"max_tokens":100000}`, "max_tokens", "context_length_exceeded", 400},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}`, "tools", "invalid_request", 400},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"temperature":3}`, "temperature", "invalid_request", 400},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"frobnicate":1}`, "frobnicate", "invalid_request", 400},
		{"/v1/completions", `{"prompt":["a","b"]}`, "prompt", "invalid_request", 400},
		{"/v1/completions", `{"prompt":"a","n":0}`, "n", "invalid_request", 400},
		{"/v1/completions", `{"prompt":"a","max_tokens":"lots"}`, "max_tokens", "invalid_request", 400},
		{"/v1/completions", `{"prompt":"a","logprobs":50}`, "logprobs", "invalid_request", 400},
		{"/v1/completions", `{"prompt":"a","stream_options":{"include_usage":true}}`, "stream_options", "invalid_request", 400},
		{"/v1/completions", `{"prompt":"` + strings.Repeat("word ", 600) + `","max_tokens":1}`, "prompt", "context_length_exceeded", 400},
		{"/v1/completions", `{"prompt":[999999]}`, "prompt", "invalid_request", 400},
		{"/v1/completions", `{"prompt":"a","presence_penalty":2.5}`, "presence_penalty", "invalid_request", 400},
		{"/v1/completions", `{"prompt":"a","logit_bias":{"x":1}}`, "logit_bias", "invalid_request", 400},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"logit_bias":{"5":-150}}`, "logit_bias", "invalid_request", 400},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"top_p":1.5}`, "top_p", "invalid_request", 400},
		{"/v1/nothing", `{}`, "", "not_found", 404},
	}
	for _, c := range cases {
		resp := post(t, ts.URL+c.path, c.body)
		b := readAll(t, resp)
		var e struct {
			Error oaiError `json:"error"`
		}
		decodeJSON(t, b, &e)
		param := ""
		if e.Error.Param != nil {
			param = *e.Error.Param
		}
		if resp.StatusCode != c.status || e.Error.Code == nil || *e.Error.Code != c.code || param != c.param || e.Error.Message == "" || e.Error.Type == "" {
			t.Errorf("%s %.80s: %d %s; want %d param %q code %q", c.path, c.body, resp.StatusCode, b, c.status, c.param, c.code)
		}
	}
	resp := get(t, ts.URL+"/v1/chat/completions")
	if b := readAll(t, resp); resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" || !strings.Contains(string(b), `"error"`) {
		t.Errorf("GET /v1/chat/completions: %d %s", resp.StatusCode, b)
	}
}

// TestOpenAIPenaltiesAndBias: logit_bias +100 forces its token and -100
// bans it, top_p 0 is the most likely token whatever the seed, presence
// and frequency penalties change a greedy run, user is accepted.
func TestOpenAIPenaltiesAndBias(t *testing.T) {
	ts := newTestServer(t, opts{})
	tok := ts.m.Tokenizer()
	complete := func(extra string) (string, []string) {
		t.Helper()
		resp := post(t, ts.URL+"/v1/completions", `{"prompt":"Once upon a time","max_tokens":8,"ignore_eos":true,"logprobs":0,"user":"u-1"`+extra+`}`)
		b := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", extra, resp.StatusCode, b)
		}
		var r completionResponse
		decodeJSON(t, b, &r)
		return r.Choices[0].Text, r.Choices[0].Logprobs.Tokens
	}
	greedyText, greedyToks := complete(`,"temperature":0`)
	ids, err := tok.Encode("a", tokenizer.EncodeOptions{})
	if err != nil || len(ids) != 1 {
		t.Fatalf("encode a: %v %v", ids, err)
	}
	a := ids[0]
	piece, _ := pieceOf(tok, a)
	for _, temp := range []string{"0", "1", "2"} {
		text, _ := complete(fmt.Sprintf(`,"temperature":%s,"seed":5,"logit_bias":{"%d":100}`, temp, a))
		if text != strings.Repeat(piece, 8) {
			t.Errorf("temperature %s, +100 on %q: %q", temp, piece, text)
		}
	}
	// Ban the greedy run's first token.
	first := greedyToks[0]
	firstIDs, _ := tok.Encode(first, tokenizer.EncodeOptions{})
	if len(firstIDs) == 1 {
		_, toks := complete(fmt.Sprintf(`,"temperature":0,"logit_bias":{"%d":-100}`, firstIDs[0]))
		if slices.Contains(toks, first) {
			t.Errorf("banned %q generated: %q", first, toks)
		}
	}
	for _, seed := range []string{"1", "2", "3"} {
		if text, _ := complete(`,"temperature":1.5,"top_p":0,"seed":` + seed); text != greedyText {
			t.Errorf("top_p 0, seed %s: %q, greedy %q", seed, text, greedyText)
		}
	}
	if text, _ := complete(`,"temperature":0,"presence_penalty":2,"frequency_penalty":2`); text == greedyText {
		t.Errorf("penalties changed nothing: %q", text)
	}
	// Out of the vocabulary.
	resp := post(t, ts.URL+"/v1/completions", fmt.Sprintf(`{"prompt":"x","logit_bias":{"%d":5}}`, tok.VocabSize()))
	if b := readAll(t, resp); resp.StatusCode != 400 || !strings.Contains(string(b), `"param":"logit_bias"`) {
		t.Errorf("bias outside the vocabulary: %d %s", resp.StatusCode, b)
	}
}
