package tokenizer

import (
	"container/heap"
	"strings"
	"sync"
)

// Byte-level BPE (GPT-2 style): every byte of the text is first mapped to a
// printable character (bytes 33–126, 161–172 and 174–255 to themselves, the
// rest to U+0100 onwards in order), pieces in the vocabulary and merges are
// written in those characters. This implementation works on raw bytes: the
// vocabulary is decoded once, so encoding never builds mapped strings.

var byteToRune, runeToByte = func() (b2r [256]rune, r2b map[rune]byte) {
	r2b = make(map[rune]byte, 256)
	next := rune(256)
	for b := 0; b < 256; b++ {
		if (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255) {
			b2r[b] = rune(b)
		} else {
			b2r[b] = next
			next++
		}
		r2b[b2r[b]] = byte(b)
	}
	return b2r, r2b
}()

// byteLevelDecode turns a byte-level piece into its bytes; ok is false when
// the piece holds a character outside the byte alphabet.
func byteLevelDecode(piece string) ([]byte, bool) {
	out := make([]byte, 0, len(piece))
	for _, r := range piece {
		b, ok := runeToByte[r]
		if !ok {
			return nil, false
		}
		out = append(out, b)
	}
	return out, true
}

// byteLevelEncode is the inverse of byteLevelDecode.
func byteLevelEncode(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		sb.WriteRune(byteToRune[c])
	}
	return sb.String()
}

func (t *Tokenizer) initBPE(v *Vocab) error {
	pre, ok := preTokenizerByName(v.Pre)
	if !ok {
		return newError(CodeTokenizer, "unknown pre-tokenizer %q in tokenizer.ggml.pre (supported: qwen2, llama-bpe, gpt2, default)", v.Pre)
	}
	if len(v.Merges) == 0 {
		return newError(CodeTokenizer, "byte-level BPE vocabulary without merges (tokenizer.ggml.merges is empty)")
	}
	t.pre = pre
	n := len(v.Tokens)
	t.pieces = make([][]byte, n)
	t.toID = make(map[string]int32, n)
	for i, s := range v.Tokens {
		ty := t.types[i]
		if ty == TypeControl || ty == TypeUserDefined {
			t.pieces[i] = []byte(s) // special tokens are stored as plain text
			continue
		}
		b, ok := byteLevelDecode(s)
		if !ok {
			b = []byte(s)
		}
		t.pieces[i] = b
		if _, dup := t.toID[string(b)]; !dup {
			t.toID[string(b)] = int32(i)
		}
	}
	for b := 0; b < 256; b++ {
		id, ok := t.toID[string([]byte{byte(b)})]
		if !ok {
			id = -1
		}
		t.byteTok[b] = id
	}
	t.merges = make(map[uint64]uint64, len(v.Merges))
	for rank, m := range v.Merges {
		sp := strings.IndexByte(m, ' ')
		if sp <= 0 || sp == len(m)-1 {
			continue
		}
		lb, ok1 := byteLevelDecode(m[:sp])
		rb, ok2 := byteLevelDecode(m[sp+1:])
		if !ok1 || !ok2 {
			continue
		}
		l, okl := t.toID[string(lb)]
		r, okr := t.toID[string(rb)]
		mid, okm := t.toID[string(lb)+string(rb)]
		if !okl || !okr || !okm {
			continue
		}
		key := uint64(uint32(l))<<32 | uint64(uint32(r))
		if _, dup := t.merges[key]; !dup {
			t.merges[key] = uint64(rank)<<32 | uint64(uint32(mid))
		}
	}
	t.bpeCache = newWordCache()
	return nil
}

// encodeBPE appends the ids of text (no special tokens in it) to out.
func (t *Tokenizer) encodeBPE(text string, out []int32) []int32 {
	var st bpeState
	t.pre.split(text, func(word string) {
		if len(word) == 1 {
			if id := t.byteTok[word[0]]; id >= 0 {
				out = append(out, id)
			}
			return
		}
		if ids, ok := t.bpeCache.get(word); ok {
			out = append(out, ids...)
			return
		}
		start := len(out)
		out = t.bpeWord(word, &st, out)
		t.bpeCache.put(word, out[start:])
	})
	return out
}

// bpeState holds reusable buffers of one encoding call.
type bpeState struct {
	syms  []int32
	ranks []uint64 // per adjacent pair: rank<<32 | merged id, or noMerge
}

const noMerge = ^uint64(0)

func (t *Tokenizer) pairRank(l, r int32) uint64 {
	if v, ok := t.merges[uint64(uint32(l))<<32|uint64(uint32(r))]; ok {
		return v
	}
	return noMerge
}

// bpeWord applies the merges to one pre-token: repeatedly the adjacent pair
// with the lowest merge rank (leftmost on ties) is replaced by its merge.
func (t *Tokenizer) bpeWord(word string, st *bpeState, out []int32) []int32 {
	syms := st.syms[:0]
	for i := 0; i < len(word); i++ {
		syms = append(syms, t.byteTok[word[i]])
	}
	if len(syms) > 256 {
		out = t.bpeLong(syms, out)
		st.syms = syms
		return out
	}
	ranks := st.ranks[:0]
	for i := 0; i+1 < len(syms); i++ {
		ranks = append(ranks, t.pairRank(syms[i], syms[i+1]))
	}
	for {
		best, bestRank := -1, noMerge
		for i, r := range ranks {
			if r < bestRank {
				best, bestRank = i, r
			}
		}
		if best < 0 {
			break
		}
		syms[best] = int32(uint32(bestRank))
		syms = append(syms[:best+1], syms[best+2:]...)
		ranks = append(ranks[:best], ranks[best+1:]...)
		if best > 0 {
			ranks[best-1] = t.pairRank(syms[best-1], syms[best])
		}
		if best < len(ranks) {
			ranks[best] = t.pairRank(syms[best], syms[best+1])
		}
	}
	for _, id := range syms {
		if id >= 0 {
			out = append(out, id)
		}
	}
	st.syms, st.ranks = syms, ranks
	return out
}

// bpeLong is bpeWord for long pre-tokens (a 10 000-letter word): a heap of
// candidate merges over a linked list of symbols, O(n log n).
func (t *Tokenizer) bpeLong(syms []int32, out []int32) []int32 {
	n := len(syms)
	prev := make([]int32, n)
	next := make([]int32, n)
	for i := range syms {
		prev[i] = int32(i - 1)
		next[i] = int32(i + 1)
	}
	next[n-1] = -1
	h := &mergeHeap{}
	push := func(i int32) {
		j := next[i]
		if i < 0 || j < 0 {
			return
		}
		if v := t.pairRank(syms[i], syms[j]); v != noMerge {
			heap.Push(h, mergeCand{rank: v >> 32, pos: i, left: syms[i], right: syms[j], merged: int32(uint32(v))})
		}
	}
	for i := 0; i+1 < n; i++ {
		push(int32(i))
	}
	for h.Len() > 0 {
		c := heap.Pop(h).(mergeCand)
		i := c.pos
		j := next[i]
		if syms[i] != c.left || j < 0 || syms[j] != c.right || syms[i] == -2 {
			continue // stale
		}
		syms[i] = c.merged
		syms[j] = -2 // removed
		next[i] = next[j]
		if next[j] >= 0 {
			prev[next[j]] = i
		}
		if prev[i] >= 0 {
			push(prev[i])
		}
		push(i)
	}
	for i := int32(0); i >= 0; i = next[i] {
		if syms[i] >= 0 {
			out = append(out, syms[i])
		}
	}
	return out
}

type mergeCand struct {
	rank                uint64
	pos                 int32
	left, right, merged int32
}

type mergeHeap []mergeCand

func (h mergeHeap) Len() int { return len(h) }
func (h mergeHeap) Less(a, b int) bool {
	if h[a].rank != h[b].rank {
		return h[a].rank < h[b].rank
	}
	return h[a].pos < h[b].pos
}
func (h mergeHeap) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *mergeHeap) Push(x any)   { *h = append(*h, x.(mergeCand)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// wordCache remembers the ids of recent pre-tokens. It is bounded: when
// full it is cleared. Safe for concurrent use.
type wordCache struct {
	mu sync.RWMutex
	m  map[string][]int32
}

const wordCacheMax = 1 << 16

func newWordCache() *wordCache { return &wordCache{m: make(map[string][]int32)} }

func (c *wordCache) get(w string) ([]int32, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.RLock()
	ids, ok := c.m[w]
	c.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(w string, ids []int32) {
	if c == nil || len(w) > 64 {
		return
	}
	cp := append([]int32(nil), ids...)
	c.mu.Lock()
	if len(c.m) >= wordCacheMax {
		clear(c.m)
	}
	c.m[strings.Clone(w)] = cp
	c.mu.Unlock()
}
