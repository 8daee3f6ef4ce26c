package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// preTokenizer splits text into the pieces that byte-level BPE encodes one
// by one. The regular expressions of the supported models need lookahead,
// which Go's regexp lacks, so each is a hand-written scanner that follows
// the expression's alternation order and backtracking exactly:
//
//	qwen2:     (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//	llama-bpe: the same with \p{N}{1,3} for \p{N}
//	gpt2:      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// \p{L} is Unicode category L, \p{N} category N and \s the White_Space
// property (as in llama.cpp and in HF tokenizers' Oniguruma).
type preTokenizer int

const (
	preGPT2 preTokenizer = iota
	preQwen2
	preLlama3
)

// preTokenizerByName maps tokenizer.ggml.pre to a scanner.
func preTokenizerByName(name string) (preTokenizer, bool) {
	switch name {
	case "qwen2":
		return preQwen2, true
	case "llama-bpe", "llama3":
		return preLlama3, true
	case "", "gpt2", "default":
		return preGPT2, true
	}
	return 0, false
}

// Character classes of ASCII bytes.
const (
	clsL  = 1 << iota // letter
	clsN              // number
	clsS              // white space
	clsNL             // \r or \n
)

var asciiClass = func() (t [128]uint8) {
	for c := 0; c < 128; c++ {
		r := rune(c)
		switch {
		case unicode.IsLetter(r):
			t[c] = clsL
		case unicode.IsNumber(r):
			t[c] = clsN
		case unicode.IsSpace(r):
			t[c] = clsS
		}
	}
	t['\r'] |= clsNL
	t['\n'] |= clsNL
	return t
}()

func classOf(r rune) uint8 {
	if r < utf8.RuneSelf {
		return asciiClass[r]
	}
	switch {
	case unicode.IsLetter(r):
		return clsL
	case unicode.IsNumber(r):
		return clsN
	case unicode.IsSpace(r): // White_Space: includes U+0085, U+00A0, U+3000, …
		return clsS
	}
	return 0
}

// decodeAt returns the rune at s[i] and its class and size.
func decodeAt(s string, i int) (rune, uint8, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return rune(c), asciiClass[c], 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	return r, classOf(r), n
}

// isPunct: [^\s\p{L}\p{N}]
func isPunct(cls uint8) bool { return cls&(clsL|clsN|clsS) == 0 }

// split calls emit for each pre-token of s, in order. The pieces cover s
// exactly.
func (p preTokenizer) split(s string, emit func(string)) {
	for i := 0; i < len(s); {
		var j int
		if p == preGPT2 {
			j = nextGPT2(s, i)
		} else {
			j = nextQwen(s, i, p == preLlama3)
		}
		emit(s[i:j])
		i = j
	}
}

// contraction returns the length of 's 't 're 've 'm 'll 'd after the
// apostrophe at s[i] (0 if none). ci allows upper-case letters.
func contraction(s string, i int, ci bool) int {
	if i+1 >= len(s) {
		return 0
	}
	lower := func(c byte) byte {
		if ci && 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	switch lower(s[i+1]) {
	case 's', 't', 'm', 'd':
		return 2
	case 'r', 'v':
		if i+2 < len(s) && lower(s[i+2]) == 'e' {
			return 3
		}
	case 'l':
		if i+2 < len(s) && lower(s[i+2]) == 'l' {
			return 3
		}
	}
	return 0
}

func scanClass(s string, i int, want uint8) int {
	for i < len(s) {
		_, c, n := decodeAt(s, i)
		if c&want == 0 {
			break
		}
		i += n
	}
	return i
}

func scanPunct(s string, i int) int {
	for i < len(s) {
		_, c, n := decodeAt(s, i)
		if !isPunct(c) {
			break
		}
		i += n
	}
	return i
}

// scanSpaceTail handles \s+(?!\S)|\s+ for a white-space run starting at i
// whose first rune has size n0.
func scanSpaceTail(s string, i int) int {
	end, last := i, i
	for end < len(s) {
		_, c, n := decodeAt(s, end)
		if c&clsS == 0 {
			break
		}
		last = end
		end += n
	}
	if end == len(s) || last == i {
		return end // at the end of text, or a single space before \S (\s+)
	}
	return last // leave the last space to start the next word
}

func nextQwen(s string, i int, llama3 bool) int {
	r, c, n := decodeAt(s, i)
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r == '\'' {
		if l := contraction(s, i, true); l > 0 {
			return i + l
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if c&clsL != 0 {
		return scanClass(s, i+n, clsL)
	}
	if c&(clsNL|clsN) == 0 && i+n < len(s) {
		if _, c2, n2 := decodeAt(s, i+n); c2&clsL != 0 {
			return scanClass(s, i+n+n2, clsL)
		}
	}
	// \p{N} or \p{N}{1,3}
	if c&clsN != 0 {
		j := i + n
		if llama3 {
			for k := 1; k < 3 && j < len(s); k++ {
				_, c2, n2 := decodeAt(s, j)
				if c2&clsN == 0 {
					break
				}
				j += n2
			}
		}
		return j
	}
	// ' '?[^\s\p{L}\p{N}]+[\r\n]*
	j := i
	if r == ' ' {
		j = i + 1
	}
	if j < len(s) {
		if _, c2, n2 := decodeAt(s, j); isPunct(c2) {
			k := scanPunct(s, j+n2)
			for k < len(s) && (s[k] == '\r' || s[k] == '\n') {
				k++
			}
			return k
		}
	}
	// Here r is white space. \s*[\r\n]+ : up to the last newline of the run.
	end, afterNL := i, -1
	for end < len(s) {
		_, c2, n2 := decodeAt(s, end)
		if c2&clsS == 0 {
			break
		}
		end += n2
		if c2&clsNL != 0 {
			afterNL = end
		}
	}
	if afterNL >= 0 {
		return afterNL
	}
	// \s+(?!\S)|\s+
	return scanSpaceTail(s, i)
}

func nextGPT2(s string, i int) int {
	r, _, _ := decodeAt(s, i)
	if r == '\'' {
		if l := contraction(s, i, false); l > 0 {
			return i + l
		}
	}
	// ' '?\p{L}+ | ' '?\p{N}+ | ' '?[^\s\p{L}\p{N}]+
	j := i
	if r == ' ' && i+1 < len(s) {
		j = i + 1
	}
	_, c, n := decodeAt(s, j)
	switch {
	case c&clsL != 0:
		return scanClass(s, j+n, clsL)
	case c&clsN != 0:
		return scanClass(s, j+n, clsN)
	case isPunct(c):
		return scanPunct(s, j+n)
	}
	// \s+(?!\S)|\s+
	return scanSpaceTail(s, i)
}
