package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"worker-orcd/engine"
	"worker-orcd/grammar"
	"worker-orcd/tokenizer"
)

// Tool calling (OpenAI's tools and tool_choice) follows the Hermes/Qwen
// convention that Qwen2.5's chat template teaches the model: the tools are
// rendered through the template (its tools variable), and the model calls
// a function by writing
//
//	<tool_call>
//	{"name": "get_weather", "arguments": {"city": "Paris"}}
//	</tool_call>
//
// which the worker parses into tool_calls. With tool_choice "required" or a
// named function the output is constrained to such calls, the arguments to
// the function's parameters schema. A template that does not use tools
// gets the same instructions in the system message instead (and tool
// calls and results as text in the turns).

const (
	toolCallOpen  = "<tool_call>"
	toolCallClose = "</tool_call>"
	maxTools      = 128
	maxParallel   = 4 // calls in one answer when parallel_tool_calls is not false
)

var toolNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// oaiTool is one entry of tools.
type oaiTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	} `json:"function"`
}

// oaiToolCall is a call in a response (arguments: a JSON text).
type oaiToolCall struct {
	Index    *int   `json:"index,omitempty"` // in stream deltas
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// toolSetup is what a chat request's tools ask of the generation.
type toolSetup struct {
	tools  []oaiTool
	render []any // the tools as the template sees them
	choice string
	named  string // tool_choice naming a function
	parse  bool   // parse tool calls out of the answer
}

// parseTools checks tools and tool_choice.
func parseTools(rawTools, rawChoice json.RawMessage) (*toolSetup, *apiError) {
	ts := &toolSetup{choice: "auto"}
	if present(rawTools) {
		if err := json.Unmarshal(rawTools, &ts.tools); err != nil {
			return nil, badRequest("tools", "want an array of {\"type\": \"function\", \"function\": {\"name\", \"description\", \"parameters\"}}")
		}
		if len(ts.tools) > maxTools {
			return nil, badRequest("tools", "%d tools: want at most %d", len(ts.tools), maxTools)
		}
		seen := map[string]bool{}
		for i, t := range ts.tools {
			if t.Type != "function" {
				return nil, badRequest("tools", "tool %d has type %q: only \"function\" is supported", i, strings.ToValidUTF8(t.Type, "?"))
			}
			if !toolNameRE.MatchString(t.Function.Name) {
				return nil, badRequest("tools", "tool %d: function name %q must be 1 to 64 letters, digits, _ or -", i, strings.ToValidUTF8(t.Function.Name, "?"))
			}
			if seen[t.Function.Name] {
				return nil, badRequest("tools", "function %q is defined twice", t.Function.Name)
			}
			seen[t.Function.Name] = true
			if present(t.Function.Parameters) && bytes.TrimSpace(t.Function.Parameters)[0] != '{' {
				return nil, badRequest("tools", "function %q: parameters must be a JSON Schema object", t.Function.Name)
			}
		}
		var render []any
		json.Unmarshal(rawTools, &render) // checked above
		ts.render = render
	}
	if present(rawChoice) {
		var s string
		if json.Unmarshal(rawChoice, &s) == nil {
			switch s {
			case "none", "auto", "required":
				ts.choice = s
			default:
				return nil, badRequest("tool_choice", "%q: want \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}", s)
			}
		} else {
			var named struct {
				Type     string `json:"type"`
				Function struct {
					Name string `json:"name"`
				} `json:"function"`
			}
			if json.Unmarshal(rawChoice, &named) != nil || named.Type != "function" || named.Function.Name == "" {
				return nil, badRequest("tool_choice", "want \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}")
			}
			ts.choice, ts.named = "function", named.Function.Name
		}
	}
	if len(ts.tools) == 0 {
		if ts.choice == "required" || ts.named != "" {
			return nil, badRequest("tool_choice", "%s needs tools", string(bytes.TrimSpace(rawChoice)))
		}
		return ts, nil
	}
	if ts.named != "" && !ts.has(ts.named) {
		return nil, badRequest("tool_choice", "names function %q, which is not among the tools", ts.named)
	}
	ts.parse = ts.choice != "none"
	return ts, nil
}

func (ts *toolSetup) has(name string) bool {
	for _, t := range ts.tools {
		if t.Function.Name == name {
			return true
		}
	}
	return false
}

// constrained reports whether the answer must be tool calls.
func (ts *toolSetup) constrained() bool { return ts.choice == "required" || ts.named != "" }

// automaton compiles the grammar of the answer when it must be tool
// calls: one (or, with parallel calls, up to maxParallel) <tool_call>
// blocks, each {"name": <a tool's name>, "arguments": <its parameters>}.
func (ts *toolSetup) automaton(m *engine.Model, parallel bool) (*grammar.Automaton, *apiError) {
	var branches []string
	defs := map[string]json.RawMessage{}
	for _, t := range ts.tools {
		f := t.Function
		if ts.named != "" && f.Name != ts.named {
			continue
		}
		params := f.Parameters
		if !present(params) {
			params = json.RawMessage(`{"type":"object","properties":{},"additionalProperties":false}`)
		}
		// $defs of the parameters move to the root of the combined schema,
		// where their "#/$defs/…" references point.
		var top map[string]json.RawMessage
		if json.Unmarshal(params, &top) == nil {
			for _, k := range []string{"$defs", "definitions"} {
				var d map[string]json.RawMessage
				if json.Unmarshal(top[k], &d) != nil {
					continue
				}
				for name, v := range d {
					key := k + "\x00" + name
					if old, ok := defs[key]; ok && !bytes.Equal(old, v) {
						return nil, badRequest("tools", "functions define %s %q differently: rename one", k, name)
					}
					defs[key] = v
				}
			}
		}
		name, _ := json.Marshal(f.Name)
		branches = append(branches, fmt.Sprintf(`{"type":"object","properties":{"name":{"const":%s},"arguments":%s},"required":["name","arguments"],"additionalProperties":false}`, name, params))
	}
	var sb strings.Builder
	sb.WriteString(`{"anyOf":[` + strings.Join(branches, ",") + `]`)
	for _, k := range []string{"$defs", "definitions"} {
		first := true
		for key, v := range defs {
			kind, name, _ := strings.Cut(key, "\x00")
			if kind != k {
				continue
			}
			if first {
				fmt.Fprintf(&sb, `,%q:{`, k)
			} else {
				sb.WriteByte(',')
			}
			first = false
			n, _ := json.Marshal(name)
			sb.Write(n)
			sb.WriteByte(':')
			sb.Write(v)
		}
		if !first {
			sb.WriteByte('}')
		}
	}
	sb.WriteByte('}')
	schema := sb.String()
	extra := 0
	if parallel && ts.named == "" {
		extra = maxParallel - 1
	}
	key := fmt.Sprintf("tools\x00%d\x00%s", extra, schema)
	a, err := m.CompiledGrammar(key, func() (*grammar.Grammar, error) {
		return grammar.CompileSchemaWrapped([]byte(schema), func(v string) string {
			call := `"` + toolCallOpen + `\n" ` + v + ` "\n` + toolCallClose + `"`
			if extra == 0 {
				return call
			}
			return fmt.Sprintf(`%s ("\n" %s){0,%d}`, call, call, extra)
		})
	})
	if err != nil {
		var ge *grammar.Error
		if asGrammarError(err, &ge) {
			return nil, badRequest("tools", "a function's parameters: %s", ge.Error())
		}
		return nil, badRequest("tools", "%v", err)
	}
	return a, nil
}

// toolSystemPrompt is the fallback for templates that do not render tools:
// Qwen's instructions, in the system message.
func toolSystemPrompt(render []any) string {
	var sb strings.Builder
	sb.WriteString("# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>")
	for _, t := range render {
		b, _ := json.Marshal(t)
		sb.WriteString("\n")
		sb.Write(b)
	}
	sb.WriteString("\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>")
	return sb.String()
}

// templateRendersTools reports whether a chat template uses the tools
// variable.
func templateRendersTools(tmpl string) bool {
	return strings.Contains(tmpl, "tools")
}

// withoutToolTemplate rewrites messages for a template that does not know
// tools: the instructions join the system message, tool calls become the
// assistant's text and tool results user turns in <tool_response> tags
// (what Qwen's template writes).
func withoutToolTemplate(msgs []tokenizer.Message, render []any) []tokenizer.Message {
	out := make([]tokenizer.Message, 0, len(msgs)+1)
	sys := toolSystemPrompt(render)
	if len(msgs) > 0 && msgs[0].Role == "system" {
		out = append(out, tokenizer.Message{Role: "system", Content: msgs[0].Content + "\n\n" + sys})
		msgs = msgs[1:]
	} else if render != nil {
		out = append(out, tokenizer.Message{Role: "system", Content: sys})
	}
	for _, m := range msgs {
		switch {
		case m.Role == "assistant" && len(m.ToolCalls) > 0:
			var sb strings.Builder
			sb.WriteString(m.Content)
			for _, c := range m.ToolCalls {
				if sb.Len() > 0 {
					sb.WriteByte('\n')
				}
				name, _ := json.Marshal(c.Name)
				args, _ := json.Marshal(c.Arguments)
				fmt.Fprintf(&sb, "%s\n{\"name\": %s, \"arguments\": %s}\n%s", toolCallOpen, name, args, toolCallClose)
			}
			out = append(out, tokenizer.Message{Role: "assistant", Content: sb.String()})
		case m.Role == "tool":
			out = append(out, tokenizer.Message{Role: "user", Content: "<tool_response>\n" + m.Content + "\n</tool_response>"})
		default:
			out = append(out, tokenizer.Message{Role: m.Role, Content: m.Content})
		}
	}
	return out
}

// parseMessageToolCalls reads an assistant message's tool_calls (arguments
// as a JSON text, OpenAI's shape) for the template.
func parseMessageToolCalls(i int, raw json.RawMessage) ([]tokenizer.ToolCall, *apiError) {
	if !present(raw) {
		return nil, nil
	}
	var calls []oaiToolCall
	if err := json.Unmarshal(raw, &calls); err != nil {
		return nil, badRequest("messages", "message %d: tool_calls must be an array of {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}", i)
	}
	out := make([]tokenizer.ToolCall, len(calls))
	for j, c := range calls {
		var args any = c.Function.Arguments
		var obj any
		if json.Unmarshal([]byte(c.Function.Arguments), &obj) == nil {
			args = obj
		}
		out[j] = tokenizer.ToolCall{ID: c.ID, Name: c.Function.Name, Arguments: args}
	}
	return out, nil
}

// toolParser splits generated text into content and tool calls as it
// streams. Content that could still begin a <tool_call> is held back, and
// so is whitespace until more content follows (whitespace around calls is
// not content); a call is reported once its closing tag has arrived. The
// non-streaming answer runs the same parser over the same pieces, so the
// two agree.
type toolParser struct {
	ts       *toolSetup
	pending  string // text not yet decided
	held     string // whitespace held back until content follows
	inCall   bool
	calls    int
	unclosed bool // the text ended inside a <tool_call> (flush)
}

// finish is the finish_reason of an answer with tool calls: "tool_calls"
// when every call was closed, else the engine's reason.
func (p *toolParser) finish(fr string) string {
	if p.calls > 0 && !p.unclosed {
		return "tool_calls"
	}
	return fr
}

// feed takes the next piece of text and returns the content it releases
// and the calls it completes.
func (p *toolParser) feed(text string) (string, []oaiToolCall) {
	p.pending += text
	var content strings.Builder
	var calls []oaiToolCall
	for {
		if p.inCall {
			i := strings.Index(p.pending, toolCallClose)
			if i < 0 {
				break
			}
			body := p.pending[:i]
			p.pending = p.pending[i+len(toolCallClose):]
			p.inCall = false
			if c, ok := p.parseCall(body); ok {
				calls = append(calls, c)
			} else {
				p.emit(&content, toolCallOpen+body+toolCallClose)
			}
			continue
		}
		if i := strings.Index(p.pending, toolCallOpen); i >= 0 {
			p.emit(&content, p.pending[:i])
			p.pending = p.pending[i+len(toolCallOpen):]
			p.inCall = true
			continue
		}
		keep := partialSuffix(p.pending, toolCallOpen)
		p.emit(&content, p.pending[:len(p.pending)-keep])
		p.pending = p.pending[len(p.pending)-keep:]
		break
	}
	return content.String(), calls
}

// flush ends the text: an unclosed call and text held back are content,
// except whitespace after calls.
func (p *toolParser) flush() string {
	var content strings.Builder
	rest := p.pending
	if p.inCall {
		rest = toolCallOpen + rest
		p.unclosed = true
	}
	p.pending, p.inCall = "", false
	p.emit(&content, rest)
	if p.calls == 0 {
		content.WriteString(p.held)
	}
	p.held = ""
	return content.String()
}

func (p *toolParser) emit(sb *strings.Builder, s string) {
	body := strings.TrimRightFunc(s, unicode.IsSpace)
	if body != "" {
		sb.WriteString(p.held)
		sb.WriteString(body)
		p.held = ""
	}
	p.held += s[len(body):] // whitespace waits for what follows it
}

func (p *toolParser) parseCall(body string) (oaiToolCall, bool) {
	var c oaiToolCall
	var raw struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if json.Unmarshal([]byte(strings.TrimSpace(body)), &raw) != nil || !p.ts.has(raw.Name) {
		return c, false
	}
	args := raw.Arguments
	if !present(args) {
		args = json.RawMessage("{}")
	}
	var s string
	if json.Unmarshal(args, &s) == nil { // arguments given as a JSON text
		args = json.RawMessage(s)
	}
	var compact bytes.Buffer
	if json.Compact(&compact, args) != nil {
		return c, false
	}
	c.ID, c.Type = "call_"+randomHex(12), "function"
	c.Function.Name, c.Function.Arguments = raw.Name, compact.String()
	idx := p.calls
	c.Index = &idx
	p.calls++
	p.held = "" // whitespace before a call is not content
	return c, true
}

// partialSuffix is the length of the longest suffix of s that is a proper
// prefix of tag.
func partialSuffix(s, tag string) int {
	for n := min(len(s), len(tag)-1); n > 0; n-- {
		if strings.HasSuffix(s, tag[:n]) {
			return n
		}
	}
	return 0
}

// MarshalJSON writes content as null when the answer is tool calls only.
func (m chatMessageOut) MarshalJSON() ([]byte, error) {
	type plain chatMessageOut
	if !m.noContent {
		return json.Marshal(plain(m))
	}
	return json.Marshal(struct {
		plain
		Content *string `json:"content"`
	}{plain: plain(m)})
}
