package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"worker-orcd/tokenizer"
)

var micro4kOnce sync.Once

// micro4k is the micro model with a 4096-position context: tool
// instructions take hundreds of its tokens.
func micro4k(t *testing.T) string {
	p := filepath.Join(modelDir, "micro4k.gguf")
	micro4kOnce.Do(func() {
		s := specs["micro"]()
		s.Context = 4096
		if err := s.Write(p); err != nil {
			t.Fatal(err)
		}
	})
	return p
}

const weatherTools = `[{"type":"function","function":{"name":"get_weather","description":"Weather of a city","parameters":{"type":"object","properties":{"city":{"type":"string","maxLength":12},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}}},
{"type":"function","function":{"name":"add","parameters":{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"],"additionalProperties":false}}}]`

// toolAnswer is a chat answer reduced to what stream and non-stream must
// agree on.
type toolAnswer struct {
	Content string
	Calls   [][2]string // name, arguments
	Finish  string
}

func chatTools(t *testing.T, ts *testServer, body string, stream bool) toolAnswer {
	t.Helper()
	if stream {
		body = strings.Replace(body, "{", `{"stream":true,`, 1)
	}
	resp := post(t, ts.URL+"/v1/chat/completions", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, readAll(t, resp))
	}
	var a toolAnswer
	if !stream {
		var cr struct {
			Choices []struct {
				Message struct {
					Content   *string
					ToolCalls []oaiToolCall `json:"tool_calls"`
				}
				FinishReason string `json:"finish_reason"`
			}
		}
		decodeJSON(t, readAll(t, resp), &cr)
		c := cr.Choices[0]
		if c.Message.Content != nil {
			a.Content = *c.Message.Content
		}
		if len(c.Message.ToolCalls) > 0 && c.Message.Content != nil && *c.Message.Content == "" {
			t.Errorf("content \"\" beside tool calls: want null")
		}
		for _, tc := range c.Message.ToolCalls {
			if !strings.HasPrefix(tc.ID, "call_") || tc.Type != "function" {
				t.Errorf("tool call %+v", tc)
			}
			a.Calls = append(a.Calls, [2]string{tc.Function.Name, tc.Function.Arguments})
		}
		a.Finish = c.FinishReason
		return a
	}
	defer resp.Body.Close()
	for _, ev := range readSSE(t, resp.Body) {
		if ev.data == "[DONE]" {
			break
		}
		var ch struct {
			Choices []struct {
				Delta struct {
					Content   *string
					ToolCalls []oaiToolCall `json:"tool_calls"`
				}
				FinishReason *string `json:"finish_reason"`
			}
		}
		decodeJSON(t, []byte(ev.data), &ch)
		for _, c := range ch.Choices {
			if c.Delta.Content != nil {
				a.Content += *c.Delta.Content
			}
			for _, tc := range c.Delta.ToolCalls {
				if tc.Index == nil || *tc.Index != len(a.Calls) {
					t.Errorf("tool call delta index %v, want %d", tc.Index, len(a.Calls))
				}
				a.Calls = append(a.Calls, [2]string{tc.Function.Name, tc.Function.Arguments})
			}
			if c.FinishReason != nil {
				a.Finish = *c.FinishReason
			}
		}
	}
	return a
}

// TestToolsRequired: with tool_choice "required" (and a named function),
// a random-weight model at temperature 1 answers with tool calls whose
// arguments validate against the function's parameters (independent
// validator); streamed and whole answers agree.
func TestToolsRequired(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 2, model: micro4k(t)})
	var tools []struct {
		Function struct {
			Name       string
			Parameters json.RawMessage
		}
	}
	json.Unmarshal([]byte(weatherTools), &tools)
	validators := map[string]*jsonschema.Schema{}
	for _, tl := range tools {
		validators[tl.Function.Name] = compileValidator(t, string(tl.Function.Parameters))
	}
	for _, choice := range []string{`"required"`, `{"type":"function","function":{"name":"add"}}`} {
		for seed := range seedsPerCase() {
			body := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"Weather in Paris?"}],"tools":%s,"tool_choice":%s,"temperature":1,"seed":%d,"max_tokens":200}`, weatherTools, choice, seed)
			whole := chatTools(t, ts, body, false)
			streamed := chatTools(t, ts, body, true)
			if !reflect.DeepEqual(whole, streamed) {
				t.Errorf("%s seed %d: stream %+v, non-stream %+v", choice, seed, streamed, whole)
			}
			if len(whole.Calls) == 0 || whole.Finish != "tool_calls" || whole.Content != "" {
				t.Errorf("%s seed %d: %+v", choice, seed, whole)
				continue
			}
			for _, c := range whole.Calls {
				if strings.Contains(choice, "add") && c[0] != "add" {
					t.Errorf("named add, called %s", c[0])
				}
				inst, err := jsonschema.UnmarshalJSON(strings.NewReader(c[1]))
				if err != nil {
					t.Errorf("arguments %q: %v", c[1], err)
					continue
				}
				if err := validators[c[0]].Validate(inst); err != nil {
					t.Errorf("%s arguments %s: %v", c[0], c[1], err)
				}
			}
		}
	}
}

// TestToolsAuto: with tool_choice auto the answer is free; whatever the
// model writes, stream and non-stream agree, and the history with a tool
// call and its result renders.
func TestToolsAuto(t *testing.T) {
	ts := newTestServer(t, opts{model: micro4k(t)})
	msgs := `[{"role":"user","content":"Weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"c\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"21"}]`
	for seed := range 3 {
		body := fmt.Sprintf(`{"model":"m","messages":%s,"tools":%s,"temperature":1,"seed":%d,"max_tokens":20}`, msgs, weatherTools, seed)
		whole := chatTools(t, ts, body, false)
		streamed := chatTools(t, ts, body, true)
		if !reflect.DeepEqual(whole, streamed) {
			t.Errorf("seed %d: stream %+v, non-stream %+v", seed, streamed, whole)
		}
	}
}

func TestToolErrors(t *testing.T) {
	ts := newTestServer(t, opts{})
	user := `"messages":[{"role":"user","content":"x"}]`
	cases := []struct{ body, want string }{
		{`{` + user + `,"tools":[{"type":"retrieval"}]}`, `only \"function\"`},
		{`{` + user + `,"tools":[{"type":"function","function":{"name":"a b"}}]}`, "function name"},
		{`{` + user + `,"tools":` + weatherTools + `,"tool_choice":{"type":"function","function":{"name":"nope"}}}`, `\"nope\", which is not among the tools`},
		{`{` + user + `,"tool_choice":"required"}`, "needs tools"},
		{`{` + user + `,"tools":` + weatherTools + `,"tool_choice":"sometimes"}`, "tool_choice"},
		{`{` + user + `,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":"number","minimum":0}}}}}],"tool_choice":"required"}`, `keyword \"minimum\"`},
		{`{` + user + `,"tools":` + weatherTools + `,"tool_choice":"required","response_format":{"type":"json_object"}}`, "leave out response_format"},
	}
	for _, c := range cases {
		resp := post(t, ts.URL+"/v1/chat/completions", c.body)
		b := readAll(t, resp)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %d %s, want 400 with %s", c.body, resp.StatusCode, b, c.want)
		}
	}
}

// TestToolParser: calls are parsed however the text is split into pieces;
// text that is not a call stays content; whitespace around calls is not
// content.
func TestToolParser(t *testing.T) {
	ts := &toolSetup{tools: []oaiTool{{Type: "function"}}}
	ts.tools[0].Function.Name = "f"
	text := "Sure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": [1, 2]}}\n</tool_call>\n<tool_call>{\"name\":\"g\"}</tool_call> <tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"y\\\":1}\"}\n</tool_call>\n<tool"
	type out struct {
		content string
		calls   []string
	}
	run := func(pieces []string) out {
		p := &toolParser{ts: ts}
		var o out
		for _, s := range pieces {
			c, calls := p.feed(s)
			o.content += c
			for _, cl := range calls {
				o.calls = append(o.calls, cl.Function.Name+" "+cl.Function.Arguments)
			}
		}
		o.content += p.flush()
		return o
	}
	want := out{"Sure.\n<tool_call>{\"name\":\"g\"}</tool_call>\n<tool", []string{`f {"x":[1,2]}`, `f {"y":1}`}}
	for size := 1; size <= len(text); size += 3 {
		var pieces []string
		for i := 0; i < len(text); i += size {
			pieces = append(pieces, text[i:min(i+size, len(text))])
		}
		if got := run(pieces); !reflect.DeepEqual(got, want) {
			t.Fatalf("pieces of %d: %+v, want %+v", size, got, want)
		}
	}
}

// TestToolFallbackRendering: a template without tools gets the
// instructions in the system message and calls and results as text.
func TestToolFallbackRendering(t *testing.T) {
	var render []any
	json.Unmarshal([]byte(weatherTools), &render)
	msgs := withoutToolTemplate([]tokenizer.Message{
		{Role: "user", Content: "Weather?"},
		{Role: "assistant", ToolCalls: []tokenizer.ToolCall{{ID: "c", Name: "get_weather", Arguments: map[string]any{"city": "Paris"}}}},
		{Role: "tool", Content: "21"},
	}, render)
	if len(msgs) != 4 || msgs[0].Role != "system" || !strings.Contains(msgs[0].Content, "<tools>") ||
		msgs[2].Content != "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call>" ||
		msgs[3].Role != "user" || msgs[3].Content != "<tool_response>\n21\n</tool_response>" {
		t.Fatalf("%+v", msgs)
	}
}
