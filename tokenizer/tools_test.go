package tokenizer

import (
	"strings"
	"testing"

	"worker-orcd/internal/fixtures"
)

// TestChatTools renders tools, an assistant's tool call and the tool's
// answer through the Qwen template of the fixture vocabulary.
func TestChatTools(t *testing.T) {
	tok, err := Load(fixtures.VocabPath(t, "qwen2"))
	if err != nil {
		t.Fatal(err)
	}
	tools := []any{map[string]any{"type": "function", "function": map[string]any{"name": "get_weather",
		"description": "Weather of a city", "parameters": map[string]any{"type": "object",
			"properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []any{"city"}}}}}
	msgs := []Message{
		{Role: "user", Content: "Weather in Paris?"},
		{Role: "assistant", ToolCalls: []ToolCall{{ID: "call_1", Name: "get_weather", Arguments: map[string]any{"city": "Paris"}}}},
		{Role: "tool", ToolCallID: "call_1", Content: `{"temp": 21}`},
	}
	p := tok.ApplyChatTemplate(msgs, ChatOptions{AddGenerationPrompt: true, Tools: tools})
	if p.Warning != "" {
		t.Fatal(p.Warning)
	}
	for _, want := range []string{"<tools>", `"name": "get_weather"`, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call>",
		"<tool_response>\n{\"temp\": 21}\n</tool_response>", "<|im_start|>assistant\n"} {
		if !strings.Contains(p.Text, want) {
			t.Errorf("missing %q in\n%s", want, p.Text)
		}
	}
}
