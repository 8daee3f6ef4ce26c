// Package stop matches stop strings against streamed text.
//
// Generated text arrives in pieces (one per token, from the streaming
// decoder). A Matcher decides, piece by piece, what may be shown to the
// client now: text that could still turn out to be the start of a stop
// string is held back until the next piece settles it, and once a stop
// string is complete the text before it is released and everything from the
// stop string on is dropped.
//
// When several stop strings could apply, the stream stops at the first one
// to be completed (the one that ends earliest in the text); if several end
// at the same place, the longest (the one that starts earliest) wins. This
// is what a reader of the stream sees, and it does not depend on how the text
// was split into pieces: the emitted text is always the whole text truncated
// at the start of that occurrence. Matching is on bytes; for valid UTF-8 text
// and stop strings a match always falls on character boundaries.
package stop

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidStop is wrapped by the errors Validate returns.
var ErrInvalidStop = errors.New("invalid stop strings")

// Validate reports the first unusable stop string: an empty one, which would
// match before any text. The error wraps ErrInvalidStop.
func Validate(stops []string) error {
	for i, s := range stops {
		if s == "" {
			return fmt.Errorf("%w: stop string %d of %d is empty (want at least one character)", ErrInvalidStop, i, len(stops))
		}
	}
	return nil
}

// Matcher finds stop strings in text pushed piece by piece. Create it with
// NewMatcher; it is not safe for concurrent use.
type Matcher struct {
	stops   []string
	held    string // pushed text not yet emitted: a proper prefix of some stop string
	stopped bool
	matched string
}

// NewMatcher returns a Matcher for stops. Empty strings and duplicates are
// ignored (reject empty ones from users with Validate first). With no stop
// strings, Push returns every piece as it comes.
func NewMatcher(stops []string) *Matcher {
	m := &Matcher{}
	for _, s := range stops {
		if s != "" && !containsString(m.stops, s) {
			m.stops = append(m.stops, s)
		}
	}
	return m
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Push adds the next piece of text. It returns the text that is now safe to
// emit, which may be empty when the end of the text could be the start of a
// stop string. When a stop string completes, it returns the text before it
// and stopped = true; the stop string and whatever follows are never emitted,
// and later calls return "", true.
func (m *Matcher) Push(piece string) (emit string, stopped bool) {
	if m.stopped {
		return "", true
	}
	if len(m.stops) == 0 {
		return piece, false
	}
	buf := m.held + piece
	// The earliest-ending occurrence of a stop string; on equal ends, the
	// longest. For one stop string the earliest start is the earliest end.
	start, end := -1, -1
	for _, s := range m.stops {
		i := strings.Index(buf, s)
		if i < 0 {
			continue
		}
		if e := i + len(s); end < 0 || e < end || (e == end && i < start) {
			start, end = i, e
			m.matched = s
		}
	}
	if start >= 0 {
		m.stopped = true
		m.held = ""
		return buf[:start], true
	}
	h := m.holdLen(buf)
	m.held = buf[len(buf)-h:]
	return buf[:len(buf)-h], false
}

// holdLen returns the length of the longest suffix of buf that is a proper
// prefix of a stop string.
func (m *Matcher) holdLen(buf string) int {
	best := 0
	for _, s := range m.stops {
		for l := min(len(s)-1, len(buf)); l > best; l-- {
			if strings.HasSuffix(buf, s[:l]) {
				best = l
				break
			}
		}
	}
	return best
}

// Flush returns the text held back, for when the stream ends for another
// reason (end of sequence, token limit, cancellation): what was held back
// was not a stop string after all. It returns "" after a stop.
func (m *Matcher) Flush() string {
	h := m.held
	m.held = ""
	return h
}

// Stopped reports whether a stop string has been found.
func (m *Matcher) Stopped() bool { return m.stopped }

// Matched returns the stop string that stopped the stream, or "".
func (m *Matcher) Matched() string { return m.matched }
