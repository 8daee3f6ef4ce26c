package grammar

import (
	"encoding/binary"
	"fmt"
	mbits "math/bits"
	"slices"
	"sync"
)

// A parse stack is a chain of frames, interned in the automaton: the top
// frame's pos is a terminal element (the next byte must be in its set), and
// each frame below holds the position to continue at once the rule above
// it ends. Tail calls push no frame, so x* does not grow the stack.
type frame struct {
	pos    int32
	parent int32 // -1: the bottom
	depth  int32
	dist   int32 // fewest bytes that empty this stack: minSuf(pos) + the parent's
}

// state is a set of parse stacks (sorted frame ids) and whether the text so
// far is a complete sentence.
type state struct {
	stacks []int32
	accept bool
	dist   int32 // fewest bytes to a complete text (0 when accepting)
	// minAfter and maxAfter are the smallest and largest dist of a state
	// one allowed token leads to (known with mask): a budget that leaves at
	// least maxAfter bytes after the token constrains nothing, and one that
	// leaves fewer than minAfter cannot be met by any token (MaskWithin).
	minAfter, maxAfter int32
	within             map[int32]Mask // masks under a budget, by limit (MaskWithin)
	mask               Mask           // cached token mask (nil: not computed)
	// plainNext is the state after any one plain character (plain.go),
	// once plainKnown.
	plainNext  int32
	plainKnown bool
	// k is the state's byte class (class.go; hasK: it has one), once
	// kKnown; class its sets (nil: none), once classKnown; leads its lead
	// classes, once leadsKnown.
	k          byteSet
	hasK       bool
	kKnown     bool
	class      *classTokens
	classKnown bool
	leads      []leadClass
	leadsKnown bool
}

// Results of step besides a state id.
const (
	stDead    = -1 // the byte leaves the language
	stFull    = -2 // the automaton's tables are full: the state cannot be interned
	stComplex = -3 // the transition exceeds maxExpand or MaxStacks (a.why says which)
)

// Automaton is a grammar bound to a vocabulary: the lazily built states of
// its matcher and the masks computed so far, shared by every Matcher made
// from it. It is safe for concurrent use (one mutex: states seen before
// are a lookup away).
//
// Nothing a request does to a shared automaton can fail another request:
// a transition that runs past the bounds (maxExpand parse positions,
// MaxStacks stacks) is reported to the matcher that took it and cached
// nowhere, and once the tables hold maxStates states a matcher that needs
// a new one carries on in an automaton of its own (see Matcher). What is
// cached — transitions, masks, the bounds of a mask's budgets — comes only
// from complete computations, so it is the same whichever request made it.
type Automaton struct {
	g        *Grammar
	v        *Vocab
	start    int32
	startErr error // the start itself is too complex (every matcher fails)

	mu      sync.Mutex
	frames  []frame
	frameIx map[[2]int32]int32
	states  []state
	stateIx map[string]int32
	// trans[st<<8|c] is the transition from state st by byte c: 0 not
	// computed, -1 dead, k > 0 state k-1; dists[st] is states[st].dist.
	// Flat, for the trie walk: one load a node.
	trans []int32
	dists []int32
	masks int // masks cached
	// plainMasks counts the masks that took plain-text tokens from the
	// vocabulary's sets (plainPart), for tests.
	plainMasks int
	// classMasks and leadMasks count the masks that took a byte class's
	// tokens, or a lead class's, from the vocabulary's sets (classParts),
	// for tests.
	classMasks, leadMasks int
	maxStates             int // states these tables may hold
	maxFrames             int // frames these tables may hold
	private               bool

	// Scratch of the computation under way (a.mu held).
	scratch   []int32
	seen      map[[2]int32]bool
	work      int   // expansions since the last intern (bounded by maxExpand)
	fail      int32 // stFull or stComplex: the expansion under way was abandoned
	why       string
	keyBuf    []byte
	walkStack []int32
	chain     []int32 // plainPart's states after 0, 1, … plain characters
	plainKeys [][2]int32
	skips     [256]*classTokens // classParts' sets whose pure nodes the walk skips, by first byte
	skipsSet  bool              // some of skips are set
	sigs      [256]uint64
	sigsOf    int32 // sigs are byteSigs(sigsOf-1); 0: none
}

// maxMaskBytes bounds the memory of the masks one automaton caches (8 MiB:
// about 440 masks over Qwen's 151 936 tokens); past it the cache is
// emptied and refilled.
const maxMaskBytes = 8 << 20

// maxExpand bounds the (position, stack) pairs one transition may visit.
const maxExpand = 1 << 16

// SharedStates bounds the states of an automaton made by NewAutomaton
// (its transition tables take up to 1 KiB a state). A matcher that needs a
// state past it follows the grammar in tables of its own, bounded by
// PrivateStates, whose masks are computed for it alone.
const SharedStates = 1 << 15

// PrivateStates bounds the tables a matcher moves to when its shared
// automaton is full: one request's own path through the grammar (a state
// takes a few KiB, so at most ~200 MiB; a request that needs more fails
// with ErrTooComplex). Smaller than MaxStates, since every request may
// hold such tables at once.
const PrivateStates = 1 << 16

// NewAutomaton binds g to a vocabulary.
func NewAutomaton(g *Grammar, v *Vocab) *Automaton {
	return newAutomaton(g, v, SharedStates, false)
}

func newAutomaton(g *Grammar, v *Vocab, maxStates int, private bool) *Automaton {
	a := newTables(g, v, maxStates, private)
	root := g.rules[g.root]
	for _, alt := range root.alts {
		a.expand(alt, -1, 0)
	}
	a.start = a.intern()
	if a.start < stDead {
		// Too complex to start (a fresh table is never full).
		a.startErr = fmt.Errorf("%w: %s", ErrTooComplex, a.why)
		a.start = stDead
	}
	return a
}

func newTables(g *Grammar, v *Vocab, maxStates int, private bool) *Automaton {
	return &Automaton{
		g: g, v: v, start: stDead,
		frameIx: map[[2]int32]int32{}, stateIx: map[string]int32{}, seen: map[[2]int32]bool{},
		maxStates: maxStates, maxFrames: 8 * maxStates, private: private,
	}
}

// setLimit sets the states (and 8× as many frames) the tables may hold
// (tests).
func (a *Automaton) setLimit(states int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.maxStates, a.maxFrames = states, 8*states
}

// Grammar returns the automaton's grammar.
func (a *Automaton) Grammar() *Grammar { return a.g }

// Vocab returns the automaton's vocabulary.
func (a *Automaton) Vocab() *Vocab { return a.v }

// Err reports ErrTooComplex (wrapped) when the grammar's start already
// runs past the bounds: every matcher then refuses every token. A bound
// reached later fails only the matcher that reached it (Matcher.Err).
func (a *Automaton) Err() error { return a.startErr }

// Size reports the states and stack frames interned so far.
func (a *Automaton) Size() (states, frames int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.states), len(a.frames)
}

// frameID interns the frame (pos, parent); -1 when the tables are full
// (a.fail set).
func (a *Automaton) frameID(pos, parent int32) int32 {
	k := [2]int32{pos, parent}
	if id, ok := a.frameIx[k]; ok {
		return id
	}
	if len(a.frames) >= a.maxFrames {
		a.abandon(stFull, fmt.Sprintf("more than %d parse frames", a.maxFrames))
		return -1
	}
	d, dist := int32(0), int64(0)
	if parent >= 0 {
		d = a.frames[parent].depth + 1
		dist = int64(a.frames[parent].dist)
	}
	if a.g.minSuf != nil {
		dist = min(dist+int64(a.g.minSuf[pos]), maxDist)
	}
	id := int32(len(a.frames))
	a.frames = append(a.frames, frame{pos: pos, parent: parent, depth: d, dist: int32(dist)})
	a.frameIx[k] = id
	return id
}

// abandon stops the expansion under way: intern will report code.
func (a *Automaton) abandon(code int32, why string) {
	if a.fail == 0 {
		a.fail, a.why = code, why
	}
}

// expand adds to a.scratch the stacks that reading from element pos, with
// the frames below it given by parent, can be at before its next byte;
// reaching the end of the root adds -1 (complete).
func (a *Automaton) expand(pos, parent int32, guard int) {
	if a.fail != 0 {
		return
	}
	k := [2]int32{pos, parent}
	if a.seen[k] {
		return
	}
	a.seen[k] = true
	if a.work++; a.work > maxExpand {
		a.abandon(stComplex, fmt.Sprintf("one step visits more than %d parse positions", maxExpand))
		return
	}
	g := a.g
	e := g.elems[pos]
	switch e.kind {
	case eEnd:
		if parent < 0 {
			a.scratch = append(a.scratch, -1)
			return
		}
		f := a.frames[parent]
		a.expand(f.pos, f.parent, guard+1)
	case eTerm:
		if parent >= 0 && a.frames[parent].depth >= MaxDepth {
			return // too deep: this parse dies
		}
		if id := a.frameID(pos, parent); id >= 0 {
			a.scratch = append(a.scratch, id)
		}
	case eRef:
		np := parent
		if g.elems[pos+1].kind != eEnd { // not a tail call: remember where to continue
			if parent >= 0 && a.frames[parent].depth >= MaxDepth {
				return
			}
			if np = a.frameID(pos+1, parent); np < 0 {
				return
			}
		}
		for _, alt := range g.rules[e.arg].alts {
			a.expand(alt, np, guard+1)
		}
	}
}

// intern turns a.scratch into a state (sorted, deduplicated; -1 marks
// acceptance) and returns its id; stDead when it has no stack and does not
// accept, stFull or stComplex when the expansion was abandoned or the
// state cannot be kept (a.why says why). The scratch is reset.
func (a *Automaton) intern() int32 {
	clear(a.seen)
	a.work = 0
	s := a.scratch
	a.scratch = a.scratch[:0]
	if code := a.fail; code != 0 {
		a.fail = 0
		return code
	}
	slices.Sort(s)
	s = slices.Compact(s)
	accept := len(s) > 0 && s[0] == -1
	if accept {
		s = s[1:]
	}
	if len(s) == 0 && !accept {
		return stDead
	}
	if len(s) > MaxStacks {
		a.why = fmt.Sprintf("a state has %d parse stacks, more than %d (the grammar is too ambiguous)", len(s), MaxStacks)
		return stComplex
	}
	key := a.keyBuf[:0]
	if accept {
		key = append(key, 1)
	} else {
		key = append(key, 0)
	}
	for _, f := range s {
		key = binary.LittleEndian.AppendUint32(key, uint32(f))
	}
	a.keyBuf = key
	if id, ok := a.stateIx[string(key)]; ok {
		return id
	}
	if len(a.states) >= a.maxStates {
		a.why = fmt.Sprintf("more than %d states", a.maxStates)
		return stFull
	}
	id := int32(len(a.states))
	dist := int32(maxDist)
	if accept {
		dist = 0
	}
	for _, f := range s {
		dist = min(dist, a.frames[f].dist)
	}
	a.states = append(a.states, state{stacks: slices.Clone(s), accept: accept, dist: dist})
	a.stateIx[string(key)] = id
	if len(a.trans)+256 > cap(a.trans) {
		// Doubling: append grows a large slice by a quarter, which copies
		// the table over and over while a first run interns its states.
		t := make([]int32, len(a.trans), max(2*cap(a.trans), 64*256))
		copy(t, a.trans)
		a.trans = t
	}
	a.trans = a.trans[:len(a.trans)+256] // a fresh row: zeros
	a.dists = append(a.dists, dist)
	return id
}

// step returns the state after byte c from state st: a state id, stDead,
// or (nothing cached) stFull or stComplex (a.mu held). Transitions are
// cached: 0 not computed, -1 dead, k > 0 state k-1.
func (a *Automaton) step(st int32, c byte) int32 {
	if st < 0 {
		return st
	}
	switch t := a.trans[int(st)<<8|int(c)]; {
	case t > 0:
		return t - 1
	case t < 0:
		return stDead
	}
	next := a.computeStep(st, c)
	if next < stDead {
		return next // from an abandoned expansion: not cached
	}
	t := next + 1 // -1 → 0 below; dead is stored as -1
	if next < 0 {
		t = -1
	}
	// Every byte that the same stacks accept leads to the same state:
	// fill their transitions too (inside a JSON string, one computation
	// covers every plain character).
	row := a.trans[int(st)<<8 : int(st)<<8+256]
	row[c] = t
	if sigs := a.byteSigs(st); sigs != nil {
		sig := sigs[c]
		for b := range 256 {
			if row[b] == 0 && sigs[b] == sig {
				row[b] = t
			}
		}
	}
	return next
}

// byteSigs returns, for each byte, the set of st's stacks (by index) whose
// next element accepts it; nil when st has more than 64 stacks (a.mu
// held). The sets of the last state asked for are kept (a walk steps
// from one state many times in a row).
func (a *Automaton) byteSigs(st int32) *[256]uint64 {
	if a.sigsOf == st+1 {
		return &a.sigs
	}
	if !a.sigsInto(st, &a.sigs) {
		return nil
	}
	a.sigsOf = st + 1
	return &a.sigs
}

// sigsInto computes byteSigs(st) into sigs; false when st has more than
// 64 stacks (a.mu held).
func (a *Automaton) sigsInto(st int32, sigs *[256]uint64) bool {
	stacks := a.states[st].stacks
	if len(stacks) > 64 {
		return false
	}
	g := a.g
	*sigs = [256]uint64{}
	for i, fid := range stacks {
		set := &g.sets[g.elems[a.frames[fid].pos].arg]
		for w, bits := range set {
			for ; bits != 0; bits &= bits - 1 {
				sigs[w<<6|mbits.TrailingZeros64(bits)] |= 1 << uint(i)
			}
		}
	}
	return true
}

func (a *Automaton) computeStep(st int32, c byte) int32 {
	g := a.g
	for _, fid := range a.states[st].stacks {
		f := a.frames[fid]
		if g.sets[g.elems[f.pos].arg].has(c) {
			a.expand(f.pos+1, f.parent, 0)
		}
	}
	return a.intern()
}

// export returns state st as its stacks' positions, top first, each stack
// ending in -1, and whether it accepts (a.mu held).
func (a *Automaton) export(st int32) (chains []int32, accept bool) {
	for _, f := range a.states[st].stacks {
		for ; f >= 0; f = a.frames[f].parent {
			chains = append(chains, a.frames[f].pos)
		}
		chains = append(chains, -1)
	}
	return chains, a.states[st].accept
}

// importState interns a state given by export (a.mu held): its id, or
// stFull / stComplex.
func (a *Automaton) importState(chains []int32, accept bool) int32 {
	for len(chains) > 0 {
		end := slices.Index(chains, -1)
		parent := int32(-1)
		for i := end - 1; i >= 0 && parent >= -1; i-- {
			if parent = a.frameID(chains[i], parent); parent < 0 {
				parent = -2
			}
		}
		if parent >= 0 {
			a.scratch = append(a.scratch, parent)
		}
		chains = chains[end+1:]
	}
	if accept {
		a.scratch = append(a.scratch, -1)
	}
	return a.intern()
}
