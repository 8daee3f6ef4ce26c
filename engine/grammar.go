package engine

import (
	"container/list"
	"fmt"
	"math"
	mbits "math/bits"
	"sync"

	"worker-orcd/grammar"
)

// Grammar kinds for Engine.Grammar.
const (
	GrammarGBNF       = "gbnf"        // llama.cpp's GBNF
	GrammarJSONSchema = "json_schema" // a JSON Schema
	GrammarJSONObject = "json_object" // any JSON object (the source is ignored)
)

// grammarCacheSize bounds the compiled grammars an engine keeps, and
// grammarMaxStates the states one may grow to before it is compiled afresh
// (a long-lived automaton's tables only grow).
const (
	grammarCacheSize = 16
	grammarMaxStates = 20000
	// grammarMaxFrames: the same for the parse frames, at 5/8 of what a
	// shared automaton holds (8 × grammar.SharedStates).
	grammarMaxFrames = 5 * grammar.SharedStates
)

type grammarCache struct {
	mu    sync.Mutex
	vocab *grammar.Vocab
	once  sync.Once
	lru   *list.List // of *grammarEntry, most recent first
	byKey map[string]*list.Element
}

type grammarEntry struct {
	key string
	a   *grammar.Automaton
}

// Grammar compiles a constraint for Request.Grammar: kind is GrammarGBNF,
// GrammarJSONSchema or GrammarJSONObject. Compiled grammars are cached by
// kind and source (the last 16), so that a schema sent again costs a map
// lookup and its token masks are already computed. A source that does not
// compile returns a *grammar.Error (wrapped in ErrInvalidRequest) saying
// where and why.
func (e *Engine) Grammar(kind, src string) (*grammar.Automaton, error) {
	switch kind {
	case GrammarGBNF, GrammarJSONSchema, GrammarJSONObject:
	default:
		return nil, invalid("unknown grammar kind %q (want %s, %s or %s)", kind, GrammarGBNF, GrammarJSONSchema, GrammarJSONObject)
	}
	return e.CompiledGrammar(kind+"\x00"+src, func() (*grammar.Grammar, error) {
		switch kind {
		case GrammarGBNF:
			return grammar.CompileGBNF(src)
		case GrammarJSONSchema:
			return grammar.CompileSchema([]byte(src))
		}
		return grammar.JSONObject(), nil
	})
}

// CompiledGrammar is Grammar for a grammar of the caller's making: compile
// runs when key is not in the cache (keys of Grammar begin with its kind
// and a NUL byte; choose others).
func (e *Engine) CompiledGrammar(key string, compile func() (*grammar.Grammar, error)) (*grammar.Automaton, error) {
	c := &e.grammars
	c.once.Do(func() {
		c.vocab = grammar.VocabOf(e.tok)
		c.lru = list.New()
		c.byKey = map[string]*list.Element{}
	})
	c.mu.Lock()
	if el, ok := c.byKey[key]; ok {
		ent := el.Value.(*grammarEntry)
		// Compiled anew when its tables are mostly full: past that every
		// request would need tables of its own. Frames fill too, also from
		// expansions that were abandoned (a request past a bound).
		if st, frames := ent.a.Size(); st < grammarMaxStates && frames < grammarMaxFrames && ent.a.Err() == nil {
			c.lru.MoveToFront(el)
			c.mu.Unlock()
			return ent.a, nil
		}
		c.lru.Remove(el)
		delete(c.byKey, key)
	}
	c.mu.Unlock()
	g, err := compile()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	a := grammar.NewAutomaton(g, c.vocab)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok { // compiled meanwhile by another request
		return el.Value.(*grammarEntry).a, nil
	}
	c.byKey[key] = c.lru.PushFront(&grammarEntry{key: key, a: a})
	for c.lru.Len() > grammarCacheSize {
		old := c.lru.Remove(c.lru.Back()).(*grammarEntry)
		delete(c.byKey, old.key)
	}
	return a, nil
}

// grammarNext is what a constrained sequence knows of its next step.
type grammarNext struct {
	known, narrow bool // narrow: ask for the whole row (see narrowStep)
}

// narrowStep reports whether the next step asks for the whole row rather
// than the backend's top candidates (topK). The top candidates are asked
// for only where the step's mask is known to allow nearly every token
// (inside a string): elsewhere too few of them are likely to be allowed,
// and a step read again for the whole row costs a forward, while the whole
// row costs a copy. Either way the token is the same (a step whose
// candidates hold too few allowed ids is read again), so this only
// chooses the faster path.
func (s *seq) narrowStep() bool {
	if s.gnext.known {
		s.gnext.known = false
		return s.gnext.narrow
	}
	return s.wholeRowNext()
}

// wholeRowNext is narrowStep's answer from the masks known now: the whole
// row unless the mask under the budget is cached (and the automaton not
// busy) and allows at least 7/8 of the vocabulary.
func (s *seq) wholeRowNext() bool {
	n, ok := s.gm.CachedCount(s.maxTokens - len(s.result.IDs))
	return !ok || n < s.tok.VocabSize()-s.tok.VocabSize()/8
}

// grammarAhead runs when a constrained sequence has taken a token and goes
// on: it decides now whether the next step asks for the whole row, and
// prepares the computation of the next step's mask, which the engine starts
// on another goroutine once every sequence of the step has taken its token
// (so that it runs while the model computes the next logits, not against
// the other sequences' accepts on the same automaton) — a state's first mask is a walk of the vocabulary's
// trie, up to a few milliseconds where most tokens are allowed (inside a
// string). The mask is cached in the automaton, where accept finds it (or
// waits for it: the automaton's lock).
func (s *seq) grammarAhead() {
	s.gnext = grammarNext{known: true, narrow: s.wholeRowNext()}
	s.prefetch = s.gm.Prefetch(s.maxTokens - len(s.result.IDs))
}

// applyMask writes logits into dst with every id outside mask at -Inf.
func applyMask(dst, logits []float32, mask grammar.Mask) {
	inf := float32(negInf)
	for w, bits := range mask {
		lo := w * 64
		hi := min(lo+64, len(logits))
		if lo >= hi {
			break
		}
		switch bits {
		case ^uint64(0):
			copy(dst[lo:hi], logits[lo:hi])
		case 0:
			copy(dst[lo:hi], negInfs[:])
		default:
			if hi-lo < 64 {
				bits &= 1<<uint(hi-lo) - 1
			}
			if mbits.OnesCount64(bits) >= 32 { // copy, then clear the refused
				copy(dst[lo:hi], logits[lo:hi])
				for z := ^bits; z != 0; z &= z - 1 {
					if i := lo + mbits.TrailingZeros64(z); i < hi {
						dst[i] = inf
					}
				}
			} else { // fill, then copy the allowed
				copy(dst[lo:hi], negInfs[:])
				for b := bits; b != 0; b &= b - 1 {
					i := lo + mbits.TrailingZeros64(b)
					dst[i] = logits[i]
				}
			}
		}
	}
	for i := len(mask) * 64; i < len(logits); i++ {
		dst[i] = inf
	}
}

var negInf = math.Inf(-1)

// negInfs is a word's worth of -Inf logits, copied where a mask refuses.
var negInfs = func() (a [64]float32) {
	for i := range a {
		a[i] = float32(negInf)
	}
	return
}()

func grow32(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}
