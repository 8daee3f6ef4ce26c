package grammar

import "sync"

// Byte classes generalize the plain-text sets (plain.go) to states
// outside JSON strings' plain text: the email format's
// [a-zA-Z0-9._+-]{0,30}, a pattern's [0-9]{5}, a key's letters. Where
// every byte of a class K leads from a state to one state, and so on from
// there, a token made only of K's bytes is decided by its length: it is
// allowed exactly when that many bytes of K are, and its distance after
// it is theirs. A state's K is the largest set of bytes its stacks treat
// alike (byteSigs: the same stacks take them, so one transition covers
// them all); the vocabulary keeps, per class asked for, its tokens made
// only of K's bytes by length (bitsets, as the plain sets) and a bit per
// node of the whole trie whose subtree holds only such tokens, which the
// walk then skips. Classes are worked out when first asked for and kept
// with the vocabulary, shared by every grammar.
//
// The same holds one byte further: where a byte b outside the state's
// class leads to a state with a class K' (the email's domain: "." then a
// top-level domain's letters), the tokens b·w with w made only of K''s
// bytes are decided by the length of w, and the vocabulary keeps them as a
// lead class (b, K'), whose pure nodes lie in b's subtree.

// classTokens are a vocabulary's tokens made only of the bytes of one
// class K, or (a lead class) of a lead byte and then only K's bytes.
type classTokens struct {
	k     byteSet
	bytes []byte      // k's bytes, in order
	byLen plainTokens // by count of K's bytes (plainTokens' counts of code points)
	// pure has bit i-off for node i of the vocabulary's whole trie whose
	// subtree holds only such tokens (and so does the path to it).
	pure []uint64
	off  int
}

// pureAt reports whether node i is pure (false outside the bits).
func (ct *classTokens) pureAt(i int) bool {
	j := i - ct.off
	return uint(j>>6) < uint(len(ct.pure)) && ct.pure[j>>6]&(1<<(uint(j)&63)) != 0
}

// classKey names a class: its bytes and the lead byte (-1: none).
type classKey struct {
	k    byteSet
	lead int16
}

// classCache holds a vocabulary's classTokens by class (nil: too few
// tokens to pay).
type classCache struct {
	mu    sync.Mutex
	m     map[classKey]*classTokens
	bytes int // the non-nil entries' size (classTokens.size)
}

const (
	// classDense bounds the lengths kept as bitsets (classTokens.byLen.cum):
	// longer tokens of one class are rare. A class of fewer than 1/64 of
	// the vocabulary's tokens keeps them all as id lists.
	classDense = 16
	// maxClassBytes and maxClassEntries bound the cache (a large class of
	// Qwen2's is ~370 KiB, a small one ~20 KiB); past them it is emptied
	// and refilled.
	maxClassBytes   = 8 << 20
	maxClassEntries = 256
)

// classTokens returns the tokens made only of k's bytes (lead < 0) or of
// the byte lead and then only k's bytes, or nil when they are too few to
// pay (fewer than 1/512 of the vocabulary).
func (v *Vocab) classTokens(k *byteSet, lead int) *classTokens {
	c := &v.classes
	key := classKey{*k, int16(lead)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ct, ok := c.m[key]; ok {
		return ct
	}
	ct := buildClass(&v.all, k, lead, v.n)
	size := 0
	if ct != nil {
		size = ct.size()
	}
	if c.m == nil || len(c.m) >= maxClassEntries || c.bytes+size > maxClassBytes {
		c.m, c.bytes = map[classKey]*classTokens{}, 0
	}
	c.m[key] = ct
	c.bytes += size
	return ct
}

// size is the memory ct takes, roughly (bytes).
func (ct *classTokens) size() int {
	n := 8*len(ct.pure) + 4*len(ct.byLen.n)
	for _, m := range ct.byLen.cum {
		n += 8 * len(m)
	}
	for _, ids := range ct.byLen.long {
		n += 4 * len(ids)
	}
	return n
}

// buildClass sorts the tokens of t made only of k's bytes (lead < 0), or
// of the byte lead and then k's bytes, by their count of k's bytes and
// marks the nodes whose subtrees hold only such tokens; nil when they are
// fewer than n/512. It visits only the nodes whose prefix is such (and
// their children).
func buildClass(t *trie, k *byteSet, lead int, n int) *classTokens {
	nodes := t.nodes
	noTok := int32(n)
	lo, hi, d0 := 0, len(nodes), uint16(0) // the nodes looked at; d0: the lead's depth
	if lead >= 0 {
		lo = -1
		for i := 0; i < len(nodes); i = int(nodes[i].next) { // the first bytes
			if nodes[i].b == byte(lead) {
				lo, hi, d0 = i+1, int(nodes[i].next), 1
				break
			}
		}
		if lo < 0 {
			return nil
		}
	}
	type open struct {
		i      int32
		impure bool // the subtree holds a byte outside k
	}
	pure := make([]uint64, (hi-lo+63)/64)
	stack := make([]open, 0, t.maxD)
	closeTo := func(d uint16) { // the subtrees of the open nodes at depth ≥ d end here
		for len(stack) > 0 && nodes[stack[len(stack)-1].i].d >= d {
			o := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			switch {
			case !o.impure:
				j := int(o.i) - lo
				pure[j>>6] |= 1 << (uint(j) & 63)
			case len(stack) > 0:
				stack[len(stack)-1].impure = true
			}
		}
	}
	var ids, lens []int32
	for i := lo; i < hi; {
		nd := &nodes[i]
		closeTo(nd.d)
		if !k.has(nd.b) {
			if len(stack) > 0 { // the parent (on the stack: its prefix is in k)
				stack[len(stack)-1].impure = true
			}
			i = int(nd.next)
			continue
		}
		stack = append(stack, open{i: int32(i)})
		if nd.tok != noTok {
			ids = append(ids, nd.tok)
			lens = append(lens, int32(nd.d-d0))
			if nd.dup {
				for _, id := range t.dup[int32(i)] {
					ids = append(ids, id)
					lens = append(lens, int32(nd.d-d0))
				}
			}
		}
		i++
	}
	closeTo(0)
	if len(ids) == 0 || len(ids) < n/512 {
		return nil
	}
	dense := classDense
	if len(ids) < n/64 {
		dense = 0 // few: as id lists (a bitset is n/8 bytes)
	}
	ct := &classTokens{k: *k, byLen: countedSets(ids, lens, n, dense), pure: pure, off: lo}
	for b := range 256 {
		if k.has(byte(b)) {
			ct.bytes = append(ct.bytes, byte(b))
		}
	}
	return ct
}

// classOf is the largest set of bytes that st's stacks treat alike (the
// same stacks take them), when it has two bytes or more; worked out once
// per state (a.mu held).
func (a *Automaton) classOf(st int32) (byteSet, bool) {
	if s := &a.states[st]; s.kKnown {
		return s.k, s.hasK
	}
	var k byteSet
	best := 0
	// Its own signatures: byteSigs keeps those of the state a walk steps
	// from, which this would replace.
	var sigs [256]uint64
	if a.sigsInto(st, &sigs) {
		var distinct [256]uint64
		var count [256]int
		n, last := 0, 0
		for _, sig := range sigs {
			if sig == 0 {
				continue
			}
			if distinct[last] != sig || last >= n {
				last = 0
				for last < n && distinct[last] != sig {
					last++
				}
				if last == n {
					distinct[n] = sig
					n++
				}
			}
			count[last]++
		}
		bestSig := uint64(0)
		for j := range n {
			if count[j] > best {
				best, bestSig = count[j], distinct[j]
			}
		}
		for b, sig := range sigs {
			if sig == bestSig && sig != 0 {
				k.add(byte(b))
			}
		}
	}
	s := &a.states[st]
	s.k, s.hasK, s.kKnown = k, best >= 2, true
	return k, best >= 2
}

// stateClass is st's class's sets (classOf), nil when it has none or
// they are too few; worked out once per state (a.mu held).
func (a *Automaton) stateClass(st int32) *classTokens {
	s := &a.states[st]
	if !s.classKnown {
		var ct *classTokens
		if k, ok := a.classOf(st); ok {
			ct = a.v.classTokens(&k, -1)
		}
		s = &a.states[st]
		s.class, s.classKnown = ct, true
	}
	return s.class
}

// leadClasses are st's lead classes: for each first byte of many tokens
// (Vocab.leadRoots) that leads outside st's class (own) to a state with a
// class of its own, the sets of that byte and then the class's bytes;
// worked out once per state (a.mu held; code stFull or stComplex:
// abandoned, nothing cached).
func (a *Automaton) leadClasses(st int32, own *classTokens) ([]leadClass, int32) {
	if s := &a.states[st]; s.leadsKnown {
		return s.leads, 0
	}
	var leads []leadClass
	for _, b := range a.v.leadRoots {
		if own != nil && own.k.has(b) {
			continue
		}
		t := a.step(st, b)
		if t < stDead {
			return nil, t
		}
		if t == stDead {
			continue
		}
		k, ok := a.classOf(t)
		if !ok {
			continue
		}
		if ct := a.v.classTokens(&k, int(b)); ct != nil {
			leads = append(leads, leadClass{b: b, ct: ct})
		}
	}
	s := &a.states[st]
	s.leads, s.leadsKnown = leads, true
	return leads, 0
}

// leadClass is a lead class of a state: the tokens that start with b and
// go on with ct's class's bytes only.
type leadClass struct {
	b  byte
	ct *classTokens
}

// classParts adds to m, for state st, the tokens of st's class and of its
// lead classes (from their sets, where the states after 1, 2, … of the
// class's bytes take all of them to one state) whose distance after them
// is at most bound, and returns the smallest and largest distance after
// any of them allowed, and in a.skips, per first byte, the sets whose
// pure nodes the walk may skip (a.skipsSet: some) (a.mu held). Code
// stFull or stComplex: abandoned.
func (a *Automaton) classParts(st, bound int32, m Mask) (minAfter, maxAfter, code int32) {
	minAfter, maxAfter = maxDist, 0
	if a.skipsSet {
		clear(a.skips[:])
		a.skipsSet = false
	}
	own := a.stateClass(st)
	if own != nil {
		lo, hi, code := a.classPart(st, own, bound, m)
		switch {
		case code == 0:
			minAfter, maxAfter = lo, hi
			for _, b := range own.bytes {
				a.skips[b] = own
			}
			a.skipsSet = true
			a.classMasks++
		case code != stMixed:
			return 0, 0, code
		}
	}
	leads, code := a.leadClasses(st, own)
	if code != 0 {
		return 0, 0, code
	}
	for _, l := range leads {
		t := a.step(st, l.b) // cached
		lo, hi, code := a.classPart(t, l.ct, bound, m)
		switch {
		case code == 0:
			minAfter, maxAfter = min(minAfter, lo), max(maxAfter, hi)
			a.skips[l.b] = l.ct
			a.skipsSet = true
			a.leadMasks++
		case code != stMixed:
			return 0, 0, code
		}
	}
	return minAfter, maxAfter, 0
}

// classPart adds to m the tokens of ct whose count c of the class's bytes
// leads from st to a state at most bound bytes from a complete text, and
// returns the smallest and largest distance after any of them allowed
// (a.mu held). Code stMixed: some state on the way does not take all of
// the class's bytes to one state, m is untouched; stFull or stComplex:
// abandoned.
func (a *Automaton) classPart(st int32, ct *classTokens, bound int32, m Mask) (minAfter, maxAfter, code int32) {
	p := &ct.byLen
	most := len(p.n) - 1
	if cap(a.chain) < most+1 {
		a.chain = make([]int32, most+1)
	}
	at := a.chain[:most+1] // at[c]: the state after c bytes of the class
	at[0] = st
	for c := 1; c <= most; c++ {
		prev := at[c-1]
		next := a.step(prev, ct.bytes[0])
		if next < stDead {
			return 0, 0, next
		}
		for _, b := range ct.bytes[1:] {
			t := a.step(prev, b)
			if t < stDead {
				return 0, 0, t
			}
			if t != next {
				return 0, 0, stMixed
			}
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
	return minAfter, maxAfter, 0
}
