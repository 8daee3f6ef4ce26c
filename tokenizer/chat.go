package tokenizer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nikolalohinski/gonja/v2"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
)

// Message is one chat turn.
type Message struct {
	Role    string `json:"role"` // "system", "user", "assistant", "tool"
	Content string `json:"content"`
	// ToolCalls are the function calls of an assistant turn, rendered as
	// the template's message.tool_calls ({"id", "type": "function",
	// "function": {"name", "arguments"}}).
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ToolCallID and Name identify the call a "tool" turn answers.
	ToolCallID string `json:"tool_call_id,omitempty"`
	Name       string `json:"name,omitempty"`
}

// ToolCall is one function call of an assistant turn.
type ToolCall struct {
	ID        string
	Name      string
	Arguments any // a decoded JSON object (templates render it with tojson), or a string
}

// ChatOptions controls ApplyChatTemplate.
type ChatOptions struct {
	// AddGenerationPrompt ends the prompt with the assistant's header so the
	// model answers next.
	AddGenerationPrompt bool
	// Template replaces the vocabulary's tokenizer.chat_template when not "".
	Template string
	// Vars are extra template variables (enable_thinking, …). They never
	// replace the variables the renderer sets itself (ReservedChatVars).
	Vars map[string]any
	// Tools, when not nil, is the template's tools variable: OpenAI's
	// tool definitions ({"type": "function", "function": {"name",
	// "description", "parameters"}}) as decoded JSON.
	Tools []any
}

// Chat template sources reported in ChatPrompt.Source.
const (
	SourceGGUF   = "gguf"   // tokenizer.chat_template
	SourceOption = "option" // ChatOptions.Template
	SourceChatML = "chatml" // built-in ChatML (Qwen)
	SourcePhi3   = "phi3"   // built-in Phi-3 format
)

// ChatPrompt is a rendered chat prompt.
type ChatPrompt struct {
	Text   string
	Source string // SourceGGUF, SourceOption, SourceChatML or SourcePhi3
	// Warning says why a built-in format was used instead of a template
	// ("" when the template rendered). Callers should log it.
	Warning string
}

// ApplyChatTemplate renders messages with the Jinja chat template (gonja,
// with HF's trim_blocks and lstrip_blocks), the variables messages,
// add_generation_prompt, bos_token and eos_token, raise_exception and
// opts.Vars. When there is no template, or it fails to parse or render, a
// built-in format is used instead (Phi-3 when the vocabulary has <|user|>,
// <|assistant|> and <|end|>, else ChatML) and Warning says why.
//
// The text contains special tokens: encode it with ParseSpecial (EncodeChat
// does).
func (t *Tokenizer) ApplyChatTemplate(msgs []Message, opts ChatOptions) ChatPrompt {
	src, tmpl := SourceGGUF, t.chatTemplate
	if opts.Template != "" {
		src, tmpl = SourceOption, opts.Template
	}
	var why string
	if tmpl == "" {
		why = "the model has no chat template (tokenizer.chat_template)"
	} else {
		text, err := t.renderJinja(tmpl, msgs, opts)
		if err == nil {
			return ChatPrompt{Text: text, Source: src}
		}
		why = fmt.Sprintf("the chat template failed (%v)", oneLine(err))
	}
	p := t.builtinChat(msgs, opts.AddGenerationPrompt)
	p.Warning = fmt.Sprintf("%s; using the built-in %s format", why, p.Source)
	return p
}

// EncodeChat renders messages with ApplyChatTemplate and encodes the result
// with special tokens parsed and BOS added as the vocabulary asks (once,
// also when the template already writes it).
func (t *Tokenizer) EncodeChat(msgs []Message, opts ChatOptions) ([]int32, ChatPrompt, error) {
	p := t.ApplyChatTemplate(msgs, opts)
	ids, err := t.Encode(p.Text, EncodeOptions{AddSpecial: true, ParseSpecial: true})
	if err != nil {
		return nil, p, err
	}
	if len(ids) >= 2 && ids[0] == t.bos && ids[1] == t.bos && t.addBOS {
		ids = ids[1:]
	}
	return ids, p, nil
}

func (t *Tokenizer) hasSpecial(texts ...string) bool {
	m := t.SpecialTokens()
	for _, s := range texts {
		if _, ok := m[s]; !ok {
			return false
		}
	}
	return true
}

// builtinChat renders the ChatML or Phi-3 format.
func (t *Tokenizer) builtinChat(msgs []Message, addGen bool) ChatPrompt {
	var sb strings.Builder
	if t.hasSpecial("<|user|>", "<|assistant|>", "<|end|>") && !t.hasSpecial("<|im_start|>") {
		for _, m := range msgs {
			fmt.Fprintf(&sb, "<|%s|>\n%s<|end|>\n", m.Role, m.Content)
		}
		if addGen {
			sb.WriteString("<|assistant|>\n")
		}
		return ChatPrompt{Text: sb.String(), Source: SourcePhi3}
	}
	for _, m := range msgs {
		fmt.Fprintf(&sb, "<|im_start|>%s\n%s<|im_end|>\n", m.Role, m.Content)
	}
	if addGen {
		sb.WriteString("<|im_start|>assistant\n")
	}
	return ChatPrompt{Text: sb.String(), Source: SourceChatML}
}

var (
	jinjaConfig = func() *config.Config {
		c := config.New()
		c.TrimBlocks = true
		c.LeftStripBlocks = true
		return c
	}()
	jinjaCache sync.Map // sha256 of source → *compiled
)

type compiled struct {
	once sync.Once
	tpl  *exec.Template
	err  error
}

func compileJinja(src string) (*exec.Template, error) {
	sum := sha256.Sum256([]byte(src))
	key := hex.EncodeToString(sum[:])
	v, _ := jinjaCache.LoadOrStore(key, &compiled{})
	c := v.(*compiled)
	c.once.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				c.err = fmt.Errorf("template parser panicked: %v", r)
			}
		}()
		loader, err := loaders.NewFileSystemLoader("")
		if err != nil {
			c.err = err
			return
		}
		shifted, err := loaders.NewShiftedLoader("chat-"+key, strings.NewReader(src), loader)
		if err != nil {
			c.err = err
			return
		}
		c.tpl, c.err = exec.NewTemplate("chat-"+key, jinjaConfig, shifted, gonja.DefaultEnvironment)
	})
	return c.tpl, c.err
}

var errRaised = errors.New("raise_exception")

func (t *Tokenizer) renderJinja(src string, msgs []Message, opts ChatOptions) (out string, err error) {
	tpl, err := compileJinja(src)
	if err != nil {
		return "", err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("template renderer panicked: %v", r)
		}
	}()
	ms := make([]map[string]any, len(msgs))
	for i, m := range msgs {
		ms[i] = map[string]any{"role": m.Role, "content": m.Content}
		if len(m.ToolCalls) > 0 {
			calls := make([]any, len(m.ToolCalls))
			for j, c := range m.ToolCalls {
				calls[j] = map[string]any{"id": c.ID, "type": "function",
					"function": map[string]any{"name": c.Name, "arguments": c.Arguments}}
			}
			ms[i]["tool_calls"] = calls
		}
		if m.ToolCallID != "" {
			ms[i]["tool_call_id"] = m.ToolCallID
		}
		if m.Name != "" {
			ms[i]["name"] = m.Name
		}
	}
	data := map[string]any{
		"messages":              ms,
		"add_generation_prompt": opts.AddGenerationPrompt,
		"bos_token":             t.tokenText(t.bos),
		"eos_token":             t.tokenText(t.eos),
		"raise_exception": func(msg string) (string, error) {
			return "", fmt.Errorf("%w: %s", errRaised, msg)
		},
	}
	if opts.Tools != nil {
		data["tools"] = opts.Tools
	}
	for k, v := range opts.Vars {
		if _, reserved := data[k]; !reserved && k != "tools" {
			data[k] = v // never replaces what the renderer itself sets
		}
	}
	var buf bytes.Buffer
	if err := tpl.Execute(&buf, exec.NewContext(data)); err != nil {
		return "", err
	}
	return buf.String(), nil
}

func (t *Tokenizer) tokenText(id int32) string {
	if id < 0 {
		return ""
	}
	return t.tokens[id]
}

func oneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// ReservedChatVars are the chat template variables set by the renderer
// (and "tools", which belongs to the request's own field): extra variables
// of these names are ignored by EncodeChat, and a server refuses them.
var ReservedChatVars = []string{"messages", "add_generation_prompt", "bos_token", "eos_token", "raise_exception", "tools"}
