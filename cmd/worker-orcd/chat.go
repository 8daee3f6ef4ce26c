package main

import (
	"fmt"
	"io"

	"worker-orcd/tokenizer"
)

// encodeChat wraps a prompt as one user message with the model's chat
// template, asking for the assistant's turn, and encodes it (special tokens
// parsed, BOS once). When the template cannot be used and a built-in
// format stands in, the reason goes to warn.
func encodeChat(tok *tokenizer.Tokenizer, prompt string, warn io.Writer) ([]int32, error) {
	ids, p, err := tok.EncodeChat([]tokenizer.Message{{Role: "user", Content: prompt}},
		tokenizer.ChatOptions{AddGenerationPrompt: true})
	if p.Warning != "" {
		fmt.Fprintf(warn, "worker-orcd: warning: %s (using the built-in %s format)\n", p.Warning, p.Source)
	}
	return ids, err
}
