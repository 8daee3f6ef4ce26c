package tokenizer

import (
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
	t.spmSplit = true
	t.bpeCache = newWordCache()
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
		if (ty == TypeNormal || ty == TypeUndefined) && strings.Contains(strings.TrimLeft(s, spmSpace), spmSpace) {
			t.spmSplit = false
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

// spmHeap is a max-heap of bigrams: highest score first, leftmost on ties.
type spmHeap []spmBigram

func (h spmHeap) less(a, b int) bool {
	if h[a].score != h[b].score {
		return h[a].score > h[b].score
	}
	return h[a].left < h[b].left
}

func (h *spmHeap) push(x spmBigram) {
	*h = append(*h, x)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *spmHeap) pop() spmBigram {
	q := *h
	top := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q = q[:n]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < n && q.less(l, m) {
			m = l
		}
		if l+1 < n && q.less(l+1, m) {
			m = l + 1
		}
		if m == i {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return top
}

// spmState holds reusable buffers of one encoding call.
type spmState struct {
	syms   []spmSym
	heap   spmHeap
	bounds []int
	scores []float32
	ok     []bool
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
	var st spmState
	if !t.spmSplit {
		return t.spmChunk(text, &st, out)
	}
	// No piece has "▁" after other characters, so no merge crosses the start
	// of a run of "▁" that follows another character: encode such chunks
	// one by one (and cache them).
	start := 0
	for i := 0; i < len(text); {
		if i > start && strings.HasPrefix(text[i:], spmSpace) && !strings.HasSuffix(text[start:i], spmSpace) {
			out = t.spmCached(text[start:i], &st, out)
			start = i
		}
		if text[i] == spmSpace[0] && strings.HasPrefix(text[i:], spmSpace) {
			i += len(spmSpace)
		} else {
			i++
		}
	}
	return t.spmCached(text[start:], &st, out)
}

func (t *Tokenizer) spmCached(chunk string, st *spmState, out []int32) []int32 {
	if ids, ok := t.bpeCache.get(chunk); ok {
		return append(out, ids...)
	}
	n := len(out)
	out = t.spmChunk(chunk, st, out)
	t.bpeCache.put(chunk, out[n:])
	return out
}

// spmPair returns the score of the piece text[a:b] as a merge target.
func (t *Tokenizer) spmPair(text string, a, b int) (float32, bool) {
	id, ok := t.toID[text[a:b]]
	if !ok || t.types[id] != TypeNormal && t.types[id] != TypeUndefined {
		return 0, false
	}
	return t.scores[id], true
}

// spmSmall is spmChunk for short chunks: the best pair is found by a scan,
// which picks the same merge as the heap (highest score, leftmost).
func (t *Tokenizer) spmSmall(text string, st *spmState, out []int32) []int32 {
	bounds := st.bounds[:0] // start of each symbol, then len(text)
	for i := 0; i < len(text); {
		bounds = append(bounds, i)
		_, n := utf8.DecodeRuneInString(text[i:])
		i += n
	}
	bounds = append(bounds, len(text))
	scores, ok := st.scores[:0], st.ok[:0]
	for i := 0; i+2 < len(bounds); i++ {
		sc, k := t.spmPair(text, bounds[i], bounds[i+2])
		scores, ok = append(scores, sc), append(ok, k)
	}
	for {
		best := -1
		for i := range scores {
			if ok[i] && (best < 0 || scores[i] > scores[best]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		// Merge symbols best and best+1: drop the boundary between them.
		bounds = append(bounds[:best+1], bounds[best+2:]...)
		scores = append(scores[:best], scores[best+1:]...)
		ok = append(ok[:best], ok[best+1:]...)
		if best > 0 {
			scores[best-1], ok[best-1] = t.spmPair(text, bounds[best-1], bounds[best+1])
		}
		if best < len(scores) {
			scores[best], ok[best] = t.spmPair(text, bounds[best], bounds[best+2])
		}
	}
	for i := 0; i+1 < len(bounds); i++ {
		out = t.spmEmit(text[bounds[i]:bounds[i+1]], out)
	}
	st.bounds, st.scores, st.ok = bounds, scores, ok
	return out
}

// spmEmit appends the id of a final symbol, or its bytes as byte tokens.
func (t *Tokenizer) spmEmit(piece string, out []int32) []int32 {
	if id, ok := t.toID[piece]; ok {
		return append(out, id)
	}
	for j := 0; j < len(piece); j++ {
		if id := t.byteTok[piece[j]]; id >= 0 {
			out = append(out, id)
		} else if t.unk >= 0 {
			out = append(out, t.unk)
		}
	}
	return out
}

// spmSmallMax is the longest chunk (in bytes) that spmSmall handles.
var spmSmallMax = 96

// spmChunk runs the SentencePiece merges over text (already escaped).
func (t *Tokenizer) spmChunk(text string, st *spmState, out []int32) []int32 {
	if text == "" {
		return out
	}
	if len(text) <= spmSmallMax {
		return t.spmSmall(text, st, out)
	}
	syms := st.syms[:0]
	for i := 0; i < len(text); {
		_, n := utf8.DecodeRuneInString(text[i:])
		syms = append(syms, spmSym{start: i, n: n, prev: len(syms) - 1, next: len(syms) + 1})
		i += n
	}
	syms[len(syms)-1].next = -1

	h := st.heap[:0]
	tryAdd := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		piece := text[syms[l].start : syms[r].start+syms[r].n]
		id, ok := t.toID[piece]
		if !ok || t.types[id] != TypeNormal && t.types[id] != TypeUndefined {
			return
		}
		h.push(spmBigram{score: t.scores[id], left: l, right: r, size: len(piece)})
	}
	for i := 1; i < len(syms); i++ {
		tryAdd(i-1, i)
	}
	for len(h) > 0 {
		bg := h.pop()
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
		out = t.spmEmit(text[syms[i].start:syms[i].start+syms[i].n], out)
	}
	st.syms, st.heap = syms, h
	return out
}
