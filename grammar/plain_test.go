package grammar

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestPlainRanges: the plain code points are those JSON leaves unescaped
// (all but the quote, the backslash and U+0000–U+001F; DEL too, as
// json-char), and plainSeqs encode exactly them, each in one way.
func TestPlainRanges(t *testing.T) {
	jsonPlain := func(r rune) bool {
		return r >= 0x20 && r != '"' && r != '\\' && r != 0x7F && utf8.ValidRune(r)
	}
	var buf [4]byte
	for r := rune(0); r <= utf8.MaxRune+1; r++ {
		if isPlain(r) != jsonPlain(r) {
			t.Fatalf("isPlain(%U) = %v", r, isPlain(r))
		}
		if !utf8.ValidRune(r) {
			continue
		}
		enc := buf[:utf8.EncodeRune(buf[:], r)]
		matches := 0
		for _, seq := range plainSeqs {
			if len(seq) != len(enc) {
				continue
			}
			ok := true
			for i, br := range seq {
				ok = ok && enc[i] >= br[0] && enc[i] <= br[1]
			}
			if ok {
				matches++
			}
		}
		if want := map[bool]int{true: 1, false: 0}[jsonPlain(r)]; matches != want {
			t.Fatalf("%U (% x) matches %d of plainSeqs, want %d", r, enc, matches, want)
		}
	}
}

func TestPlainCount(t *testing.T) {
	cases := []struct {
		piece string
		n     int
		ok    bool
	}{
		{"a", 1, true},
		{" hello", 6, true},
		{"é", 1, true},
		{"日本語", 3, true},
		{"a😀b", 3, true},
		{"\u0080", 1, true},
		{"\uFFFD", 1, true}, // the replacement character itself is plain
		{"\U0010FFFF", 1, true},
		{"", 0, false},
		{`"`, 0, false},
		{`a"`, 0, false},
		{`\n`, 0, false}, // a backslash
		{"\n", 0, false},
		{"x\x7F", 0, false},
		{"\xC3", 0, false},         // a lead byte alone
		{"a\xE6\x97", 0, false},    // a character cut short
		{"\xED\xA0\x80", 0, false}, // a surrogate
		{"\xC0\xAF", 0, false},     // overlong
	}
	for _, c := range cases {
		n, ok := plainCount([]byte(c.piece))
		if n != c.n || ok != c.ok {
			t.Errorf("plainCount(%q) = %d, %v; want %d, %v", c.piece, n, ok, c.n, c.ok)
		}
	}
}

// plainVocab is a byte-level vocabulary with plain tokens of many lengths
// and shapes (multi-byte, beyond plainDense code points, duplicates),
// tokens that mix plain text with what is not, pieces of characters, an
// unusable plain token and an EOS.
func plainVocab() (v *Vocab, pieces [][]byte, eos int32) {
	for b := range 256 {
		pieces = append(pieces, []byte{byte(b)})
	}
	words := []string{
		"ab", "abc", "abcd", "hello", " world", "a b", "x-y", "12", "1.5", "-3", "@", "a.b", "+x", "_id", "AB", "AB-1",
		"é", "éé", "ñandú", "日本", "日本語", "😀", "a😀b", "\u0080", "\uFFFD", "\U0010FFFF", "\uE000", "\uD7FF", "ÿ",
		strings.Repeat("ab", 16), strings.Repeat("x", 33), strings.Repeat("é", 40), strings.Repeat("-", 64),
		"dup", "dup", "日本", // duplicates
		`a"`, `",`, `"}`, `", "`, `":`, `{"`, `\n`, `\"`, `\u00`, `\\`, "a\n", "\n  ", "\t", "x\x7F", `"abc`, `abc"def`, `é"`,
		"\xC3", "\xA9", "\xE6\x97", "\xF0\x9F\x98", "a\xC3", "é\xE6", "\x80\x80", `",`,
		// Byte classes (class.go): letters, digits, the email's bytes, and
		// tokens that leave a class part of the way.
		"abc123", "Z9", "9Z", "ab@", "@cd", "cd.ef", ".com", "abc,", "a_b", "00000", "12345", "123456", "deadbeef", "AB12",
		strings.Repeat("q", 20), strings.Repeat("Ab", 9), "ab@cd.ef", "x@y", "abc\"", `1"`,
		// Lead classes need a first byte of 1/64 of the tokens or more.
		".org", ".net", ".io", ".x", ".Ab", ".q1", "@a", "@bc", "@Q", "@x9", "@zz", "@-",
		"<ctl>",
	}
	for _, w := range words {
		pieces = append(pieces, []byte(w))
	}
	ctl := int32(len(pieces) - 1)
	pieces = append(pieces, []byte("<|eos|>"))
	eos = int32(len(pieces) - 1)
	v = NewVocab(pieces, func(id int32) bool { return id != eos && id != ctl }, []int32{eos})
	return v, pieces, eos
}

// bruteMask is what computeMask must give from the state the text has
// reached in ref (an automaton of the same grammar with no vocabulary),
// token by token: its bytes continue the text and, with limit ≥ 0, leave
// a complete text at most limit bytes away; eos when the text is complete.
func bruteMask(ref *Automaton, v *Vocab, text string, limit int32, eos int32) Mask {
	ref.mu.Lock()
	defer ref.mu.Unlock()
	st := ref.start
	for i := 0; i < len(text) && st >= 0; i++ {
		st = ref.step(st, text[i])
	}
	m := make(Mask, (v.n+63)/64)
	if st < 0 {
		return m
	}
	if ref.states[st].accept && eos >= 0 {
		m.set(eos)
	}
	for id, p := range v.piece {
		if p == nil {
			continue
		}
		s := st
		for i := 0; i < len(p) && s >= 0; i++ {
			s = ref.step(s, p[i])
		}
		if s >= 0 && (limit < 0 || ref.dists[s] <= limit) {
			m.set(int32(id))
		}
	}
	return m
}

// maskDiff names the first ids where two masks differ.
func maskDiff(got, want Mask, pieces [][]byte) string {
	var out []string
	for id := range int32(len(pieces)) {
		if got.Has(id) != want.Has(id) {
			out = append(out, fmt.Sprintf("%q: got %v", pieces[id], got.Has(id)))
			if len(out) == 5 {
				break
			}
		}
	}
	return strings.Join(out, ", ")
}

// TestMaskPlainMatchesBruteForce: masks computed with the plain-text sets
// (and those computed by the whole walk where a grammar treats plain
// characters differently) equal checking every token on its own, with
// and without a budget, along random paths; where plainByStacks can tell,
// it says what following every character's bytes says.
func TestMaskPlainMatchesBruteForce(t *testing.T) {
	cases := []struct {
		name, src string
		schema    bool
		plain     bool // some masks come from the plain-text sets
		byStacks  bool // plainByStacks finds the next state somewhere
		class     bool // some masks come from a byte class's sets
	}{
		{"json-object", "root ::= json-object\n" + jsonCommon, false, true, true, true},
		{"schema-lengths", `{"type":"object","properties":{"s":{"type":"string","maxLength":5},"t":{"type":"string","minLength":2,"maxLength":40},"u":{"type":"string"},"v":{"type":"array","items":{"type":"string","maxLength":3}}},"required":["s","t","u","v"],"additionalProperties":false}`, true, true, true, true},
		{"schema-formats", `{"type":"object","properties":{"m":{"type":"string","format":"email"},"p":{"type":"string","pattern":"^[A-Z]{2}-[0-9]+$"},"e":{"enum":["é","日本"]}},"required":["m","p","e"],"additionalProperties":false}`, true, false, false, true},
		{"schema-patterns", `{"type":"object","properties":{"z":{"type":"string","pattern":"^[0-9]{5}$"},"u":{"type":"string","format":"uuid"},"h":{"type":"string","pattern":"^[a-z]{3}[a-f0-9]*$"}},"required":["z","u","h"],"additionalProperties":false}`, true, false, false, true},
		// The email format alone, the text its own.
		{"email", `root ::= [a-zA-Z0-9] [a-zA-Z0-9._+-]{0,30} "@" [a-zA-Z0-9] [a-zA-Z0-9-]{0,30} ("." [a-zA-Z]{2,10}){1,3}`, false, false, false, true},
		// A class that one state splits ([a-z] after three letters: only
		// [a-f] goes on), and two halves of a class that lead to one state.
		{"split-letters", `root ::= [a-z]{3} [a-f0-9]* "."?`, false, false, false, true},
		{"halves", `root ::= ([a-m] | [n-z]){2,20} ("," | "@")`, false, false, false, true},
		// A class of all but the controls (quote and backslash included):
		// plain characters alike, a set that holds whole ranges.
		{"not-controls", `root ::= "x" [^\x00-\x1F]{0,3} "\t"`, false, true, true, false},
		// The same class split across alternatives at bytes inside
		// plainSeqs' ranges: plainByStacks cannot tell, plainByBytes can.
		{"split-class", `root ::= "\n" c{0,6} "\n"
c ::= [ -@] | [A-\U0010FFFF]`, false, true, false, false},
		// A class holding part of each of plainSeqs' ASCII ranges: some
		// plain characters die.
		{"partial-class", `root ::= "\n" [ !#-0\]-a\u0080-\U0010FFFF]{0,4} "\n"`, false, false, false, true},
		// ASCII only: multi-byte characters die, ASCII ones do not.
		{"ascii-only", `root ::= "\t" [\x20-\x7E]* "\t"`, false, false, false, true},
		{"letters", `root ::= [a-z]+ ("," [a-z]+)*`, false, false, false, true},
		{"unbounded-text", `root ::= "<" [^<>\n]* ">" "\n"?`, false, false, false, true},
	}
	v, pieces, eos := plainVocab()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var g *Grammar
			var err error
			if c.schema {
				g, err = CompileSchema([]byte(c.src))
			} else {
				g, err = CompileGBNF(c.src)
			}
			if err != nil {
				t.Fatal(err)
			}
			a := NewAutomaton(g, v)
			ref := NewAutomaton(g, &Vocab{})
			byStacks := false
			for seed := range 12 {
				m := a.NewMatcher()
				text := ""
				rng := uint64(seed*7919 + 1)
				for step := 0; step < 30 && !m.Done(); step++ {
					mask := m.Mask()
					if want := bruteMask(ref, v, text, -1, eos); !slices.Equal(mask, want) {
						t.Fatalf("after %q: mask differs: %s", text, maskDiff(mask, want, pieces))
					}
					a.mu.Lock()
					d := a.dists[m.st]
					a.mu.Unlock()
					for _, limit := range []int32{0, 1, d - 2, d - 1, d, d + 1, d + 2, d + 5} {
						if limit < 0 {
							continue
						}
						a.mu.Lock()
						got, code := a.computeMask(m.st, limit)
						a.mu.Unlock()
						if code != 0 {
							t.Fatalf("computeMask: code %d", code)
						}
						if want := bruteMask(ref, v, text, limit, eos); !slices.Equal(got, want) {
							t.Fatalf("after %q, limit %d: mask differs: %s", text, limit, maskDiff(got, want, pieces))
						}
					}
					if checkPlainByStacks(t, a, m.st, text) {
						byStacks = true
					}
					rng = rng*6364136223846793005 + 1442695040888963407
					id := pickAllowed(mask, rng>>20)
					if id < 0 {
						t.Fatalf("after %q: no token allowed", text)
					}
					if id == eos {
						break
					}
					if err := m.Accept(id); err != nil {
						t.Fatal(err)
					}
					text += string(pieces[id])
				}
			}
			a.mu.Lock()
			plain, class, leads := a.plainMasks, a.classMasks, a.leadMasks
			a.mu.Unlock()
			if c.name == "email" && leads == 0 {
				t.Error("no mask from lead classes' sets")
			}
			if (plain > 0) != c.plain {
				t.Errorf("%d masks from the plain-text sets; want some: %v", plain, c.plain)
			}
			if (class > 0) != c.class {
				t.Errorf("%d masks from byte classes' sets; want some: %v", class, c.class)
			}
			if byStacks != c.byStacks {
				t.Errorf("plainByStacks found a next state: %v, want %v", byStacks, c.byStacks)
			}
		})
	}
}

// checkPlainByStacks: where plainByStacks has an answer for st, it is
// plainByBytes's. It reports whether that answer is a state.
func checkPlainByStacks(t *testing.T, a *Automaton, st int32, text string) bool {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	fast, ok := a.plainByStacks(st)
	slow := a.plainByBytes(st)
	if ok && fast != slow {
		t.Fatalf("after %q: plainByStacks %d, plainByBytes %d", text, fast, slow)
	}
	return ok && fast >= 0
}

// FuzzMaskPlain: for any grammar and any text it reaches, the mask (and
// the mask under a budget of the state's own distance) equals checking
// every token of plainVocab on its own.
func FuzzMaskPlain(f *testing.F) {
	for _, s := range [][2]string{
		{"root ::= json-object\n" + jsonCommon, `{"a":"é`},
		{`root ::= "\"" [^"\\]{0,4} "\""`, `"ab`},
		{`root ::= "\n" c{0,6} "\n"` + "\nc ::= [ -@] | [A-\\U0010FFFF]", "\nx"},
		{`root ::= "'" ([^'] | "é" "x")* "'"`, "'a"},
		{`root ::= "x" [^\x00-\x1F]{2,3} ("\t" | "a")`, "x"},
		{`root ::= [a-zA-Z0-9] [a-zA-Z0-9._+-]{0,30} "@" [a-zA-Z0-9] [a-zA-Z0-9-]{0,30} ("." [a-zA-Z]{2,10}){1,3}`, "ab"},
		{`root ::= [a-z]{3} [a-f0-9]* "."?`, "a"},
		{`root ::= ([a-m] | [n-z]){2,20} ("," | "@")`, "q"},
	} {
		f.Add(s[0], s[1])
	}
	v, pieces, eos := plainVocab()
	f.Fuzz(func(t *testing.T, src, text string) {
		if len(src) > 400 || len(text) > 40 {
			return
		}
		g, err := CompileGBNF(src)
		if err != nil {
			return
		}
		a := NewAutomaton(g, v)
		ref := NewAutomaton(g, &Vocab{})
		a.mu.Lock()
		st := a.start
		for i := 0; i < len(text) && st >= 0; i++ {
			st = a.step(st, text[i])
		}
		if st < 0 {
			a.mu.Unlock()
			return
		}
		d := a.dists[st]
		got, code := a.computeMask(st, -1)
		within, code2 := a.computeMask(st, d)
		a.mu.Unlock()
		if code != 0 || code2 != 0 {
			return // past a bound: nothing to compare
		}
		if want := bruteMask(ref, v, text, -1, eos); !slices.Equal(got, want) {
			t.Fatalf("after %q: mask differs: %s", text, maskDiff(got, want, pieces))
		}
		if want := bruteMask(ref, v, text, d, eos); !slices.Equal(within, want) {
			t.Fatalf("after %q, limit %d: mask differs: %s", text, d, maskDiff(within, want, pieces))
		}
	})
}
