package tokenizer

import (
	"sort"
	"strings"
)

// specialToken is a control or user-defined token that EncodeOptions.ParseSpecial
// recognises in text.
type specialToken struct {
	text string
	id   int32
}

func (t *Tokenizer) initSpecial() {
	for i, s := range t.tokens {
		ty := t.types[i]
		if (ty == TypeControl || ty == TypeUserDefined) && s != "" {
			t.special = append(t.special, specialToken{text: s, id: int32(i)})
		}
	}
	// Longest first, so that a match at a position is the longest one.
	sort.SliceStable(t.special, func(a, b int) bool { return len(t.special[a].text) > len(t.special[b].text) })
	for i := range t.special {
		t.specialFirst[t.special[i].text[0]] = true
	}
}

// findSpecial returns the leftmost special token in s (the longest one at
// that position) and its byte offset, or nil.
func (t *Tokenizer) findSpecial(s string) (int, *specialToken) {
	for i := 0; i < len(s); i++ {
		if !t.specialFirst[s[i]] {
			continue
		}
		rest := s[i:]
		for k := range t.special {
			if strings.HasPrefix(rest, t.special[k].text) {
				return i, &t.special[k]
			}
		}
	}
	return -1, nil
}

// SpecialTokens lists the texts and ids of the tokens that ParseSpecial
// recognises (control and user-defined tokens).
func (t *Tokenizer) SpecialTokens() map[string]int32 {
	m := make(map[string]int32, len(t.special))
	for _, s := range t.special {
		if _, dup := m[s.text]; !dup {
			m[s.text] = s.id
		}
	}
	return m
}
