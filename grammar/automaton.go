package grammar

import (
	"encoding/binary"
	"fmt"
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
	// maxAfter is the largest dist of a state one allowed token leads to
	// (known with mask): a budget at least one above it constrains nothing.
	maxAfter int32
	within   map[int32]Mask // masks under a budget, by limit (MaskWithin)
	trans    *[256]int32    // 0: not computed; -1: dead; else state id + 1
	mask     Mask           // cached token mask (nil: not computed)
}

// Automaton is a grammar bound to a vocabulary: the lazily built states of
// its matcher and the masks computed so far, shared by every Matcher made
// from it. It is safe for concurrent use (one mutex: states seen before
// are a lookup away).
type Automaton struct {
	g     *Grammar
	v     *Vocab
	start int32

	mu      sync.Mutex
	frames  []frame
	frameIx map[[2]int32]int32
	states  []state
	stateIx map[string]int32
	masks   int   // masks cached
	err     error // ErrTooComplex, once reached

	scratch   []int32
	seen      map[[2]int32]bool
	work      int // expansions since the last intern (bounded by maxExpand)
	keyBuf    []byte
	walkStack []int32
}

// maxMaskBytes bounds the memory of the masks one automaton caches (8 MiB:
// about 440 masks over Qwen's 151 936 tokens); past it the cache is
// emptied and refilled.
const maxMaskBytes = 8 << 20

// maxExpand bounds the (position, stack) pairs one transition may visit.
const maxExpand = 1 << 16

// NewAutomaton binds g to a vocabulary.
func NewAutomaton(g *Grammar, v *Vocab) *Automaton {
	a := &Automaton{g: g, v: v, frameIx: map[[2]int32]int32{}, stateIx: map[string]int32{}, seen: map[[2]int32]bool{}}
	a.scratch = a.scratch[:0]
	root := g.rules[g.root]
	for _, alt := range root.alts {
		a.expand(alt, -1, 0)
	}
	a.start = a.intern(false) // state 0, or -1 when the grammar is too complex to start
	return a
}

// Grammar returns the automaton's grammar.
func (a *Automaton) Grammar() *Grammar { return a.g }

// Vocab returns the automaton's vocabulary.
func (a *Automaton) Vocab() *Vocab { return a.v }

// Err reports ErrTooComplex (wrapped) once the automaton has run past its
// bounds; matchers then refuse every token.
func (a *Automaton) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Size reports the states and stack frames interned so far.
func (a *Automaton) Size() (states, frames int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.states), len(a.frames)
}

func (a *Automaton) frameID(pos, parent int32) int32 {
	k := [2]int32{pos, parent}
	if id, ok := a.frameIx[k]; ok {
		return id
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

// expand adds to a.scratch the stacks that reading from element pos, with
// the frames below it given by parent, can be at before its next byte;
// reaching the end of the root adds -1 (complete).
func (a *Automaton) expand(pos, parent int32, guard int) {
	k := [2]int32{pos, parent}
	if a.seen[k] {
		return
	}
	a.seen[k] = true
	if a.work++; a.work > maxExpand {
		a.tooComplex(fmt.Sprintf("one step visits more than %d parse positions", maxExpand))
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
		a.scratch = append(a.scratch, a.frameID(pos, parent))
	case eRef:
		np := parent
		if g.elems[pos+1].kind != eEnd { // not a tail call: remember where to continue
			if parent >= 0 && a.frames[parent].depth >= MaxDepth {
				return
			}
			np = a.frameID(pos+1, parent)
		}
		for _, alt := range g.rules[e.arg].alts {
			a.expand(alt, np, guard+1)
		}
	}
}

// intern turns a.scratch into a state (sorted, deduplicated; -1 marks
// acceptance) and returns its id, or -1 when it has no stack and does not
// accept. a.seen is reset.
func (a *Automaton) intern(_ bool) int32 {
	clear(a.seen)
	a.work = 0
	if a.err != nil {
		a.scratch = a.scratch[:0]
		return -1
	}
	s := a.scratch
	slices.Sort(s)
	s = slices.Compact(s)
	accept := len(s) > 0 && s[0] == -1
	if accept {
		s = s[1:]
	}
	if len(s) == 0 && !accept {
		a.scratch = a.scratch[:0]
		return -1
	}
	if len(s) > MaxStacks {
		a.tooComplex(fmt.Sprintf("a state has %d parse stacks, more than %d (the grammar is too ambiguous)", len(s), MaxStacks))
		a.scratch = a.scratch[:0]
		return -1
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
		a.scratch = a.scratch[:0]
		return id
	}
	if len(a.states) >= MaxStates {
		a.tooComplex(fmt.Sprintf("more than %d states", MaxStates))
		a.scratch = a.scratch[:0]
		return -1
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
	a.scratch = a.scratch[:0]
	return id
}

func (a *Automaton) tooComplex(why string) {
	if a.err == nil {
		a.err = fmt.Errorf("%w: %s", ErrTooComplex, why)
	}
}

// step returns the state after byte c from state st, or -1 (a.mu held).
// Transitions are cached: 0 not computed, -1 dead, k > 0 state k-1.
func (a *Automaton) step(st int32, c byte) int32 {
	if st < 0 {
		return -1
	}
	s := &a.states[st]
	if s.trans == nil {
		s.trans = new([256]int32)
	}
	switch t := s.trans[c]; {
	case t > 0:
		return t - 1
	case t < 0:
		return -1
	}
	next := a.computeStep(st, c)
	if next < 0 {
		a.states[st].trans[c] = -1
	} else {
		a.states[st].trans[c] = next + 1
	}
	return next
}

func (a *Automaton) computeStep(st int32, c byte) int32 {
	if a.err != nil {
		return -1
	}
	g := a.g
	for _, fid := range a.states[st].stacks {
		f := a.frames[fid]
		if g.sets[g.elems[f.pos].arg].has(c) {
			a.expand(f.pos+1, f.parent, 0)
		}
	}
	return a.intern(false)
}
