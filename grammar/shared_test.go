package grammar

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
)

// sharedGBNF has a path that runs past MaxStacks ("a" then c's: every c
// doubles the parses, 2^13 stacks after a dozen) and a path of many
// distinct states ("b", 40 to 60 letters, a dot).
const sharedGBNF = `root ::= "a" x | "b" [a-z]{40,60} "."
x ::= "c" x "d" | "c" x "e" | "c" x | ""
`

// byteID is the toy vocabulary's id of the one-byte token c.
func byteID(c byte) int32 { return int32(c) }

// bRun follows the "b" path through m, taking the bytes of text one token
// at a time, and returns the mask and the mask under a budget at each
// step (copies).
func bRun(t *testing.T, m *Matcher, text string, between func(step int)) (masks, within []Mask) {
	t.Helper()
	for i := 0; i < len(text); i++ {
		masks = append(masks, slices.Clone(m.Mask()))
		within = append(within, slices.Clone(m.MaskWithin(len(text)-i+1)))
		if between != nil {
			between(i)
		}
		if err := m.Accept(byteID(text[i])); err != nil {
			t.Errorf("b path, byte %d: %v", i, err)
			return
		}
	}
	if !m.Complete() || m.Err() != nil {
		t.Errorf("b path: complete %v, err %v", m.Complete(), m.Err())
	}
	return masks, within
}

// aRun drives m down the "a" path until a step runs past MaxStacks; it
// reports the error.
func aRun(m *Matcher) error {
	if err := m.Accept(byteID('a')); err != nil {
		return err
	}
	for range 40 {
		_ = m.Mask()
		if err := m.Accept(byteID('c')); err != nil {
			return err
		}
	}
	return nil
}

var bText = "b" + strings.Repeat("q", 45) + "."

// TestSharedAutomatonLimitFailsOnlyItsMatcher: two matchers share one
// automaton (as two requests share a cached grammar); one runs past the
// automaton's bounds in the middle of the other's generation. Only the
// first fails; the other completes with the masks of a solo run, and so
// does a matcher started afterwards. (Before: the error was the
// automaton's, and every matcher of it refused every token from then on.)
func TestSharedAutomatonLimitFailsOnlyItsMatcher(t *testing.T) {
	v, _ := toyVocab()
	g := mustGBNF(t, sharedGBNF)
	soloMasks, soloWithin := bRun(t, NewAutomaton(g, v).NewMatcher(), bText, nil)

	a := NewAutomaton(g, v)
	b := a.NewMatcher()
	var xErr error
	masks, within := bRun(t, b, bText, func(step int) {
		if step == 10 { // the other request arrives and fails
			x := a.NewMatcher()
			xErr = aRun(x)
			if !errors.Is(x.Err(), ErrTooComplex) {
				t.Errorf("the failing matcher's Err() = %v", x.Err())
			}
			if x.Mask().Count() != 0 {
				t.Error("a failed matcher still allows tokens")
			}
		}
	})
	if !errors.Is(xErr, ErrTooComplex) {
		t.Fatalf("the a path: %v, want ErrTooComplex", xErr)
	}
	if a.Err() != nil {
		t.Errorf("the shared automaton reports %v", a.Err())
	}
	compareMasks(t, "in flight", masks, within, soloMasks, soloWithin)
	masks, within = bRun(t, a.NewMatcher(), bText, nil)
	compareMasks(t, "later", masks, within, soloMasks, soloWithin)
}

func compareMasks(t *testing.T, what string, masks, within, wantMasks, wantWithin []Mask) {
	t.Helper()
	if len(masks) != len(wantMasks) {
		t.Fatalf("%s: %d steps, solo %d", what, len(masks), len(wantMasks))
	}
	for i := range masks {
		if !slices.Equal(masks[i], wantMasks[i]) || !slices.Equal(within[i], wantWithin[i]) {
			t.Fatalf("%s: step %d: mask differs from the solo run's (%d/%d allowed, solo %d/%d)", what, i,
				masks[i].Count(), within[i].Count(), wantMasks[i].Count(), wantWithin[i].Count())
		}
	}
}

// TestSharedAutomatonFull: once the shared tables are full, a matcher that
// needs a new state carries on in tables of its own, with the same masks;
// nothing fails.
func TestSharedAutomatonFull(t *testing.T) {
	v, _ := toyVocab()
	g := mustGBNF(t, sharedGBNF)
	soloMasks, soloWithin := bRun(t, NewAutomaton(g, v).NewMatcher(), bText, nil)
	a := NewAutomaton(g, v)
	a.setLimit(20)
	filler := a.NewMatcher() // fills the tables with the first states of the b path
	bRun(t, filler, bText[:15]+strings.Repeat("z", 30)+".", nil)
	if st, _ := a.Size(); st > 20 {
		t.Fatalf("the shared tables hold %d states, limit 20", st)
	}
	m := a.NewMatcher()
	masks, within := bRun(t, m, bText, nil)
	if !m.Private() {
		t.Error("the matcher did not move to tables of its own")
	}
	compareMasks(t, "past the shared limit", masks, within, soloMasks, soloWithin)
}

// TestSharedAutomatonConcurrent: matchers on one automaton with small
// tables, some failing on the a path and some following the b path at the
// same time; every b run has the solo masks (run with -race).
func TestSharedAutomatonConcurrent(t *testing.T) {
	v, _ := toyVocab()
	g := mustGBNF(t, sharedGBNF)
	soloMasks, soloWithin := bRun(t, NewAutomaton(g, v).NewMatcher(), bText, nil)
	for _, limit := range []int{SharedStates, 30} {
		a := NewAutomaton(g, v)
		a.setLimit(limit)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				m := a.NewMatcher()
				if i%2 == 0 {
					if err := aRun(m); !errors.Is(err, ErrTooComplex) {
						t.Errorf("a path: %v", err)
					}
					return
				}
				masks, within := bRun(t, m, bText, nil)
				compareMasks(t, "concurrent", masks, within, soloMasks, soloWithin)
			})
		}
		wg.Wait()
	}
}
