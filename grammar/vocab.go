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
	n     int
	eog   []int32
	all   trie        // every usable token
	rest  trie        // the tokens that are not plain text (plain.go), and their prefixes
	plain plainTokens // the plain-text tokens by their count of code points
	piece [][]byte
	// classes are the tokens made only of a class's bytes, by class
	// (class.go), worked out as grammars ask for them; leadRoots are the
	// first bytes of at least 1/64 of the tokens (lead classes pay there).
	classes   classCache
	leadRoots []byte
}

// trie is a set of tokens in a trie, its nodes in depth-first order (see
// node); further ids with the same bytes as a node's token in dup.
type trie struct {
	nodes []node
	dup   map[int32][]int32
	maxD  int // the longest token's bytes
}

// node is one trie node: byte b at depth d (1 for a first byte), its
// subtree ends before node next, tok is the token ending here (the
// vocabulary's size when none),
// and dup says whether dup holds more ids with the same bytes.
type node struct {
	next int32
	tok  int32
	d    uint16
	b    byte
	dup  bool
}

// NewVocab builds the trie of a vocabulary. pieces[id] is the text id adds
// when decoded; ids with usable false (control, unknown, unused tokens) and
// empty pieces are never allowed by a grammar; eog are the ids that end
// generation, allowed when the text is complete.
func NewVocab(pieces [][]byte, usable func(id int32) bool, eog []int32) *Vocab {
	v := &Vocab{n: len(pieces), eog: slices.Clone(eog), piece: make([][]byte, len(pieces))}
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
	v.all = buildTrie(pieces, ids, v.n)
	for i := 0; i < len(v.all.nodes); i = int(v.all.nodes[i].next) {
		toks := 0
		for j := i; j < int(v.all.nodes[i].next); j++ {
			if v.all.nodes[j].tok != int32(v.n) {
				toks += 1 + len(v.all.dup[int32(j)])
			}
		}
		if toks >= v.n/64 {
			v.leadRoots = append(v.leadRoots, v.all.nodes[i].b)
		}
	}
	v.plain, ids = plainSets(pieces, ids, v.n)
	v.rest = buildTrie(pieces, ids, v.n)
	return v
}

// buildTrie builds the trie of ids, sorted by their pieces (then by id);
// nodes with no token hold noTok.
func buildTrie(pieces [][]byte, ids []int32, noTok int) trie {
	t := trie{dup: map[int32][]int32{}}
	// A path of nodes per piece, sharing the longest common prefix with
	// the previous one.
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
			t.dup[last] = append(t.dup[last], id)
			t.nodes[last].dup = true
			continue
		}
		// Close the subtrees deeper than the common prefix.
		for d := len(path) - 1; d >= common; d-- {
			t.nodes[path[d]].next = int32(len(t.nodes))
		}
		path = path[:common]
		for d := common; d < len(p); d++ {
			path = append(path, int32(len(t.nodes)))
			t.nodes = append(t.nodes, node{tok: int32(noTok), d: uint16(d + 1), b: p[d]})
		}
		t.nodes[path[len(p)-1]].tok = id
		t.maxD = max(t.maxD, len(p))
		prev = p
	}
	for _, n := range path {
		t.nodes[n].next = int32(len(t.nodes))
	}
	return t
}

// Size is the number of token ids (the mask's length in bits).
func (v *Vocab) Size() int { return v.n }

// Nodes is the number of trie nodes.
func (v *Vocab) Nodes() int { return len(v.all.nodes) }

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

// hasEOG reports whether the vocabulary has an end-of-generation token.
func (v *Vocab) hasEOG() bool {
	for _, id := range v.eog {
		if id >= 0 && int(id) < v.n {
			return true
		}
	}
	return false
}

// computeMask walks the trie from state st (a.mu held): the tokens after
// which the text is still a prefix of the language, with limit ≥ 0 only
// those after which a complete text is at most limit bytes away, and the
// end-of-generation ids when the text is complete. With limit < 0 it also
// records the state's minAfter and maxAfter. Where st treats every plain
// character alike (inside a string), the plain-text tokens come from the
// vocabulary's sets (plainPart) and only the other tokens are walked. A
// computation that meets a transition it cannot compute (stFull,
// stComplex) stops and returns that code with no mask; nothing of it is
// recorded but the transitions it did compute.
func (a *Automaton) computeMask(st int32, limit int32) (Mask, int32) {
	v := a.v
	words := (v.n + 63) / 64
	m := make(Mask, words+1) // bit n is set by nodes with no token (cleared at the end)
	if a.states[st].accept {
		for _, id := range v.eog {
			if id >= 0 && int(id) < v.n {
				m.set(id)
			}
		}
	}
	if len(a.states[st].stacks) == 0 {
		if limit < 0 {
			a.states[st].minAfter, a.states[st].maxAfter = 0, 0
		}
		return m[:words], 0
	}
	bound := int32(maxDist)
	if limit >= 0 {
		bound = limit
	}
	t := &v.rest // the plain tokens come from plainPart
	var skips *[256]*classTokens
	minAfter, maxAfter, code := a.plainPart(st, bound, m)
	switch {
	case code == stMixed:
		// The tokens of st's byte class and lead classes, where it has
		// them, come from classParts, and the walk skips the subtrees
		// made only of them.
		t = &v.all
		if minAfter, maxAfter, code = a.classParts(st, bound, m); code < stDead {
			return nil, code
		}
		if a.skipsSet {
			skips = &a.skips
		}
	case code < stDead:
		return nil, code
	}
	lo, hi, code := a.walkTrie(t, skips, st, bound, m)
	if code < stDead {
		return nil, code
	}
	minAfter, maxAfter = min(minAfter, lo), max(maxAfter, hi)
	if limit < 0 {
		if a.states[st].accept && v.hasEOG() {
			// An end-of-generation token finishes a complete text now: a
			// choice that always fits the budget.
			minAfter = 0
		}
		a.states[st].minAfter, a.states[st].maxAfter = minAfter, maxAfter
	}
	noTok := int32(v.n)
	m[noTok>>6] &^= 1 << (uint(noTok) & 63)
	return m[:words], 0
}

// walkTrie adds to m the tokens of t allowed from state st whose
// distance after them is at most bound, and returns the smallest and
// largest distance after any token of t allowed from st (a.mu held; code
// stFull or stComplex: abandoned). m has a spare bit past the vocabulary,
// which nodes with no token set. In the subtree of each first byte b,
// the subtrees of the pure nodes of skips[b] (skips nil, or skips[b] nil:
// none) are left out: their tokens are the caller's.
func (a *Automaton) walkTrie(t *trie, skips *[256]*classTokens, st, bound int32, m Mask) (minAfter, maxAfter, code int32) {
	noTok := int32(a.v.n)
	minAfter, maxAfter = maxDist, 0
	if cap(a.walkStack) < t.maxD+1 {
		a.walkStack = make([]int32, t.maxD+1)
	}
	at := a.walkStack[:t.maxD+1] // at[d]: the state after the first d bytes of the current path
	at[0] = st
	nodes := t.nodes
	dists := a.dists
	cur := st             // the state at the depth above node i
	var skip *classTokens // skips[the first byte of node i]
	for i := 0; i < len(nodes); {
		nd := &nodes[i]
		if skips != nil {
			if nd.d == 1 {
				skip = skips[nd.b]
			}
			if skip != nil && skip.pureAt(i) {
				if i = int(nd.next); i < len(nodes) {
					cur = at[nodes[i].d-1]
				}
				continue
			}
		}
		next := a.trans[int(cur)<<8|int(nd.b)] - 1 // -2: dead; -1: not computed
		if next == -1 {
			if next = a.step(cur, nd.b); next < stDead {
				return 0, 0, next
			}
			dists = a.dists // step may have grown the tables
		}
		if next < 0 {
			i = int(nd.next) // nothing below this prefix can match
		} else {
			// Without branches on the token (they mispredict half the
			// time): a node with no token sets bit n, past the mask.
			tok := nd.tok
			dist := dists[next]
			lo, hi := dist, dist
			if tok == noTok {
				lo, hi = maxDist, 0
			}
			minAfter, maxAfter = min(minAfter, lo), max(maxAfter, hi)
			var bit uint64
			if dist <= bound {
				bit = 1
			}
			m[tok>>6] |= bit << (uint(tok) & 63)
			if nd.dup && dist <= bound {
				for _, id := range t.dup[int32(i)] {
					m.set(id)
				}
			}
			at[nd.d] = next
			i++
		}
		if i < len(nodes) {
			cur = at[nodes[i].d-1]
		}
	}
	return minAfter, maxAfter, 0
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
