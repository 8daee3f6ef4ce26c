package grammar

import "fmt"

// Matcher follows one sequence's generated tokens through an automaton. It
// is not safe for concurrent use (its automaton is).
//
// A matcher starts in the automaton it was made from, shared with other
// matchers. When that automaton's tables are full and the matcher needs a
// state they do not hold, it copies its state into tables of its own (up
// to PrivateStates states, masks computed for it alone) and carries on there:
// slower, never wrong, and no other matcher notices. A transition past the
// bounds (ErrTooComplex) fails this matcher alone: Err reports it, and
// every token is refused from then on.
type Matcher struct {
	a   *Automaton // where st lives: the shared automaton or the matcher's own
	st  int32      // current state; -1 after a refused token or an error
	err error
}

// NewMatcher returns a matcher at the start of the grammar.
func (a *Automaton) NewMatcher() *Matcher { return &Matcher{a: a, st: a.start, err: a.startErr} }

// lock locks the matcher's automaton and returns it, or nil (nothing
// locked) when the matcher refuses everything.
func (m *Matcher) lock() *Automaton {
	if m.st < 0 {
		return nil
	}
	m.a.mu.Lock()
	return m.a
}

// retry handles a computation that ended in code < stDead (a.mu held; it
// is unlocked): with a full shared table the matcher moves to tables of its
// own and retry reports true (do it again there); otherwise the matcher
// fails with the reason.
func (m *Matcher) retry(a *Automaton, code int32) bool {
	if code == stFull && !a.private {
		chains, accept := a.export(m.st)
		a.mu.Unlock()
		p := newTables(a.g, a.v, PrivateStates, true)
		p.mu.Lock()
		st := p.importState(chains, accept)
		if st < 0 {
			m.fail(p, st)
			p.mu.Unlock()
			return false
		}
		p.mu.Unlock()
		m.a, m.st = p, st
		return true
	}
	m.fail(a, code)
	a.mu.Unlock()
	return false
}

// fail records why the matcher stops (a.mu held).
func (m *Matcher) fail(a *Automaton, code int32) {
	why := a.why
	if code == stFull { // the matcher's own tables are full
		why = fmt.Sprintf("one generation needs %s", a.why)
	}
	m.err = fmt.Errorf("%w: %s", ErrTooComplex, why)
	m.st = -1
}

// Mask returns the tokens that may come next: those whose bytes keep the
// text a prefix of the language, and the end-of-generation ids when the
// text is complete. The mask is shared (cached per state): do not modify
// it. A matcher that refused a token or failed (Err) allows nothing.
func (m *Matcher) Mask() Mask {
	for {
		a := m.lock()
		if a == nil {
			return m.none()
		}
		mask, code := a.maskOf(m.st)
		if code < stDead {
			if m.retry(a, code) {
				continue
			}
			return m.none()
		}
		a.mu.Unlock()
		return mask
	}
}

func (m *Matcher) none() Mask { return make(Mask, (m.a.v.n+63)/64) }

// maskOf is the mask of state st, cached (a.mu held).
func (a *Automaton) maskOf(st int32) (Mask, int32) {
	if mk := a.states[st].mask; mk != nil {
		return mk, 0
	}
	a.makeRoom()
	mask, code := a.computeMask(st, -1)
	if code < stDead {
		return nil, code
	}
	a.states[st].mask = mask
	a.masks++
	return mask, 0
}

// MaskWithin is Mask for a generation that may add at most budget more
// tokens: only the tokens after which the text can still be completed in
// budget-1 tokens (one byte per token at worst) are allowed, so that a
// constrained generation ends complete instead of being cut at its token
// limit. It is Mask itself — nothing but the grammar restricts — while
// every allowed token leaves a completion within the budget, and also when
// none does (no choice can finish the text in time: the grammar alone
// decides). Masks under a budget are cached per state and limit.
func (m *Matcher) MaskWithin(budget int) Mask {
	for {
		a := m.lock()
		if a == nil {
			return m.none()
		}
		mask, code := a.maskWithin(m.st, int32(max(budget-1, 0)))
		if code < stDead {
			if m.retry(a, code) {
				continue
			}
			return m.none()
		}
		a.mu.Unlock()
		return mask
	}
}

// maskWithin is MaskWithin's mask for state st and the limit in bytes
// (a.mu held).
func (a *Automaton) maskWithin(st, limit int32) (Mask, int32) {
	mask, code := a.maskOf(st)
	if code < stDead {
		return nil, code
	}
	s := &a.states[st]
	if s.maxAfter <= limit || s.minAfter > limit {
		return mask, 0
	}
	if w, ok := s.within[limit]; ok {
		return w, 0
	}
	a.makeRoom()
	within, code := a.computeMask(st, limit)
	if code < stDead {
		return nil, code
	}
	s = &a.states[st]
	if s.within == nil {
		s.within = map[int32]Mask{}
	}
	s.within[limit] = within
	a.masks++
	return within, 0
}

// CachedCount reports how many tokens MaskWithin(budget) allows, when
// that mask is already computed and the automaton is not busy (ok false
// otherwise): it neither computes nor waits, for decisions that only
// choose a faster path.
func (m *Matcher) CachedCount(budget int) (n int, ok bool) {
	if m.st < 0 {
		return 0, true
	}
	a := m.a
	if !a.mu.TryLock() {
		return 0, false
	}
	defer a.mu.Unlock()
	st, limit := m.st, int32(max(budget-1, 0))
	s := &a.states[st]
	if s.mask == nil {
		return 0, false
	}
	if s.maxAfter <= limit || s.minAfter > limit {
		return s.mask.Count(), true
	}
	if w, ok := s.within[limit]; ok {
		return w.Count(), true
	}
	return 0, false
}

// Prefetch returns a function that computes and caches MaskWithin(budget)
// for the matcher's current state, to be run on another goroutine while
// the model computes the step's logits (the matcher may be used
// meanwhile: the function works on the state it was made for). nil when
// there is nothing to compute. The function gives up without a trace
// where MaskWithin would move the matcher or fail it.
func (m *Matcher) Prefetch(budget int) func() {
	a := m.lock()
	if a == nil {
		return nil
	}
	defer a.mu.Unlock()
	st, limit := m.st, int32(max(budget-1, 0))
	s := &a.states[st]
	if s.mask != nil && (s.maxAfter <= limit || s.minAfter > limit) {
		return nil
	}
	if _, ok := s.within[limit]; ok {
		return nil
	}
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.maskWithin(st, limit)
	}
}

// Allowed reports whether id may come next (what Mask says of it, without
// computing the whole mask).
func (m *Matcher) Allowed(id int32) bool {
	if id < 0 || int(id) >= m.a.v.n {
		return false
	}
	for {
		a := m.lock()
		if a == nil {
			return false
		}
		next := a.walk(m.st, id)
		if next < stDead {
			if m.retry(a, next) {
				continue
			}
			return false
		}
		a.mu.Unlock()
		return next >= 0
	}
}

// walk returns the state after token id from st: a state (the same one
// for an end-of-generation id allowed there), stDead, stFull or stComplex
// (a.mu held).
func (a *Automaton) walk(st, id int32) int32 {
	p := a.v.piece[id]
	if p == nil {
		if a.states[st].accept {
			for _, e := range a.v.eog {
				if e == id {
					return st
				}
			}
		}
		return stDead
	}
	for _, c := range p {
		if st = a.step(st, c); st < 0 {
			return st
		}
	}
	return st
}

// makeRoom empties the mask cache when it is full (a.mu held).
func (a *Automaton) makeRoom() {
	if (a.masks+1)*(a.v.n/8+8) <= maxMaskBytes {
		return
	}
	for i := range a.states {
		a.states[i].mask, a.states[i].within = nil, nil
	}
	a.masks = 0
}

// AllowedWithin is Allowed under a token budget: what MaskWithin says of
// id.
func (m *Matcher) AllowedWithin(id int32, budget int) bool {
	return m.MaskWithin(budget).Has(id)
}

// Accept advances past id. An id the grammar does not allow is an error and
// leaves the matcher dead (every later token refused); an
// end-of-generation id is accepted when the text is complete and leaves
// the state as it was.
func (m *Matcher) Accept(id int32) error {
	if id < 0 || int(id) >= m.a.v.n {
		return fmt.Errorf("grammar: token id %d outside the vocabulary", id)
	}
	for {
		a := m.lock()
		if a == nil {
			if m.err != nil {
				return m.err
			}
			return fmt.Errorf("grammar: token %d after the text left the grammar", id)
		}
		next := a.walk(m.st, id)
		if next < stDead {
			if m.retry(a, next) {
				continue
			}
			return m.err
		}
		a.mu.Unlock()
		if next < 0 {
			m.st = -1
			if p := a.v.piece[id]; p != nil {
				return fmt.Errorf("grammar: token %d (%q) does not continue the grammar", id, p)
			}
			return fmt.Errorf("grammar: token %d (a control token) is not allowed here", id)
		}
		m.st = next
		return nil
	}
}

// Complete reports whether the text so far is a sentence of the language.
func (m *Matcher) Complete() bool {
	if m.st < 0 {
		return false
	}
	m.a.mu.Lock()
	defer m.a.mu.Unlock()
	return m.a.states[m.st].accept
}

// Done reports whether the text is complete and nothing may follow it: the
// grammar has ended, and so should generation.
func (m *Matcher) Done() bool {
	if m.st < 0 {
		return false
	}
	m.a.mu.Lock()
	defer m.a.mu.Unlock()
	s := &m.a.states[m.st]
	return s.accept && len(s.stacks) == 0
}

// Dead reports whether the matcher refused a token.
func (m *Matcher) Dead() bool { return m.st < 0 }

// MatchString reports whether s is a sentence of g (for tests and tools;
// it needs no vocabulary).
func (g *Grammar) MatchString(s string) bool {
	accept, ok := g.walk(s)
	return ok && accept
}

// PrefixOK reports whether s can be continued into a sentence of g.
func (g *Grammar) PrefixOK(s string) bool {
	_, ok := g.walk(s)
	return ok
}

// walk follows s's bytes from g's start: ok is false when a byte leaves the
// language; accept says whether s is a sentence.
func (g *Grammar) walk(s string) (accept, ok bool) {
	a := newAutomaton(g, &Vocab{}, MaxStates, true)
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.start
	for i := 0; i < len(s); i++ {
		if st = a.step(st, s[i]); st < 0 {
			return false, false
		}
	}
	return st >= 0 && a.states[st].accept, st >= 0
}

// Err reports ErrTooComplex (wrapped) when following the grammar ran past
// its bounds for this matcher (or its automaton's start did).
func (m *Matcher) Err() error { return m.err }

// Private reports whether the matcher has moved to tables of its own (the
// shared ones were full).
func (m *Matcher) Private() bool { return m.a.private }
