// Package grammar constrains generation to a formal language: a context-free
// grammar over bytes, written in GBNF (llama.cpp's notation) or compiled from
// a JSON Schema, and a per-step token mask over a model's vocabulary.
//
// A Grammar is compiled once (CompileGBNF, CompileSchema, JSONObject) and is
// immutable. Bind it to a vocabulary with NewAutomaton: the automaton lazily
// builds a deterministic view of the grammar's pushdown matcher — each state
// a set of parse stacks, each transition one byte — and caches, per state,
// the mask of allowed token ids. A Matcher (one per sequence) follows the
// generated tokens through the automaton:
//
//	a := grammar.NewAutomaton(g, vocab)
//	m := a.NewMatcher()
//	mask := m.Mask()     // bitset over the vocabulary: the tokens that keep the text a prefix of the language
//	m.Allowed(id)        // one token, without the whole mask
//	m.Accept(id)         // advance past the sampled token
//	m.Complete()         // the text so far is a sentence of the language
//	m.Done()             // … and nothing may follow it: generation ends
//
// The matcher works on bytes, so tokens that split a UTF-8 character (byte
// tokens) are handled exactly, and character classes are compiled into the
// UTF-8 byte sequences they stand for. End-of-generation tokens are allowed
// exactly when the text is complete.
//
// The mask is computed by walking a trie of the vocabulary's token bytes
// from the current state, pruning every subtree whose prefix the grammar
// refuses; transitions and masks are cached per state, so a state seen
// before (every character inside a JSON string, say) costs a map lookup.
// Everything is bounded (grammar size, stack depth, stacks per state, cached
// states), so a hostile grammar ends in an error, never in a hang.
package grammar

import (
	"errors"
	"fmt"
)

// Limits on what a grammar may grow to.
const (
	MaxElems  = 1 << 20 // elements of all rules, repetitions unrolled
	MaxRepeat = 10000   // the largest bound of x{m,n}
	MaxDepth  = 256     // rule frames on one parse stack (deeper stacks die)
	MaxStacks = 4096    // parse stacks in one state
	MaxStates = 1 << 18 // states one automaton interns before it reports ErrTooComplex
	// MaxRules bounds the rules of a grammar, those a JSON Schema or the
	// GBNF's groups and repetitions generate included: the checks at the
	// end of compiling take time that grows with the square of the rule
	// count in the worst case (about 0.1 s at this bound on one core), and
	// the compile runs on a request's own time.
	MaxRules     = 4096
	maxSourceLen = 1 << 20 // bytes of GBNF or JSON Schema text
)

// ErrTooComplex is reported (wrapped) when matching would exceed the limits
// above: a grammar too ambiguous or deep to follow within bounded memory.
var ErrTooComplex = errors.New("grammar too complex")

// Error is a grammar or schema that cannot be compiled: where and why.
type Error struct {
	Line, Col int    // 1-based position in the GBNF source (0 when not from GBNF text)
	Offset    int    // byte offset in the source
	Path      string // JSON pointer to the schema location ("" for GBNF)
	Msg       string
}

func (e *Error) Error() string {
	switch {
	case e.Path != "":
		return fmt.Sprintf("json_schema at %s: %s", e.Path, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("grammar: line %d, column %d: %s", e.Line, e.Col, e.Msg)
	}
	return "grammar: " + e.Msg
}

type elemKind uint8

const (
	eEnd  elemKind = iota // end of an alternative
	eTerm                 // one byte from a set
	eRef                  // a rule
)

type elem struct {
	kind elemKind
	arg  int32 // eTerm: index into sets; eRef: rule index
}

// byteSet is a set of bytes.
type byteSet [4]uint64

func (s *byteSet) has(b byte) bool { return s[b>>6]&(1<<(b&63)) != 0 }
func (s *byteSet) add(b byte)      { s[b>>6] |= 1 << (b & 63) }
func (s *byteSet) addRange(lo, hi byte) {
	for c := int(lo); c <= int(hi); c++ {
		s.add(byte(c))
	}
}
func (s *byteSet) empty() bool { return s[0]|s[1]|s[2]|s[3] == 0 }

type rule struct {
	name string
	alts []int32 // start of each alternative in elems
}

// Grammar is a compiled context-free grammar over bytes. It is immutable and
// safe for concurrent use.
type Grammar struct {
	elems []elem
	sets  []byteSet
	rules []rule
	root  int32
	src   string // the GBNF text it was compiled from (schemas: the generated text)
	// minSuf[p] is the fewest bytes that finish the alternative from
	// element p on (capped at maxDist).
	minSuf []int32
}

// maxDist caps the shortest-completion lengths (in bytes).
const maxDist = 1 << 30

// String returns the GBNF text the grammar was compiled from (for a schema,
// the grammar generated from it).
func (g *Grammar) String() string { return g.src }

// Rules reports how many rules the grammar has (repetitions and character
// classes add rules of their own).
func (g *Grammar) Rules() int { return len(g.rules) }

// builder assembles rules; alternatives are sequences of items.
type builder struct {
	g      Grammar
	byName map[string]int32
	setIx  map[byteSet]int32
	err    error
}

// item is one element of an alternative under construction.
type item struct {
	term bool
	set  byteSet
	ref  int32
}

func newBuilder() *builder {
	return &builder{byName: map[string]int32{}, setIx: map[byteSet]int32{}}
}

// ruleID returns the rule named name, declaring it (without alternatives)
// the first time.
func (b *builder) ruleID(name string) int32 {
	if id, ok := b.byName[name]; ok {
		return id
	}
	id := int32(len(b.g.rules))
	b.g.rules = append(b.g.rules, rule{name: name})
	b.byName[name] = id
	return id
}

// anon declares a fresh rule with the given alternatives.
func (b *builder) anon(base string, alts [][]item) int32 {
	id := int32(len(b.g.rules))
	b.g.rules = append(b.g.rules, rule{name: fmt.Sprintf("%s-%d", base, id)})
	b.setAlts(id, alts)
	return id
}

func (b *builder) setAlts(id int32, alts [][]item) {
	for _, alt := range alts {
		if len(b.g.elems)+len(alt)+1 > MaxElems {
			if b.err == nil {
				b.err = &Error{Msg: fmt.Sprintf("the grammar is too large (more than %d elements once repetitions are unrolled)", MaxElems)}
			}
			return
		}
		b.g.rules[id].alts = append(b.g.rules[id].alts, int32(len(b.g.elems)))
		for _, it := range alt {
			if it.term {
				si, ok := b.setIx[it.set]
				if !ok {
					si = int32(len(b.g.sets))
					b.g.sets = append(b.g.sets, it.set)
					b.setIx[it.set] = si
				}
				b.g.elems = append(b.g.elems, elem{kind: eTerm, arg: si})
			} else {
				b.g.elems = append(b.g.elems, elem{kind: eRef, arg: it.ref})
			}
		}
		b.g.elems = append(b.g.elems, elem{kind: eEnd})
	}
}

func ref(id int32) item { return item{ref: id} }

func byteItem(c byte) item {
	var s byteSet
	s.add(c)
	return item{term: true, set: s}
}

func literal(s string) []item {
	out := make([]item, 0, len(s))
	for i := 0; i < len(s); i++ {
		out = append(out, byteItem(s[i]))
	}
	return out
}

// repeat returns an item matching x between lo and hi times (hi < 0: no
// upper bound).
func (b *builder) repeat(x []item, lo, hi int) []item {
	var out []item
	for range lo {
		out = append(out, x...)
		if len(out) > MaxElems {
			b.fail(fmt.Sprintf("the grammar is too large (more than %d elements once repetitions are unrolled)", MaxElems))
			return nil
		}
	}
	switch {
	case hi < 0: // x*: star ::= x star | ε
		id := b.anon("star", nil)
		b.setAlts(id, [][]item{append(append([]item(nil), x...), ref(id)), nil})
		out = append(out, ref(id))
	case hi > lo: // (x (x (…)?)?)? nested, hi-lo deep
		var tail int32 = -1
		for range hi - lo {
			alt := append([]item(nil), x...)
			if tail >= 0 {
				alt = append(alt, ref(tail))
			}
			tail = b.anon("opt", [][]item{alt, nil})
			if b.err != nil {
				return nil
			}
		}
		out = append(out, ref(tail))
	}
	return out
}

func (b *builder) fail(msg string) {
	if b.err == nil {
		b.err = &Error{Msg: msg}
	}
}

// finish checks the grammar (every rule defined, no left recursion, a
// non-empty language), drops alternatives that can derive no string, and
// returns it.
func (b *builder) finish(rootName string) (*Grammar, error) {
	if b.err != nil {
		return nil, b.err
	}
	if n := len(b.g.rules); n > MaxRules {
		return nil, &Error{Msg: fmt.Sprintf("the grammar has %d rules (groups, repetitions and schema parts included), more than the %d allowed: simplify it", n, MaxRules)}
	}
	g := &b.g
	root, ok := b.byName[rootName]
	if !ok {
		return nil, &Error{Msg: fmt.Sprintf("no rule named %q (the start symbol)", rootName)}
	}
	g.root = root
	// Productive rules: some alternative of terminals and productive rules.
	prod := make([]bool, len(g.rules))
	for changed := true; changed; {
		changed = false
		for r := range g.rules {
			if prod[r] {
				continue
			}
			for _, a := range g.rules[r].alts {
				if g.altProductive(a, prod) {
					prod[r], changed = true, true
					break
				}
			}
		}
	}
	if !prod[root] {
		return nil, &Error{Msg: fmt.Sprintf("the language is empty: rule %q derives no finite string", rootName)}
	}
	for r := range g.rules {
		alts := g.rules[r].alts[:0]
		for _, a := range g.rules[r].alts {
			if g.altProductive(a, prod) {
				alts = append(alts, a)
			}
		}
		g.rules[r].alts = alts
	}
	if err := g.checkLeftRecursion(); err != nil {
		return nil, err
	}
	g.shortest()
	if a := NewAutomaton(g, &Vocab{}); a.startErr != nil {
		return nil, &Error{Msg: a.startErr.Error()}
	}
	return g, nil
}

func (g *Grammar) altProductive(a int32, prod []bool) bool {
	for p := a; ; p++ {
		switch e := g.elems[p]; e.kind {
		case eEnd:
			return true
		case eTerm:
			if g.sets[e.arg].empty() {
				return false
			}
		case eRef:
			if !prod[e.arg] {
				return false
			}
		}
	}
}

// checkLeftRecursion refuses a rule that can reach itself without reading a
// byte: the stack matcher would expand it forever.
func (g *Grammar) checkLeftRecursion() error {
	n := len(g.rules)
	nullable := make([]bool, n)
	for changed := true; changed; {
		changed = false
		for r := range g.rules {
			if nullable[r] {
				continue
			}
			for _, a := range g.rules[r].alts {
				if g.altNullable(a, nullable) {
					nullable[r], changed = true, true
					break
				}
			}
		}
	}
	// Edges r → s when s starts an alternative of r after nullable refs.
	edges := make([][]int32, n)
	for r := range g.rules {
		for _, a := range g.rules[r].alts {
			for p := a; ; p++ {
				e := g.elems[p]
				if e.kind != eRef {
					break
				}
				// A call in tail position pushes no frame: a cycle through
				// it cannot grow the stack (the matcher's visited set ends
				// it), as in x* with a nullable x.
				if g.elems[p+1].kind != eEnd {
					edges[r] = append(edges[r], e.arg)
				}
				if !nullable[e.arg] {
					break
				}
			}
		}
	}
	const (
		white = iota
		grey
		black
	)
	color := make([]uint8, n)
	type frame struct {
		r int32
		i int
	}
	for start := range g.rules {
		if color[start] != white {
			continue
		}
		stack := []frame{{int32(start), 0}}
		color[start] = grey
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if f.i == len(edges[f.r]) {
				color[f.r] = black
				stack = stack[:len(stack)-1]
				continue
			}
			s := edges[f.r][f.i]
			f.i++
			switch color[s] {
			case grey:
				return &Error{Msg: fmt.Sprintf("rule %q is left-recursive (it can reach itself without reading a character); rewrite it with repetition, e.g. a ::= b (op b)*", g.rules[s].name)}
			case white:
				color[s] = grey
				stack = append(stack, frame{s, 0})
			}
		}
	}
	return nil
}

func (g *Grammar) altNullable(a int32, nullable []bool) bool {
	for p := a; ; p++ {
		switch e := g.elems[p]; e.kind {
		case eEnd:
			return true
		case eTerm:
			return false
		case eRef:
			if !nullable[e.arg] {
				return false
			}
		}
	}
}

// shortest computes each rule's shortest sentence and, per element, the
// fewest bytes that finish its alternative from there.
func (g *Grammar) shortest() {
	minLen := make([]int64, len(g.rules))
	for i := range minLen {
		minLen[i] = maxDist
	}
	altLen := func(a int32) int64 {
		var n int64
		for p := a; g.elems[p].kind != eEnd; p++ {
			if e := g.elems[p]; e.kind == eTerm {
				n++
			} else {
				n += minLen[e.arg]
			}
		}
		return min(n, maxDist)
	}
	for changed := true; changed; {
		changed = false
		for r := range g.rules {
			for _, a := range g.rules[r].alts {
				if n := altLen(a); n < minLen[r] {
					minLen[r], changed = n, true
				}
			}
		}
	}
	g.minSuf = make([]int32, len(g.elems))
	var acc int64
	for p := len(g.elems) - 1; p >= 0; p-- {
		switch e := g.elems[p]; e.kind {
		case eEnd:
			acc = 0
		case eTerm:
			acc = min(acc+1, maxDist)
		case eRef:
			acc = min(acc+minLen[e.arg], maxDist)
		}
		g.minSuf[p] = int32(acc)
	}
}
