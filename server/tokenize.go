package server

import (
	"net/http"
	"unicode/utf8"

	"worker-orcd/engine"
	"worker-orcd/tokenizer"
)

// tokenizeRequest is the body of POST /tokenize (llama-server's shape).
type tokenizeRequest struct {
	Content      *string `json:"content"`
	AddSpecial   bool    `json:"add_special"`
	ParseSpecial *bool   `json:"parse_special"`
	WithPieces   bool    `json:"with_pieces"`
}

// tokenPiece is one token with its piece: a string, or the list of its
// bytes when they are not valid UTF-8 on their own (llama-server's shape).
type tokenPiece struct {
	ID    int32 `json:"id"`
	Piece any   `json:"piece"`
}

// detokenizeRequest is the body of POST /detokenize.
type detokenizeRequest struct {
	Tokens []int32 `json:"tokens"`
}

// maxTokenizeIDs bounds the ids of one /detokenize request (the body limit
// bounds /tokenize).
const maxTokenizeIDs = 1 << 20

// loadedModel returns the model, or answers 503 (loading, failed).
func (s *Server) loadedModel(w http.ResponseWriter, shape errShape) *engine.Model {
	m := s.model.Load()
	if m == nil {
		writeError(w, shape, s.notReady())
	}
	return m
}

// handleTokenize is POST /tokenize: {"content"} → {"tokens": [ids]}, or
// with with_pieces {"tokens": [{"id","piece"}]}. add_special (default
// false) adds BOS/EOS as the model asks; parse_special (default true)
// recognises special-token text — llama-server's defaults.
func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	m := s.loadedModel(w, shapeNative)
	if m == nil {
		return
	}
	var body tokenizeRequest
	if e := s.decodeBody(w, r, &body); e != nil {
		writeError(w, shapeNative, e)
		return
	}
	if body.Content == nil {
		writeError(w, shapeNative, badRequest("content", "missing: give the text to tokenize"))
		return
	}
	tok := m.Tokenizer()
	ids, err := tok.Encode(*body.Content, tokenizer.EncodeOptions{AddSpecial: body.AddSpecial,
		ParseSpecial: body.ParseSpecial == nil || *body.ParseSpecial})
	if err != nil {
		writeError(w, shapeNative, badRequest("content", "%v", err))
		return
	}
	if !body.WithPieces {
		writeJSON(w, http.StatusOK, map[string]any{"tokens": ids})
		return
	}
	out := make([]tokenPiece, len(ids))
	for i, id := range ids {
		out[i] = tokenPiece{ID: id, Piece: pieceValue(tok, id)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
}

// pieceValue is a token's piece as a JSON value: the string when its bytes
// are valid UTF-8, else the bytes as numbers.
func pieceValue(tok *tokenizer.Tokenizer, id int32) any {
	b, _ := tok.Piece(id)
	if utf8.Valid(b) {
		return string(b)
	}
	n := make([]int, len(b))
	for i, c := range b {
		n[i] = int(c)
	}
	return n
}

// handleDetokenize is POST /detokenize: {"tokens": [ids]} → {"content"},
// special tokens rendered as their text (as llama-server does); bytes that
// are not valid UTF-8 come out as U+FFFD.
func (s *Server) handleDetokenize(w http.ResponseWriter, r *http.Request) {
	m := s.loadedModel(w, shapeNative)
	if m == nil {
		return
	}
	var body detokenizeRequest
	if e := s.decodeBody(w, r, &body); e != nil {
		writeError(w, shapeNative, e)
		return
	}
	if body.Tokens == nil {
		writeError(w, shapeNative, badRequest("tokens", "missing: give the token ids to turn into text"))
		return
	}
	if len(body.Tokens) > maxTokenizeIDs {
		writeError(w, shapeNative, badRequest("tokens", "%d ids: want at most %d", len(body.Tokens), maxTokenizeIDs))
		return
	}
	tok := m.Tokenizer()
	for i, id := range body.Tokens {
		if id < 0 || int(id) >= tok.VocabSize() {
			writeError(w, shapeNative, badRequest("tokens", "token %d is id %d, outside the vocabulary [0, %d)", i, id, tok.VocabSize()))
			return
		}
	}
	text, err := tok.Decode(body.Tokens, tokenizer.DecodeOptions{})
	if err != nil {
		writeError(w, shapeNative, badRequest("tokens", "%v", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"content": text})
}
