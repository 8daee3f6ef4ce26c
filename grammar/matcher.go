package grammar

import "fmt"

// Matcher follows one sequence's generated tokens through an automaton. It
// is not safe for concurrent use (its automaton is).
type Matcher struct {
	a  *Automaton
	st int32 // current state; -1 after a refused token
}

// NewMatcher returns a matcher at the start of the grammar.
func (a *Automaton) NewMatcher() *Matcher { return &Matcher{a: a, st: a.start} }

// Mask returns the tokens that may come next: those whose bytes keep the
// text a prefix of the language, and the end-of-generation ids when the
// text is complete. The mask is shared (cached per state): do not modify
// it.
func (m *Matcher) Mask() Mask {
	a := m.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if m.st < 0 {
		return make(Mask, (a.v.n+63)/64)
	}
	s := &a.states[m.st]
	if s.mask == nil {
		a.makeRoom()
		mask := a.computeMask(m.st, -1)
		a.states[m.st].mask = mask
		a.masks++
		return mask
	}
	return s.mask
}

// Allowed reports whether id may come next (what Mask says of it, without
// computing the whole mask).
func (m *Matcher) Allowed(id int32) bool {
	a := m.a
	if id < 0 || int(id) >= a.v.n || m.st < 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.allowed(m.st, id)
}

func (a *Automaton) allowed(st, id int32) bool {
	return a.allowedWithin(st, id, -1)
}

// allowedWithin is allowed with a budget (see MaskWithin); -1: none.
func (a *Automaton) allowedWithin(st, id int32, budget int) bool {
	if mk := a.states[st].mask; mk != nil && (budget < 0 || a.states[st].maxAfter <= int32(max(budget-1, 0))) {
		return mk.Has(id)
	}
	if w, ok := a.states[st].within[int32(max(budget-1, 0))]; ok && budget >= 0 {
		return w.Has(id)
	}
	p := a.v.piece[id]
	if p == nil {
		if a.states[st].accept {
			for _, e := range a.v.eog {
				if e == id {
					return true
				}
			}
		}
		return false
	}
	for _, c := range p {
		if st = a.step(st, c); st < 0 {
			return false
		}
	}
	return budget < 0 || a.states[st].dist <= int32(max(budget-1, 0))
}

// MaskWithin is Mask for a generation that may add at most budget more
// tokens: only the tokens after which the text can still be completed in
// budget-1 tokens (one byte per token at worst) are allowed, so that a
// constrained generation ends complete instead of being cut at its token
// limit. It equals Mask while the budget is large enough to change
// nothing; otherwise it is computed afresh (not cached).
func (m *Matcher) MaskWithin(budget int) Mask {
	mask := m.Mask()
	a := m.a
	a.mu.Lock()
	defer a.mu.Unlock()
	limit := int32(max(budget-1, 0))
	if m.st < 0 || a.states[m.st].maxAfter <= limit {
		return mask
	}
	if w, ok := a.states[m.st].within[limit]; ok {
		return w
	}
	a.makeRoom()
	within := a.computeMask(m.st, budget)
	if within.Count() == 0 {
		within = mask // no completion fits: the best that can be done is no budget
	}
	s := &a.states[m.st]
	if s.within == nil {
		s.within = map[int32]Mask{}
	}
	s.within[limit] = within
	a.masks++
	return within
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

// AllowedWithin is Allowed under a token budget (see MaskWithin).
func (m *Matcher) AllowedWithin(id int32, budget int) bool {
	a := m.a
	if id < 0 || int(id) >= a.v.n || m.st < 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.allowedWithin(m.st, id, budget)
}

// Accept advances past id. An id the grammar does not allow is an error and
// leaves the matcher dead (every later token refused); an
// end-of-generation id is accepted when the text is complete and leaves
// the state as it was.
func (m *Matcher) Accept(id int32) error {
	a := m.a
	if id < 0 || int(id) >= a.v.n {
		return fmt.Errorf("grammar: token id %d outside the vocabulary", id)
	}
	if m.st < 0 {
		return fmt.Errorf("grammar: token %d after the text left the grammar", id)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.v.piece[id]
	if p == nil {
		if a.allowed(m.st, id) {
			return nil
		}
		m.st = -1
		return fmt.Errorf("grammar: token %d (a control token) is not allowed here", id)
	}
	st := m.st
	for _, c := range p {
		if st = a.step(st, c); st < 0 {
			m.st = -1
			if a.err != nil {
				return a.err
			}
			return fmt.Errorf("grammar: token %d (%q) does not continue the grammar", id, p)
		}
	}
	m.st = st
	return nil
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
	a := NewAutomaton(g, &Vocab{})
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

// Err reports the automaton's ErrTooComplex, if it ran past its bounds.
func (m *Matcher) Err() error { return m.a.Err() }
