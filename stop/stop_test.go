package stop

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// reference returns text truncated at the start of the first stop string to
// be completed (earliest end; on equal ends the longest), and whether one was.
func reference(text string, stops []string) (string, bool) {
	for e := 1; e <= len(text); e++ {
		best := ""
		for _, s := range stops {
			if s != "" && len(s) > len(best) && strings.HasSuffix(text[:e], s) {
				best = s
			}
		}
		if best != "" {
			return text[:e-len(best)], true
		}
	}
	return text, false
}

// run pushes pieces and returns what was emitted (plus Flush when no stop)
// and whether it stopped, checking the invariants along the way.
func run(t *testing.T, stops []string, pieces []string) (string, bool) {
	t.Helper()
	m := NewMatcher(stops)
	var out, in strings.Builder
	stopped := false
	for _, p := range pieces {
		in.WriteString(p)
		emit, st := m.Push(p)
		out.WriteString(emit)
		if stopped && (emit != "" || !st) {
			t.Fatalf("after the stop, Push(%q) = %q, %v", p, emit, st)
		}
		stopped = st
		if !stopped {
			// Everything pushed is emitted or held, and what is held could
			// still begin a stop string.
			if !strings.HasPrefix(in.String(), out.String()) {
				t.Fatalf("emitted %q is not a prefix of pushed %q", out.String(), in.String())
			}
			held := in.String()[out.Len():]
			if held != "" && !isProperPrefixOfAny(held, stops) {
				t.Fatalf("holding %q, which begins no stop string of %q", held, stops)
			}
		}
	}
	if !stopped {
		out.WriteString(m.Flush())
	} else if f := m.Flush(); f != "" {
		t.Fatalf("Flush after a stop = %q", f)
	}
	if stopped != m.Stopped() {
		t.Fatalf("Stopped() = %v, Push said %v", m.Stopped(), stopped)
	}
	return out.String(), stopped
}

func isProperPrefixOfAny(h string, stops []string) bool {
	for _, s := range stops {
		if len(h) < len(s) && strings.HasPrefix(s, h) {
			return true
		}
	}
	return false
}

func TestMatcher(t *testing.T) {
	tests := []struct {
		name    string
		stops   []string
		pieces  []string
		want    string
		stopped bool
		matched string
	}{
		{"no stops", nil, []string{"hello", " world"}, "hello world", false, ""},
		{"only empty stops", []string{"", ""}, []string{"a", "b"}, "ab", false, ""},
		{"split across pieces", []string{"STOP"}, []string{"hello", " ST", "OP", "PED"}, "hello ", true, "STOP"},
		{"within a piece", []string{"\n\n"}, []string{"line one\n\nline two"}, "line one", true, "\n\n"},
		{"across pieces", []string{"<|im_end|>"}, []string{"Hi", "<|", "im", "_end", "|>", "more"}, "Hi", true, "<|im_end|>"},
		{"partial then not", []string{"<|im_end|>"}, []string{"a <|", "im", "x"}, "a <|imx", false, ""},
		{"stop at the very start", []string{"ab"}, []string{"a", "b", "c"}, "", true, "ab"},
		{"overlapping prefixes ab and b", []string{"ab", "b"}, []string{"a", "a", "b"}, "a", true, "ab"},
		{"overlapping prefixes b and ab", []string{"b", "ab"}, []string{"aab"}, "a", true, "ab"},
		{"shorter one completes first", []string{"abcd", "bc"}, []string{"abcd"}, "a", true, "bc"},
		{"self-overlapping", []string{"aab"}, []string{"a", "a", "a", "b"}, "a", true, "aab"},
		{"held prefix released at flush", []string{"END"}, []string{"the E", "N"}, "the EN", false, ""},
		{"two stops, second first", []string{"xyz", "q"}, []string{"abq", "xyz"}, "ab", true, "q"},
		{"unicode", []string{"。", "終わり"}, []string{"こんにちは", "世界", "終", "わ", "り", "です"}, "こんにちは世界", true, "終わり"},
		{"unicode split inside a rune", []string{"é!"}, []string{"caf\xc3", "\xa9", "!"}, "caf", true, "é!"},
		{"empty pieces", []string{"ab"}, []string{"", "a", "", "b"}, "", true, "ab"},
		{"duplicate stops", []string{"x", "x"}, []string{"abxc"}, "ab", true, "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, stopped := run(t, tc.stops, tc.pieces)
			if got != tc.want || stopped != tc.stopped {
				t.Errorf("emitted %q, stopped %v; want %q, %v", got, stopped, tc.want, tc.stopped)
			}
			m := NewMatcher(tc.stops)
			for _, p := range tc.pieces {
				m.Push(p)
			}
			if m.Matched() != tc.matched {
				t.Errorf("Matched() = %q, want %q", m.Matched(), tc.matched)
			}
			if want, st := reference(strings.Join(tc.pieces, ""), tc.stops); want != got || st != stopped {
				t.Errorf("reference gives %q, %v", want, st)
			}
		})
	}
}

func TestPushEmitsEarly(t *testing.T) {
	m := NewMatcher([]string{"STOP"})
	steps := []struct{ piece, emit string }{
		{"abc", "abc"},
		{"S", ""},
		{"T", ""},
		{"x", "STx"},
		{"ST", ""},
		{"O", ""},
		{"P", ""},
	}
	for i, s := range steps {
		emit, stopped := m.Push(s.piece)
		if emit != s.emit {
			t.Errorf("step %d Push(%q) = %q, want %q", i, s.piece, emit, s.emit)
		}
		if stopped != (i == len(steps)-1) {
			t.Errorf("step %d stopped = %v", i, stopped)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := Validate([]string{"a", "\n"}); err != nil {
		t.Errorf("Validate(valid) = %v", err)
	}
	if err := Validate(nil); err != nil {
		t.Errorf("Validate(nil) = %v", err)
	}
	err := Validate([]string{"a", ""})
	if err == nil || !errors.Is(err, ErrInvalidStop) || !strings.Contains(err.Error(), "stop string 1 of 2 is empty") {
		t.Errorf("Validate with an empty string = %v", err)
	}
}

// split cuts text into pieces at positions drawn from seed.
func split(text string, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 7))
	var pieces []string
	for len(text) > 0 {
		n := r.IntN(min(len(text), 6) + 1) // empty pieces too
		pieces = append(pieces, text[:n])
		text = text[n:]
	}
	return pieces
}

func FuzzMatcher(f *testing.F) {
	f.Add("hello STOP world", "STOP", "", uint64(1))
	f.Add("aab", "ab", "b", uint64(2))
	f.Add("abcd", "abcd", "bc", uint64(3))
	f.Add("aaaab", "aab", "x", uint64(4))
	f.Add("日本語の文章。終わり", "。", "終わり", uint64(5))
	f.Add("<|im_end|>", "<|im_end|>", "<|endoftext|>", uint64(6))
	f.Add("no stops here", "", "", uint64(7))
	f.Fuzz(func(t *testing.T, text, s1, s2 string, seed uint64) {
		stops := []string{s1, s2}
		want, wantStop := reference(text, stops)
		got, stopped := run(t, stops, split(text, seed))
		if got != want || stopped != wantStop {
			t.Fatalf("text %q stops %q pieces %q: emitted %q, %v; want %q, %v",
				text, stops, split(text, seed), got, stopped, want, wantStop)
		}
	})
}

func BenchmarkPush(b *testing.B) {
	m := NewMatcher([]string{"<|im_end|>", "<|endoftext|>", "\n\nUser:"})
	pieces := split(strings.Repeat("The quick brown fox <| jumps over\n\nthe lazy dog. ", 20), 1)
	b.ResetTimer()
	for b.Loop() {
		*m = Matcher{stops: m.stops}
		for _, p := range pieces {
			m.Push(p)
		}
	}
}
