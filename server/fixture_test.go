package server

import (
	"strings"
	"testing"

	"worker-orcd/internal/fixtures"
)

// TestFixtureModels serves the real fixture models (real tokenizers and
// chat templates): health facts, a chat completion and a native stream.
func TestFixtureModels(t *testing.T) {
	for _, c := range []struct{ file, tokKind string }{
		{"qwen2-tiny-Q4_K_M.gguf", "gpt2"},
		{"phi3-small-Q4_K_M.gguf", "llama"},
	} {
		t.Run(c.file, func(t *testing.T) {
			path := fixtures.Path(t, "models", c.file) // skips only when absent
			ts := newTestServer(t, opts{model: path, parallel: 2})
			h := ts.health(t)
			if h.QuantKind != "Q4_K_M" || h.TokenizerKind != c.tokKind || h.Model != strings.TrimSuffix(c.file, ".gguf") {
				t.Errorf("health %+v", h)
			}
			resp := post(t, ts.URL+"/v1/chat/completions", `{"messages":[{"role":"user","content":"Hello"}],"max_tokens":4,"temperature":0}`)
			b := readAll(t, resp)
			var cr chatResponse
			decodeJSON(t, b, &cr)
			if resp.StatusCode != 200 || len(cr.Choices) != 1 || cr.Usage.PromptTokens < 5 {
				t.Errorf("chat: %d %s", resp.StatusCode, b)
			}
			r := ts.execute(t, `{"prompt":"The capital of France is","max_tokens":4,"temperature":0}`)
			if r.end == nil {
				t.Errorf("execute: %+v", r.events)
			}
		})
	}
}
