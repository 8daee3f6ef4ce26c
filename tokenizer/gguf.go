package tokenizer

import (
	"worker-orcd/gguf"
)

// GGUF metadata keys read by FromGGUF.
const (
	KeyModel          = "tokenizer.ggml.model"
	KeyPre            = "tokenizer.ggml.pre"
	KeyTokens         = "tokenizer.ggml.tokens"
	KeyScores         = "tokenizer.ggml.scores"
	KeyTokenType      = "tokenizer.ggml.token_type"
	KeyMerges         = "tokenizer.ggml.merges"
	KeyBOS            = "tokenizer.ggml.bos_token_id"
	KeyEOS            = "tokenizer.ggml.eos_token_id"
	KeyEOT            = "tokenizer.ggml.eot_token_id"
	KeyEOM            = "tokenizer.ggml.eom_token_id"
	KeyPAD            = "tokenizer.ggml.padding_token_id"
	KeyUNK            = "tokenizer.ggml.unknown_token_id"
	KeyAddBOS         = "tokenizer.ggml.add_bos_token"
	KeyAddEOS         = "tokenizer.ggml.add_eos_token"
	KeyAddSpacePrefix = "tokenizer.ggml.add_space_prefix"
	KeyChatTemplate   = "tokenizer.chat_template"
)

// FromGGUF builds a Tokenizer from a GGUF file's tokenizer.* metadata. A
// file without tokenizer data fails with the gguf error
// `GGUFError: Metadata key not found: "tokenizer.ggml.tokens"` (or
// "tokenizer.ggml.merges" for a BPE vocabulary); errors.Is(err,
// gguf.ErrKeyNotFound) holds. The Tokenizer copies what it needs, so the
// file may be closed afterwards.
func FromGGUF(f *gguf.File) (*Tokenizer, error) {
	tokens, err := f.Strings(KeyTokens)
	if err != nil {
		return nil, err
	}
	model, err := f.String(KeyModel)
	if err != nil {
		return nil, err
	}
	v := &Vocab{Model: Model(model), BOS: -1, EOS: -1, EOT: -1, EOM: -1, PAD: -1, UNK: -1}
	v.Tokens = tokens
	if f.Has(KeyTokenType) {
		tt, err := f.Int32s(KeyTokenType)
		if err != nil {
			return nil, err
		}
		v.Types = make([]TokenType, len(tt))
		for i, x := range tt {
			v.Types[i] = TokenType(x)
		}
	}
	switch v.Model {
	case ModelBPE:
		if v.Merges, err = f.Strings(KeyMerges); err != nil {
			return nil, err
		}
		if f.Has(KeyPre) {
			if v.Pre, err = f.String(KeyPre); err != nil {
				return nil, err
			}
		}
	case ModelSPM:
		if v.Scores, err = f.Float32s(KeyScores); err != nil {
			return nil, err
		}
		v.AddSpacePrefix = true
		v.AddBOS = true
	}
	ids := []struct {
		key string
		dst *int32
	}{{KeyBOS, &v.BOS}, {KeyEOS, &v.EOS}, {KeyEOT, &v.EOT}, {KeyEOM, &v.EOM}, {KeyPAD, &v.PAD}, {KeyUNK, &v.UNK}}
	for _, k := range ids {
		if !f.Has(k.key) {
			continue
		}
		x, err := f.Uint32(k.key)
		if err != nil {
			return nil, err
		}
		if int(x) >= len(v.Tokens) {
			continue // llama.cpp ignores an out-of-range id too
		}
		*k.dst = int32(x)
	}
	bools := []struct {
		key string
		dst *bool
	}{{KeyAddBOS, &v.AddBOS}, {KeyAddEOS, &v.AddEOS}, {KeyAddSpacePrefix, &v.AddSpacePrefix}}
	for _, k := range bools {
		if !f.Has(k.key) {
			continue
		}
		b, err := f.Bool(k.key)
		if err != nil {
			return nil, err
		}
		*k.dst = b
	}
	if f.Has(KeyChatTemplate) {
		if v.ChatTemplate, err = f.String(KeyChatTemplate); err != nil {
			return nil, err
		}
	}
	return New(v)
}

// Load opens a GGUF file, reads its tokenizer and closes it.
func Load(path string) (*Tokenizer, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return FromGGUF(f)
}
