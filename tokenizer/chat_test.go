package tokenizer

import (
	"slices"
	"strings"
	"testing"
)

var chatMsgs = []Message{
	{Role: "system", Content: "You are helpful."},
	{Role: "user", Content: "Hello!"},
	{Role: "assistant", Content: "Hi there."},
	{Role: "user", Content: "What is 2+2?"},
}

func TestChatTemplateQwen(t *testing.T) {
	tok := vocabTokenizer(t, "qwen2")
	p := tok.ApplyChatTemplate(chatMsgs, ChatOptions{AddGenerationPrompt: true})
	want := "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n" +
		"<|im_start|>assistant\nHi there.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
	t.Logf("source %s, warning %q", p.Source, p.Warning)
	if p.Text != want {
		t.Errorf("rendered\n%q\nwant\n%q", p.Text, want)
	}
	ids, _, err := tok.EncodeChat(chatMsgs, ChatOptions{AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] != 151644 || !slices.Contains(ids, 151645) {
		t.Errorf("ids %v: want <|im_start|> and <|im_end|> tokens", ids[:8])
	}
}

func TestChatTemplatePhi3(t *testing.T) {
	tok := vocabTokenizer(t, "phi3")
	p := tok.ApplyChatTemplate(chatMsgs[1:], ChatOptions{AddGenerationPrompt: true})
	if p.Source != SourceGGUF || p.Warning != "" {
		t.Errorf("source %s, warning %q", p.Source, p.Warning)
	}
	want := "<s><|user|>\nHello!<|end|>\n<|assistant|>\nHi there.<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n"
	if p.Text != want {
		t.Errorf("rendered\n%q\nwant\n%q", p.Text, want)
	}
	ids, _, err := tok.EncodeChat(chatMsgs[1:], ChatOptions{AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	// One BOS although the template writes <s> and add_bos_token is true.
	if !slices.Equal(ids[:5], []int32{1, 32010, 29871, 13, 10994}) {
		t.Errorf("ids %v", ids[:8])
	}
}

func TestChatFallback(t *testing.T) {
	bpe := tinyBPE(t, "qwen2")
	p := bpe.ApplyChatTemplate(chatMsgs[1:2], ChatOptions{AddGenerationPrompt: true})
	if p.Source != SourceChatML || !strings.Contains(p.Warning, "no chat template") {
		t.Errorf("%+v", p)
	}
	if p.Text != "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n" {
		t.Errorf("%q", p.Text)
	}
	p = bpe.ApplyChatTemplate(chatMsgs, ChatOptions{Template: "{% for m in messages %}{{ m.content | nosuchfilter }}{% endfor %}"})
	if p.Source != SourceChatML || !strings.Contains(p.Warning, "chat template failed") {
		t.Errorf("%+v", p)
	}
	p = bpe.ApplyChatTemplate(chatMsgs, ChatOptions{Template: "{{ raise_exception('no system role') }}"})
	if p.Source != SourceChatML || !strings.Contains(p.Warning, "no system role") {
		t.Errorf("%+v", p)
	}
	p = bpe.ApplyChatTemplate(chatMsgs[1:2], ChatOptions{Template: "{% for m in messages %}[{{ m.role }}]{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}>{% endif %}", AddGenerationPrompt: true})
	if p.Source != SourceOption || p.Text != "[user]Hello!>" {
		t.Errorf("%+v", p)
	}
	spm := tinySPM(t)
	if p := spm.ApplyChatTemplate(chatMsgs[1:2], ChatOptions{}); p.Source != SourceChatML {
		t.Errorf("%+v", p) // tinySPM has <|end|> only, not the Phi-3 set
	}
}

// Features of Qwen3's template beyond plain loops: string methods, slicing,
// namespace, `is defined`, extra variables.
func TestChatTemplateQwenThinking(t *testing.T) {
	tok := vocabTokenizer(t, "qwen2")
	msgs := []Message{
		{Role: "user", Content: "Hi"},
		{Role: "assistant", Content: "<think>\nhmm\n</think>\n\nHello."},
		{Role: "user", Content: "Bye"},
	}
	p := tok.ApplyChatTemplate(msgs, ChatOptions{AddGenerationPrompt: true, Vars: map[string]any{"enable_thinking": false}})
	want := "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n" +
		"<|im_start|>assistant\n<think>\n\n</think>\n\n"
	if p.Source != SourceGGUF || p.Text != want {
		t.Errorf("source %s warning %q\n%q\nwant\n%q", p.Source, p.Warning, p.Text, want)
	}
}
