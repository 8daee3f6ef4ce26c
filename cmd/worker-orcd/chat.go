package main

import (
	"fmt"
	"io"

	"worker-orcd/tokenizer"
)

// renderChat wraps a prompt as one user message with the model's chat
// template, asking for the assistant's turn.
func renderChat(tok *tokenizer.Tokenizer, prompt string, warn io.Writer) (string, error) {
	return "", fmt.Errorf("generate --chat: chat templates are not available in this build")
}
