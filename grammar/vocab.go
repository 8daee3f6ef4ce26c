package grammar

import (
	"bytes"
	"math/bits"
	"slices"

	"worker-orcd/tokenizer"
)

// Vocab is a model's vocabulary as the matcher sees it: each token's bytes,
// arranged in a trie, and the end-of-generation ids. Build it once per
// model (NewVocab) and share it.
type Vocab struct {
	n   int
	eog []int32
	// The trie in depth-first order: node i has byte tb[i] at depth td[i]
	// (1 for a first byte), its subtree ends before tnext[i], and ttok[i]
	// is the token ending there (-1 none; further ids with the same bytes in
	// dup).
	tb    []byte
	td    []uint16
	tnext []int32
	ttok  []int32
	dup   map[int32][]int32
	maxD  int
	piece [][]byte
}

// NewVocab builds the trie of a vocabulary. pieces[id] is the text id adds
// when decoded; ids with usable false (control, unknown, unused tokens) and
// empty pieces are never allowed by a grammar; eog are the ids that end
// generation, allowed when the text is complete.
func NewVocab(pieces [][]byte, usable func(id int32) bool, eog []int32) *Vocab {
	v := &Vocab{n: len(pieces), eog: slices.Clone(eog), dup: map[int32][]int32{}, piece: make([][]byte, len(pieces))}
	ids := make([]int32, 0, len(pieces))
	for i, p := range pieces {
		if len(p) == 0 || len(p) > 0xFFFF || (usable != nil && !usable(int32(i))) {
			continue
		}
		v.piece[i] = p
		ids = append(ids, int32(i))
	}
	slices.SortFunc(ids, func(a, b int32) int {
		if c := bytes.Compare(pieces[a], pieces[b]); c != 0 {
			return c
		}
		return int(a - b)
	})
	// Build the trie from the sorted pieces: a path of nodes per piece,
	// sharing the longest common prefix with the previous one.
	var path []int32 // node index at each depth-1
	var prev []byte
	for _, id := range ids {
		p := pieces[id]
		common := 0
		for common < len(p) && common < len(prev) && p[common] == prev[common] {
			common++
		}
		if common == len(p) && len(p) == len(prev) { // same bytes as the previous token
			last := path[len(p)-1]
			v.dup[last] = append(v.dup[last], id)
			continue
		}
		// Close the subtrees deeper than the common prefix.
		for d := len(path) - 1; d >= common; d-- {
			v.tnext[path[d]] = int32(len(v.tb))
		}
		path = path[:common]
		for d := common; d < len(p); d++ {
			path = append(path, int32(len(v.tb)))
			v.tb = append(v.tb, p[d])
			v.td = append(v.td, uint16(d+1))
			v.tnext = append(v.tnext, 0)
			v.ttok = append(v.ttok, -1)
		}
		v.ttok[path[len(p)-1]] = id
		v.maxD = max(v.maxD, len(p))
		prev = p
	}
	for _, n := range path {
		v.tnext[n] = int32(len(v.tb))
	}
	return v
}

// Size is the number of token ids (the mask's length in bits).
func (v *Vocab) Size() int { return v.n }

// Nodes is the number of trie nodes.
func (v *Vocab) Nodes() int { return len(v.tb) }

// Mask is a set of token ids: bit id%64 of word id/64.
type Mask []uint64

// Has reports whether id is in the mask.
func (m Mask) Has(id int32) bool {
	return id >= 0 && int(id>>6) < len(m) && m[id>>6]&(1<<(uint(id)&63)) != 0
}

// Count returns the number of ids in the mask.
func (m Mask) Count() int {
	n := 0
	for _, w := range m {
		n += bits.OnesCount64(w)
	}
	return n
}

func (m Mask) set(id int32) { m[id>>6] |= 1 << (uint(id) & 63) }

// computeMask walks the trie from state st (a.mu held). With budget ≥ 0
// only tokens after which a complete text is at most budget-1 bytes away
// are set; with budget < 0 all are, and the state's maxAfter is recorded.
func (a *Automaton) computeMask(st int32, budget int) Mask {
	v := a.v
	m := make(Mask, (v.n+63)/64)
	if a.states[st].accept {
		for _, id := range v.eog {
			if id >= 0 && int(id) < v.n {
				m.set(id)
			}
		}
	}
	if len(a.states[st].stacks) == 0 {
		a.states[st].maxAfter = 0
		return m
	}
	maxAfter := int32(0)
	limit := int32(maxDist)
	if budget >= 0 {
		limit = int32(max(budget-1, 0))
	}
	if cap(a.walkStack) < v.maxD+1 {
		a.walkStack = make([]int32, v.maxD+1)
	}
	at := a.walkStack[:v.maxD+1] // at[d]: the state after the first d bytes of the current path
	at[0] = st
	for i := 0; i < len(v.tb); {
		d := int(v.td[i])
		next := a.step(at[d-1], v.tb[i])
		if next < 0 {
			i = int(v.tnext[i]) // nothing below this prefix can match
			continue
		}
		at[d] = next
		if t := v.ttok[i]; t >= 0 {
			nd := a.states[next].dist
			maxAfter = max(maxAfter, nd)
			if nd > limit {
				i++
				continue
			}
			m.set(t)
			for _, id := range v.dup[int32(i)] {
				m.set(id)
			}
		}
		i++
	}
	if budget < 0 {
		a.states[st].maxAfter = maxAfter
	}
	return m
}

// VocabOf is a tokenizer's vocabulary as a grammar sees it: each token's
// decoded bytes; control, unknown and unused tokens never allowed, and the
// end-of-generation ones only when the text is complete.
func VocabOf(tok *tokenizer.Tokenizer) *Vocab {
	n := tok.VocabSize()
	pieces := make([][]byte, n)
	var eog []int32
	for id := range int32(n) {
		pieces[id], _ = tok.Piece(id)
		if tok.IsEOG(id) {
			eog = append(eog, id)
		}
	}
	usable := func(id int32) bool {
		switch tok.Type(id) {
		case tokenizer.TypeControl, tokenizer.TypeUnknown, tokenizer.TypeUnused:
			return false
		}
		return !tok.IsEOG(id)
	}
	return NewVocab(pieces, usable, eog)
}
