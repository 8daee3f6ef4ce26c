// Package tokenizer turns text into token ids and back for the two tokenizer
// families found in GGUF files:
//
//   - byte-level BPE (tokenizer.ggml.model = "gpt2": Qwen2, Llama 3), with the
//     pre-tokenizer named by tokenizer.ggml.pre (qwen2, llama-bpe, gpt2);
//   - SentencePiece BPE (tokenizer.ggml.model = "llama": Phi-3, Llama 2) with
//     scores, "▁" for spaces, add_space_prefix and <0xXX> byte fallback.
//
// Everything is read from GGUF metadata (FromGGUF) or given directly (New).
// Special tokens (token types control and user-defined) are recognised in
// text only when EncodeOptions.ParseSpecial is set, never in raw user text.
//
// Ids equal those of HF tokenizers and of llama.cpp for the same vocabulary
// (see testdata/ and tools/tokgolden/), with these documented conventions:
// no Unicode normalization is applied (Qwen2's tokenizer.json asks for NFC,
// llama.cpp does not normalize either); SentencePiece text gets a leading
// space (add_space_prefix) and BOS when AddSpecial is set.
//
// A Tokenizer is immutable after construction and safe for concurrent use.
package tokenizer

import (
	"fmt"
	"unicode/utf8"
)

// TokenType is the GGUF tokenizer.ggml.token_type of a token.
type TokenType int32

// Token types as llama.cpp writes them.
const (
	TypeUndefined   TokenType = 0
	TypeNormal      TokenType = 1
	TypeUnknown     TokenType = 2
	TypeControl     TokenType = 3
	TypeUserDefined TokenType = 4
	TypeUnused      TokenType = 5
	TypeByte        TokenType = 6
)

// Model names the tokenizer algorithm (tokenizer.ggml.model).
type Model string

// Supported tokenizer models.
const (
	ModelBPE Model = "gpt2"  // byte-level BPE
	ModelSPM Model = "llama" // SentencePiece BPE with byte fallback
)

// Vocab is everything a Tokenizer is built from, as stored in GGUF metadata.
// Ids that are absent are -1.
type Vocab struct {
	Model  Model       // "gpt2" or "llama"
	Pre    string      // tokenizer.ggml.pre (BPE only); "" means the GPT-2 default
	Tokens []string    // tokenizer.ggml.tokens: the piece of each id
	Scores []float32   // tokenizer.ggml.scores (SPM; optional for BPE)
	Types  []TokenType // tokenizer.ggml.token_type; nil means all normal
	Merges []string    // tokenizer.ggml.merges ("left right", best first; BPE only)

	BOS, EOS, EOT, EOM, PAD, UNK int32

	AddBOS, AddEOS bool
	// AddSpacePrefix puts a space in front of the text (SPM; llama.cpp's
	// default is true for "llama" and false otherwise).
	AddSpacePrefix bool

	ChatTemplate string // tokenizer.chat_template, "" when absent
}

// EncodeOptions controls Encode.
type EncodeOptions struct {
	// AddSpecial adds BOS and/or EOS as the vocabulary asks
	// (tokenizer.ggml.add_bos_token / add_eos_token).
	AddSpecial bool
	// ParseSpecial recognises the text of control and user-defined tokens
	// (such as "<|im_start|>") as those tokens. Leave it off for text that
	// comes from a user; chat templates turn it on.
	ParseSpecial bool
}

// DecodeOptions controls Decode and StreamingDecoder.
type DecodeOptions struct {
	// SkipSpecial renders control and unknown tokens (BOS, EOS, <|im_end|>,
	// …) as nothing instead of their text. User-defined tokens keep their text.
	SkipSpecial bool
	// StripSpacePrefix undoes add_space_prefix: one leading space is removed
	// from the first token that produces text. Only SentencePiece
	// vocabularies with AddSpacePrefix are affected; use it to decode a
	// whole encoded prompt, not a continuation.
	StripSpacePrefix bool
}

// Tokenizer encodes and decodes text for one vocabulary.
type Tokenizer struct {
	model  Model
	pre    preTokenizer
	tokens []string
	types  []TokenType
	pieces [][]byte // exact bytes of each token's text (special tokens: their text)

	toID map[string]int32 // BPE: raw-byte piece → id; SPM: piece (with ▁) → id

	// BPE
	merges   map[uint64]uint64 // (left id << 32 | right id) → (rank << 32 | merged id)
	byteTok  [256]int32        // BPE: token of each single byte; SPM: <0xXX> token
	bpeCache *wordCache        // pre-token (SPM: chunk) → ids

	// SPM
	scores   []float32
	spmSplit bool // no piece has "▁" after another character: chunks can be encoded apart

	special      []specialToken // control and user-defined tokens, for ParseSpecial
	specialFirst [256]bool      // first bytes of special tokens

	bos, eos, eot, eom, pad, unk int32
	addBOS, addEOS, addSpace     bool
	eog                          map[int32]bool
	chatTemplate                 string
}

// New builds a Tokenizer from a vocabulary.
func New(v *Vocab) (*Tokenizer, error) {
	n := len(v.Tokens)
	if n == 0 {
		return nil, newError(CodeTokenizer, "empty vocabulary (tokenizer.ggml.tokens has no entries)")
	}
	if v.Types != nil && len(v.Types) != n {
		return nil, newError(CodeTokenizer, "tokenizer.ggml.token_type has %d entries, want %d (one per token)", len(v.Types), n)
	}
	if v.Scores != nil && len(v.Scores) != n {
		return nil, newError(CodeTokenizer, "tokenizer.ggml.scores has %d entries, want %d (one per token)", len(v.Scores), n)
	}
	t := &Tokenizer{
		model:        v.Model,
		tokens:       v.Tokens,
		types:        v.Types,
		bos:          checkID(v.BOS, n),
		eos:          checkID(v.EOS, n),
		eot:          checkID(v.EOT, n),
		eom:          checkID(v.EOM, n),
		pad:          checkID(v.PAD, n),
		unk:          checkID(v.UNK, n),
		addBOS:       v.AddBOS,
		addEOS:       v.AddEOS,
		addSpace:     v.AddSpacePrefix,
		chatTemplate: v.ChatTemplate,
	}
	if t.types == nil {
		t.types = make([]TokenType, n)
		for i := range t.types {
			t.types[i] = TypeNormal
		}
	}
	switch v.Model {
	case ModelBPE:
		if err := t.initBPE(v); err != nil {
			return nil, err
		}
	case ModelSPM:
		if v.Scores == nil {
			return nil, newError(CodeTokenizer, "SentencePiece vocabulary without tokenizer.ggml.scores")
		}
		t.initSPM(v)
	default:
		return nil, newError(CodeTokenizer, "unsupported tokenizer.ggml.model %q (supported: gpt2, llama)", string(v.Model))
	}
	t.initSpecial()
	t.initEOG()
	return t, nil
}

func checkID(id int32, n int) int32 {
	if id < 0 || int(id) >= n {
		return -1
	}
	return id
}

// Model reports the tokenizer algorithm: "gpt2" (byte-level BPE) or "llama" (SentencePiece).
func (t *Tokenizer) Model() Model { return t.model }

// VocabSize is the number of token ids.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// BOS is the beginning-of-sequence id, or -1.
func (t *Tokenizer) BOS() int32 { return t.bos }

// EOS is the end-of-sequence id, or -1.
func (t *Tokenizer) EOS() int32 { return t.eos }

// EOT is the end-of-turn id (tokenizer.ggml.eot_token_id), or -1.
func (t *Tokenizer) EOT() int32 { return t.eot }

// PAD is the padding id, or -1.
func (t *Tokenizer) PAD() int32 { return t.pad }

// AddsBOS reports whether Encode with AddSpecial puts BOS in front.
func (t *Tokenizer) AddsBOS() bool { return t.addBOS && t.bos >= 0 }

// ChatTemplate is the vocabulary's Jinja chat template, or "".
func (t *Tokenizer) ChatTemplate() string { return t.chatTemplate }

// IsEOG reports whether id ends generation: EOS, EOT, EOM, and control
// tokens whose text is a known end marker (<|im_end|>, <|endoftext|>,
// <|end|>, <|eot_id|>, <end_of_turn>, …), as llama.cpp decides.
func (t *Tokenizer) IsEOG(id int32) bool { return t.eog[id] }

// Type returns the token type of id (TypeUndefined for an id out of range).
func (t *Tokenizer) Type(id int32) TokenType {
	if id < 0 || int(id) >= len(t.types) {
		return TypeUndefined
	}
	return t.types[id]
}

// Token returns the piece of id as stored in the vocabulary ("Ġthe",
// "▁the", "<0x0A>", "<|im_end|>").
func (t *Tokenizer) Token(id int32) (string, error) {
	if id < 0 || int(id) >= len(t.tokens) {
		return "", idNotFound(id, len(t.tokens))
	}
	return t.tokens[id], nil
}

// TokenID returns the id of a vocabulary piece as stored ("<|im_end|>",
// "▁the"), or a TokenNotFound error.
func (t *Tokenizer) TokenID(piece string) (int32, error) {
	for i := range t.special {
		if t.special[i].text == piece {
			return t.special[i].id, nil
		}
	}
	key := piece
	if t.model == ModelBPE {
		if b, ok := byteLevelDecode(piece); ok {
			key = string(b)
		}
	}
	if id, ok := t.toID[key]; ok && t.tokens[id] == piece {
		return id, nil
	}
	for i, s := range t.tokens { // pieces shadowed in toID (rare duplicates)
		if s == piece {
			return int32(i), nil
		}
	}
	return -1, &Error{Code: CodeTokenNotFound, Token: piece, ID: -1,
		Msg: fmt.Sprintf("token %q is not in the vocabulary (%d tokens)", piece, len(t.tokens))}
}

// Piece returns the exact bytes that id contributes to decoded text: a
// byte-level BPE token's bytes, a SentencePiece piece with "▁" as a space
// and <0xXX> as that byte, a special token's text. A piece need not be
// valid UTF-8 on its own.
func (t *Tokenizer) Piece(id int32) ([]byte, error) {
	if id < 0 || int(id) >= len(t.pieces) {
		return nil, idNotFound(id, len(t.pieces))
	}
	return t.pieces[id], nil
}

func (t *Tokenizer) isSpecialType(id int32) bool {
	ty := t.types[id]
	return ty == TypeControl || ty == TypeUnknown || ty == TypeUnused
}

// Encode turns text into token ids. The text must be valid UTF-8.
func (t *Tokenizer) Encode(text string, opts EncodeOptions) ([]int32, error) {
	if !utf8.ValidString(text) {
		return nil, invalidUTF8(text)
	}
	out := make([]int32, 0, len(text)/3+2)
	if opts.AddSpecial && t.addBOS && t.bos >= 0 {
		out = append(out, t.bos)
	}
	afterSpecial := true // SPM: a space prefix goes in front of the first fragment and after each special token
	emit := func(frag string) {
		if frag == "" {
			return
		}
		switch t.model {
		case ModelBPE:
			out = t.encodeBPE(frag, out)
		case ModelSPM:
			out = t.encodeSPM(frag, afterSpecial && t.addSpace, out)
		}
		afterSpecial = false
	}
	if opts.ParseSpecial && len(t.special) > 0 {
		rest := text
		for len(rest) > 0 {
			pos, sp := t.findSpecial(rest)
			if sp == nil {
				emit(rest)
				break
			}
			emit(rest[:pos])
			out = append(out, sp.id)
			afterSpecial = true
			rest = rest[pos+len(sp.text):]
		}
	} else {
		emit(text)
	}
	if opts.AddSpecial && t.addEOS && t.eos >= 0 {
		out = append(out, t.eos)
	}
	return out, nil
}

// Decode turns ids into text. Bytes that do not form valid UTF-8 (a token
// sequence cut inside a character) come out as U+FFFD, one for each maximal
// ill-formed subpart (the Unicode recommendation that HF, Python and
// JavaScript follow).
func (t *Tokenizer) Decode(ids []int32, opts DecodeOptions) (string, error) {
	b, err := t.DecodeBytes(ids, opts)
	if err != nil {
		return "", err
	}
	return string(appendValidUTF8(nil, b, true)), nil
}

// DecodeBytes is Decode without the UTF-8 repair: the exact bytes of the
// tokens' text.
func (t *Tokenizer) DecodeBytes(ids []int32, opts DecodeOptions) ([]byte, error) {
	var out []byte
	strip := opts.StripSpacePrefix && t.model == ModelSPM && t.addSpace
	for _, id := range ids {
		p, err := t.pieceFor(id, opts)
		if err != nil {
			return nil, err
		}
		if len(p) == 0 {
			continue
		}
		if strip {
			strip = false
			if p[0] == ' ' {
				p = p[1:]
			}
		}
		out = append(out, p...)
	}
	return out, nil
}

func (t *Tokenizer) pieceFor(id int32, opts DecodeOptions) ([]byte, error) {
	if id < 0 || int(id) >= len(t.pieces) {
		return nil, idNotFound(id, len(t.pieces))
	}
	if opts.SkipSpecial && t.isSpecialType(id) {
		return nil, nil
	}
	return t.pieces[id], nil
}

func (t *Tokenizer) initEOG() {
	t.eog = map[int32]bool{}
	for _, id := range []int32{t.eos, t.eot, t.eom} {
		if id >= 0 {
			t.eog[id] = true
		}
	}
	for i, s := range t.tokens {
		ty := t.types[i]
		if ty != TypeControl && ty != TypeUserDefined {
			continue
		}
		switch s {
		case "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
			"<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<｜end▁of▁sentence｜>", "<|return|>", "<|call|>":
			t.eog[int32(i)] = true
		}
	}
}
