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

// classTokens are a vocabulary's tokens made only of the bytes of one
// class.
type classTokens struct {
	byLen plainTokens // by count of bytes (plainTokens' counts of code points)
	pure  []uint64    // bit i: node i of the vocabulary's whole trie, and its subtree, are made of K's bytes only
}

// classCache holds a vocabulary's classTokens by class (nil: too few
// tokens to pay).
type classCache struct {
	mu    sync.Mutex
	m     map[byteSet]*classTokens
	built int // non-nil entries
}

const (
	// classDense bounds the lengths kept as bitsets (classTokens.byLen.cum):
	// longer tokens of one class are rare.
	classDense = 16
	// maxClasses and maxClassEntries bound the cache (~400 KiB a class
	// for Qwen2); past them it is emptied and refilled.
	maxClasses      = 16
	maxClassEntries = 256
)

// classTokens returns the tokens made only of k's bytes, or nil when they
// are too few to pay (fewer than 1/512 of the vocabulary).
func (v *Vocab) classTokens(k *byteSet) *classTokens {
	c := &v.classes
	c.mu.Lock()
	defer c.mu.Unlock()
	if ct, ok := c.m[*k]; ok {
		return ct
	}
	if c.m == nil || len(c.m) >= maxClassEntries || c.built >= maxClasses {
		c.m, c.built = map[byteSet]*classTokens{}, 0
	}
	ct := buildClass(&v.all, k, v.n)
	c.m[*k] = ct
	if ct != nil {
		c.built++
	}
	return ct
}

// buildClass sorts the tokens of t made only of k's bytes by length and
// marks the nodes whose subtrees hold only such tokens; nil when they are
// fewer than n/512. It visits only the nodes whose prefix is made of k's
// bytes (and their children).
func buildClass(t *trie, k *byteSet, n int) *classTokens {
	nodes := t.nodes
	noTok := int32(n)
	type open struct {
		i      int32
		impure bool // the subtree holds a byte outside k
	}
	pure := make([]uint64, (len(nodes)+63)/64)
	stack := make([]open, 0, t.maxD)
	closeTo := func(d uint16) { // the subtrees of the open nodes at depth ≥ d end here
		for len(stack) > 0 && nodes[stack[len(stack)-1].i].d >= d {
			o := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			switch {
			case !o.impure:
				pure[o.i>>6] |= 1 << (uint(o.i) & 63)
			case len(stack) > 0:
				stack[len(stack)-1].impure = true
			}
		}
	}
	var ids, lens []int32
	for i := 0; i < len(nodes); {
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
			lens = append(lens, int32(nd.d))
			if nd.dup {
				for _, id := range t.dup[int32(i)] {
					ids = append(ids, id)
					lens = append(lens, int32(nd.d))
				}
			}
		}
		i++
	}
	closeTo(0)
	if len(ids) == 0 || len(ids) < n/512 {
		return nil
	}
	return &classTokens{byLen: countedSets(ids, lens, n, classDense), pure: pure}
}

// classOf is the largest set of bytes that st's stacks treat alike (the
// same stacks take them), when it has two bytes or more (a.mu held).
func (a *Automaton) classOf(st int32) (k byteSet, ok bool) {
	sigs := a.byteSigs(st)
	if sigs == nil {
		return k, false
	}
	var done byteSet
	best := 0
	for b := range 256 {
		sig := sigs[b]
		if sig == 0 || done.has(byte(b)) {
			continue
		}
		var set byteSet
		size := 0
		for c := b; c < 256; c++ {
			if sigs[c] == sig {
				set.add(byte(c))
				size++
			}
		}
		for w := range done {
			done[w] |= set[w]
		}
		if size > best {
			k, best = set, size
		}
	}
	return k, best >= 2
}

// classPart adds to m, for state st, the tokens made only of the bytes of
// st's class (classOf) whose distance after them is at most bound, and
// returns the smallest and largest distance after any of them allowed,
// and the nodes of the whole trie the walk may skip (a.mu held). Code
// stMixed: st has no class, its class's tokens are too few, or some state
// on the way does not take all of the class's bytes to one state; m is
// untouched (walk every token). stFull or stComplex: abandoned.
func (a *Automaton) classPart(st, bound int32, m Mask) (minAfter, maxAfter int32, skip []uint64, code int32) {
	k, ok := a.classOf(st)
	if !ok {
		return maxDist, 0, nil, stMixed
	}
	ct := a.v.classTokens(&k)
	if ct == nil {
		return maxDist, 0, nil, stMixed
	}
	var in [256]byte // k's bytes
	nb := 0
	for b := range 256 {
		if k.has(byte(b)) {
			in[nb] = byte(b)
			nb++
		}
	}
	p := &ct.byLen
	most := len(p.n) - 1
	if cap(a.chain) < most+1 {
		a.chain = make([]int32, most+1)
	}
	at := a.chain[:most+1] // at[c]: the state after c bytes of k
	at[0] = st
	for c := 1; c <= most; c++ {
		prev := at[c-1]
		next := a.step(prev, in[0])
		if next < stDead {
			return maxDist, 0, nil, next
		}
		for _, b := range in[1:nb] {
			t := a.step(prev, b)
			if t < stDead {
				return maxDist, 0, nil, t
			}
			if t != next {
				return maxDist, 0, nil, stMixed
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
	a.classMasks++
	return minAfter, maxAfter, ct.pure, 0
}
