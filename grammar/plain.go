package grammar

import (
	"math"
	"slices"
	"unicode/utf8"
)

// Plain text is what a JSON string holds unescaped: every code point but
// the quote, the backslash, the C0 controls and DEL. Inside a string a
// grammar treats every plain character alike (the state after one is the
// same whichever it is), so a token made only of plain characters is
// decided by its count of code points: a token of c plain characters is
// allowed exactly when c plain characters are, and its distance to a
// complete text is theirs. Most of a vocabulary is plain (145 462 of
// Qwen2's 151 936 tokens), so a string state's mask is mostly the union of
// the vocabulary's plain tokens of 1 to c code points, computed once per
// vocabulary; the trie walk then visits only the other tokens (Qwen2:
// 11 944 of its 333 106 trie nodes).
//
// Whether a state treats plain characters alike is the automaton's to
// check, per state and exactly: every UTF-8 encoding of a plain code point
// is followed, byte range by byte range, to the one state they must all
// reach (plainNext). A state that fails the check gets the whole walk.

// plainRanges are the plain code points.
var plainRanges = normalize([]cpRange{{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x7E}, {0x80, utf8.MaxRune}})

// plainSeqs are plainRanges in UTF-8: per encoding length and lead-byte
// range, the range of each byte; their products are exactly the encodings
// of the plain code points.
var plainSeqs = func() [][][2]byte {
	var out [][][2]byte
	for _, r := range plainRanges {
		utf8Split(r.lo, r.hi, func(seq [][2]byte) { out = append(out, slices.Clone(seq)) })
	}
	return out
}()

// plainDense bounds the counts of code points whose tokens are kept as
// bitsets (cum); the rarer, longer plain tokens are kept as id lists.
const plainDense = 32

// plainTokens are a vocabulary's plain tokens by their count of code
// points.
type plainTokens struct {
	n    []int32   // n[c]: plain tokens of c code points (n[0] = 0; len(n)-1: the most)
	cum  []Mask    // cum[c]: the plain tokens of 1 to c code points, for c < len(cum)
	long [][]int32 // long[c-len(cum)]: the ids of c code points, for c ≥ len(cum)
}

// plainCount is the count of code points of p when p is plain text.
func plainCount(p []byte) (int, bool) {
	c := 0
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		if r == utf8.RuneError && size == 1 || !isPlain(r) {
			return 0, false
		}
		p = p[size:]
		c++
	}
	return c, c > 0
}

func isPlain(r rune) bool {
	for _, pr := range plainRanges {
		if r >= pr.lo && r <= pr.hi {
			return true
		}
	}
	return false
}

// plainSets sorts the tokens ids (usable ones, in trie order) into the
// plain ones, by count of code points, and the others (rest, in the same
// order).
func plainSets(pieces [][]byte, ids []int32, n int) (p plainTokens, rest []int32) {
	var plain, counts []int32
	for _, id := range ids {
		c, ok := plainCount(pieces[id])
		if !ok {
			rest = append(rest, id)
			continue
		}
		plain = append(plain, id)
		counts = append(counts, int32(c))
	}
	return countedSets(plain, counts, n, plainDense), rest
}

// countedSets sorts ids by their counts (counts[i] ≥ 1 is ids[i]'s) into
// the sets of plainTokens: bitsets of "1 to c" for c ≤ dense, id lists
// beyond; n is the vocabulary's size.
func countedSets(ids, counts []int32, n, dense int) (p plainTokens) {
	most := 0
	for _, c := range counts {
		most = max(most, int(c))
	}
	p.n = make([]int32, most+1)
	dense = min(most, dense) + 1
	words := (n + 63) / 64
	p.cum = make([]Mask, dense)
	for c := range p.cum {
		p.cum[c] = make(Mask, words)
	}
	p.long = make([][]int32, most+1-dense)
	for i, id := range ids {
		c := int(counts[i])
		p.n[c]++
		if c < dense {
			p.cum[c].set(id)
		} else {
			p.long[c-dense] = append(p.long[c-dense], id)
		}
	}
	for c := 1; c < dense; c++ {
		for w, bits := range p.cum[c-1] {
			p.cum[c][w] |= bits
		}
	}
	return p
}

// stMixed: the state does not take every plain character to one state.
const stMixed = -4

// plainNext is the state after one plain character from st, whichever it
// is: a state id; stDead when no plain character continues the text;
// stMixed when they do not all lead to one state; or (nothing cached)
// stFull or stComplex (a.mu held).
func (a *Automaton) plainNext(st int32) int32 {
	if s := &a.states[st]; s.plainKnown {
		return s.plainNext
	}
	out, ok := a.plainByStacks(st)
	if !ok {
		out = a.plainByBytes(st)
	}
	if out < stDead && out != stMixed {
		return out // abandoned: nothing cached
	}
	s := &a.states[st]
	s.plainNext, s.plainKnown = out, true
	return out
}

// plainSeqSets are plainSeqs with each byte range as a set.
var plainSeqSets = func() [][]byteSet {
	out := make([][]byteSet, len(plainSeqs))
	for i, seq := range plainSeqs {
		for _, r := range seq {
			var s byteSet
			s.addRange(r[0], r[1])
			out[i] = append(out[i], s)
		}
	}
	return out
}()

// plainByStacks is plainNext worked out from st's stacks, without the
// states inside a character (ok false: it cannot tell, see plainByBytes).
// A stack reads a plain character's bytes one element at a time while
// its elements are terminals; where each element takes all or none of
// the character's possible bytes at its place, the stacks that take the
// character and where each goes on (the element after it, or its
// parent's continuation when the alternative ends there) are the same for
// every character of a UTF-8 shape (plainSeqs). When they are the same
// for every shape, every plain character leads to one state: the state
// after a space, one transition.
func (a *Automaton) plainByStacks(st int32) (int32, bool) {
	g := a.g
	stacks := a.states[st].stacks
	if len(stacks) > 64 {
		return 0, false
	}
	var first [][2]int32
	for si, seq := range plainSeqSets {
		keys := a.plainKeys[:0]
		for _, fid := range stacks {
			f := a.frames[fid]
			takes := true
			for j := range seq {
				e := g.elems[int(f.pos)+j]
				if e.kind != eTerm {
					return 0, false // the character's bytes cross an element that is not a terminal
				}
				set := &g.sets[e.arg]
				in := [4]uint64{set[0] & seq[j][0], set[1] & seq[j][1], set[2] & seq[j][2], set[3] & seq[j][3]}
				if in == seq[j] {
					continue
				}
				if in != ([4]uint64{}) {
					return 0, false // some of the bytes, not all
				}
				takes = false
				break
			}
			if takes {
				q := f.pos + int32(len(seq))
				if g.elems[q].kind == eEnd {
					q = -1 // the parent goes on, whichever alternative ended
				}
				keys = append(keys, [2]int32{q, f.parent})
			}
		}
		slices.SortFunc(keys, func(x, y [2]int32) int {
			if x[0] != y[0] {
				return int(x[0] - y[0])
			}
			return int(x[1] - y[1])
		})
		keys = slices.Compact(keys)
		a.plainKeys = keys
		if si == 0 {
			first = slices.Clone(keys)
		} else if !slices.Equal(first, keys) {
			return 0, false
		}
	}
	if len(first) == 0 {
		return stDead, true
	}
	return a.step(st, plainSeqs[0][0][0]), true
}

// plainByBytes is plainNext by following every UTF-8 shape of a plain
// character through the automaton, byte range by byte range (a.mu held).
func (a *Automaton) plainByBytes(st int32) int32 {
	const unset = math.MinInt32
	const maxFront = 16 // distinct states after part of an encoding (more: stMixed)
	out := int32(unset)
	same := func(t int32) bool { // out = t so far; else stMixed
		if out == unset {
			out = t
		}
		if out != t {
			out = stMixed
		}
		return out == t
	}
	var buf [2][maxFront]int32
seqs:
	for _, seq := range plainSeqs {
		front := append(buf[0][:0], st)
		for i, r := range seq {
			next := buf[(i+1)&1][:0]
			for _, s := range front {
				for b := int(r[0]); b <= int(r[1]); b++ {
					t := a.step(s, byte(b))
					switch {
					case t < stDead:
						return t // abandoned: nothing cached
					case t == stDead:
						if !same(stDead) {
							break seqs
						}
					case !slices.Contains(next, t):
						if len(next) == maxFront {
							out = stMixed
							break seqs
						}
						next = append(next, t)
					}
				}
			}
			front = next
		}
		for _, t := range front {
			if !same(t) {
				break seqs
			}
		}
	}
	if out == unset { // no plain code point at all (not so: plainRanges)
		out = stMixed
	}
	return out
}

// plainPart adds to m, for state st, the plain tokens (all of them: st
// treats plain characters alike all the way) whose distance after them is
// at most bound, and returns the smallest and largest distance after any
// plain token allowed from st (a.mu held). Code stMixed: some state on the
// way does not treat plain characters alike, m is untouched (walk every
// token); stFull or stComplex: abandoned.
func (a *Automaton) plainPart(st, bound int32, m Mask) (minAfter, maxAfter, code int32) {
	p := &a.v.plain
	most := len(p.n) - 1
	if most < 1 {
		return maxDist, 0, stMixed
	}
	if cap(a.chain) < most+1 {
		a.chain = make([]int32, most+1)
	}
	at := a.chain[:most+1] // at[c]: the state after c plain characters
	at[0] = st
	for c := 1; c <= most; c++ {
		prev := at[c-1]
		next := a.plainNext(prev)
		if next < stDead {
			return maxDist, 0, next
		}
		at[c] = next
		if next == stDead || next == prev { // so on to the end
			for j := c + 1; j <= most; j++ {
				at[j] = next
			}
			break
		}
	}
	minAfter, maxAfter = addCounted(m, p, at, bound, a.dists)
	if at[1] >= 0 {
		a.plainMasks++
	}
	return minAfter, maxAfter, 0
}

// addCounted adds to m the tokens of p whose count c leads to a state
// at[c] at most bound bytes from a complete text (at[c] < 0: no token of
// c or more), and returns the smallest and largest distance after any of
// p's tokens that at allows.
func addCounted(m Mask, p *plainTokens, at []int32, bound int32, dists []int32) (minAfter, maxAfter int32) {
	minAfter, maxAfter = maxDist, 0
	most := len(p.n) - 1
	runLo, runHi := 0, 0 // the counts of a run of tokens in m, from cum (runLo 0: none)
	for c := 1; c <= most && at[c] >= 0; c++ {
		if p.n[c] == 0 {
			continue
		}
		d := dists[at[c]]
		minAfter, maxAfter = min(minAfter, d), max(maxAfter, d)
		in := d <= bound
		switch {
		case c >= len(p.cum):
			if in {
				for _, id := range p.long[c-len(p.cum)] {
					m.set(id)
				}
			}
		case in:
			if runLo == 0 {
				runLo = c
			}
			runHi = c
		case runLo != 0:
			orRun(m, p.cum, runLo, runHi)
			runLo = 0
		}
	}
	if runLo != 0 {
		orRun(m, p.cum, runLo, runHi)
	}
	return minAfter, maxAfter
}

// orRun adds to m the tokens of lo to hi code points.
func orRun(m Mask, cum []Mask, lo, hi int) {
	add, below := cum[hi], cum[lo-1]
	m = m[:len(add)]
	below = below[:len(add)]
	for w, bits := range add {
		m[w] |= bits &^ below[w]
	}
}
