package tokenizer

import (
	"container/heap"
	"fmt"
	"strings"
	"unicode/utf8"
)

// SentencePiece BPE as llama.cpp runs it (llm_tokenizer_spm): spaces become
// "▁", the text is split into characters, and repeatedly the adjacent pair
// whose concatenation is the vocabulary piece with the highest score is
// merged (leftmost on ties). A character that is no piece falls back to its
// UTF-8 bytes as <0xXX> tokens (or UNK when those are missing).
//
// Only normal pieces (type 1) are merge targets: control, user-defined,
// byte and unused pieces are never produced from raw text, which is what
// HF's converted tokenizer does too.

const spmSpace = "▁" // U+2581

func (t *Tokenizer) initSPM(v *Vocab) {
	n := len(v.Tokens)
	t.scores = v.Scores
	t.pieces = make([][]byte, n)
	t.toID = make(map[string]int32, n)
	for b := range t.byteTok {
		t.byteTok[b] = -1
	}
	for i, s := range v.Tokens {
		ty := t.types[i]
		switch ty {
		case TypeByte:
			var b byte
			if _, err := fmt.Sscanf(s, "<0x%02X>", &b); err == nil && len(s) == 6 {
				t.pieces[i] = []byte{b}
				if t.byteTok[b] < 0 {
					t.byteTok[b] = int32(i)
				}
				continue
			}
			t.pieces[i] = []byte(s)
		case TypeControl, TypeUserDefined, TypeUnknown:
			t.pieces[i] = []byte(s)
		default:
			t.pieces[i] = []byte(strings.ReplaceAll(s, spmSpace, " "))
		}
		if ty == TypeNormal || ty == TypeUndefined {
			if _, dup := t.toID[s]; !dup {
				t.toID[s] = int32(i)
			}
		}
	}
}

type spmSym struct {
	start, n   int // bytes of the escaped text; n == 0 once merged away
	prev, next int
}

type spmBigram struct {
	score       float32
	left, right int
	size        int
}

type spmHeap []spmBigram

func (h spmHeap) Len() int { return len(h) }
func (h spmHeap) Less(a, b int) bool {
	if h[a].score != h[b].score {
		return h[a].score > h[b].score
	}
	return h[a].left < h[b].left
}
func (h spmHeap) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *spmHeap) Push(x any)   { *h = append(*h, x.(spmBigram)) }
func (h *spmHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// encodeSPM appends the ids of one text fragment (no special tokens).
func (t *Tokenizer) encodeSPM(frag string, spacePrefix bool, out []int32) []int32 {
	var sb strings.Builder
	sb.Grow(len(frag) + 8)
	if spacePrefix {
		sb.WriteString(spmSpace)
	}
	for i := 0; i < len(frag); i++ {
		if frag[i] == ' ' {
			sb.WriteString(spmSpace)
		} else {
			sb.WriteByte(frag[i])
		}
	}
	text := sb.String()
	if text == "" {
		return out
	}
	syms := make([]spmSym, 0, len(text))
	for i := 0; i < len(text); {
		_, n := utf8.DecodeRuneInString(text[i:])
		syms = append(syms, spmSym{start: i, n: n, prev: len(syms) - 1, next: len(syms) + 1})
		i += n
	}
	syms[len(syms)-1].next = -1

	h := make(spmHeap, 0, len(syms))
	tryAdd := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		piece := text[syms[l].start : syms[r].start+syms[r].n]
		id, ok := t.toID[piece]
		if !ok || t.types[id] != TypeNormal && t.types[id] != TypeUndefined {
			return
		}
		heap.Push(&h, spmBigram{score: t.scores[id], left: l, right: r, size: len(piece)})
	}
	for i := 1; i < len(syms); i++ {
		tryAdd(i-1, i)
	}
	for h.Len() > 0 {
		bg := heap.Pop(&h).(spmBigram)
		l, r := &syms[bg.left], &syms[bg.right]
		if l.n == 0 || r.n == 0 || l.n+r.n != bg.size || l.next != bg.right {
			continue // stale
		}
		l.n += r.n
		r.n = 0
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = bg.left
		}
		tryAdd(l.prev, bg.left)
		tryAdd(bg.left, l.next)
	}
	for i := 0; i >= 0; i = syms[i].next {
		piece := text[syms[i].start : syms[i].start+syms[i].n]
		if id, ok := t.toID[piece]; ok {
			out = append(out, id)
			continue
		}
		for j := 0; j < len(piece); j++ {
			if id := t.byteTok[piece[j]]; id >= 0 {
				out = append(out, id)
			} else if t.unk >= 0 {
				out = append(out, t.unk)
			}
		}
	}
	return out
}
