package grammar

import (
	"errors"
	"strings"
	"testing"
)

func mustGBNF(t testing.TB, src string) *Grammar {
	t.Helper()
	g, err := CompileGBNF(src)
	if err != nil {
		t.Fatalf("CompileGBNF: %v\n%s", err, src)
	}
	return g
}

func TestGBNFMatch(t *testing.T) {
	cases := []struct {
		name, src string
		yes, no   []string
	}{
		{"literal", `root ::= "ab"`, []string{"ab"}, []string{"", "a", "abc"}},
		{"alt-rep", "root ::= \"a\" [b-d]+ (\"x\" | \"yz\")? num\nnum ::= [0-9]{1,3}",
			[]string{"ab1", "abcdx12", "abyz999"}, []string{"a1", "abx", "ab1234", "abyz"}},
		{"negated-unicode", `root ::= [^"\\]* "é" .`, []string{"héé", "é日", "xé\x01"}, []string{"é", `"é.`}},
		{"escapes", `root ::= "\x41\u00e9\n\t\\" [\x30-\x31]`, []string{"Aé\n\t\\0", "Aé\n\t\\1"}, []string{"Aé\n\t\\2"}},
		{"counts", `root ::= "a"{2} "b"{,2} "c"{1,}`, []string{"aac", "aabbccc", "aabc"}, []string{"ac", "aabbbc", "aab"}},
		{"multiline", "root ::= a\n  | b # comment\na ::= \"x\"\n  \"y\"\nb ::= \"z\"", []string{"xy", "z"}, []string{"x", "xyz"}},
		{"arith", arithGBNF, []string{"1", "(1+2)*3", "12-(4/2)"}, []string{"1+", "()", "1++2"}},
		{"list", listGBNF, []string{"- a\n", "- ab\n- c\n"}, []string{"", "- \n", "-a\n"}},
		{"json", "root ::= json-value\n" + jsonCommon, []string{`{"a":[1,2.5e3,true,null,"x\u00e9"]}`, `[]`, `"\n"`, `-0.5`},
			[]string{`{"a"}`, `01`, `[1,]`, `"a`, "\"\x01\""}},
		{"utf8-4byte", `root ::= [\U0001F600-\U0001F64F]+`, []string{"😀", "😀🙏"}, []string{"☺", "\xF0\x9F\x98"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := mustGBNF(t, c.src)
			for _, s := range c.yes {
				if !g.MatchString(s) {
					t.Errorf("%q should match", s)
				}
			}
			for _, s := range c.no {
				if g.MatchString(s) {
					t.Errorf("%q should not match", s)
				}
			}
		})
	}
}

const arithGBNF = `root ::= expr
expr ::= term (("+" | "-") term)*
term ::= factor (("*" | "/") factor)*
factor ::= [0-9]{1,3} | "(" expr ")"
`

const listGBNF = `root ::= item{1,5}
item ::= "- " [a-z]{1,8} "\n"
`

func TestGBNFErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{`root ::= "a`, "line 1, column 10: unterminated string literal"},
		{"root ::= \"a\" (\n b", "line 1, column 14: unclosed group"},
		{"root ::= x", `rule "x" is used but never defined`},
		{`a ::= "x"`, `no rule named "root"`},
		{"root ::= [a-", "unterminated character class"},
		{"root ::= [z-a]", "reversed"},
		{"root ::= \"a\"{3,1}", "below the minimum"},
		{"root ::= \"a\"{99999}", "above 10000"},
		{"root ::= x\nx ::= x \"a\" | \"b\"", "left-recursive"},
		{"root ::= x\nx ::= x \"a\"", "language is empty"},
		{"root ::= []", "language is empty"},
		{`root ::= "\q"`, `unknown escape \q`},
		{"root ::= \"a\"\nroot ::= \"b\"", "defined twice"},
		{"root ::= \"a\" ::=", "unexpected"},
		{"root := \"a\"", "expected ::="},
	}
	for _, c := range cases {
		_, err := CompileGBNF(c.src)
		var ge *Error
		if !errors.As(err, &ge) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CompileGBNF(%q) = %v, want an *Error containing %q", c.src, err, c.want)
		}
	}
}

func FuzzGBNF(f *testing.F) {
	for _, s := range []string{arithGBNF, listGBNF, "root ::= json-value\n" + jsonCommon, `root ::= [^a-z]{2,5} "x"*`, "root ::= (a | b)?\na ::= \"a\"+\nb ::= [\\u0100-\\U0010FFFF]"} {
		f.Add(s, "1+2")
	}
	f.Fuzz(func(t *testing.T, src, input string) {
		if len(src) > 2000 {
			return
		}
		g, err := CompileGBNF(src)
		if err != nil {
			return
		}
		if len(input) > 200 {
			input = input[:200]
		}
		_ = g.MatchString(input)
		// Following a byte at a time must agree with MatchString.
		a := NewAutomaton(g, &Vocab{})
		a.mu.Lock()
		st := a.start
		for i := 0; i < len(input) && st >= 0; i++ {
			st = a.step(st, input[i])
		}
		a.mu.Unlock()
	})
}

// toyVocab is a byte-level vocabulary: every byte, some words and pieces
// that cross JSON's structure, and an EOS.
func toyVocab() (*Vocab, [][]byte) {
	var pieces [][]byte
	for b := range 256 {
		pieces = append(pieces, []byte{byte(b)})
	}
	for _, w := range []string{`{"`, `":`, `"}`, `", "`, "true", "false", "null", "ab", "abc", `\n`, `\u00`, "12", "-1", "1.", "e+", "é", "\xC3", "\xA9", "[1,", "]}", " ", "  ", "\n  ", "ab", "- a\n", "(1+"} {
		pieces = append(pieces, []byte(w))
	}
	pieces = append(pieces, []byte("<|eos|>"))
	eos := int32(len(pieces) - 1)
	v := NewVocab(pieces, func(id int32) bool { return id != eos }, []int32{eos})
	return v, pieces
}

// TestMaskMatchesBruteForce compares the trie walk with checking every
// token on its own, along random paths through several grammars.
func TestMaskMatchesBruteForce(t *testing.T) {
	v, pieces := toyVocab()
	eos := int32(len(pieces) - 1)
	for _, src := range []string{arithGBNF, listGBNF, "root ::= json-object\n" + jsonCommon} {
		g := mustGBNF(t, src)
		a := NewAutomaton(g, v)
		ref := NewAutomaton(g, &Vocab{}) // byte by byte, no trie
		walk := func(s string) int32 {
			ref.mu.Lock()
			defer ref.mu.Unlock()
			st := ref.start
			for i := 0; i < len(s) && st >= 0; i++ {
				st = ref.step(st, s[i])
			}
			return st
		}
		prefixOK := func(s string) bool { return walk(s) >= 0 }
		match := func(s string) bool { st := walk(s); return st >= 0 && ref.states[st].accept }
		for seed := range 20 {
			m := a.NewMatcher()
			text := ""
			rng := uint64(seed*7919 + 1)
			for step := 0; step < 40; step++ {
				mask := m.Mask()
				var allowed []int32
				for id := range int32(len(pieces)) {
					want := id != eos && prefixOK(text+string(pieces[id]))
					if id == eos {
						want = match(text)
					}
					if mask.Has(id) != want || m.Allowed(id) != want {
						t.Fatalf("%q after %q: token %q mask %v Allowed %v, want %v", src[:10], text, pieces[id], mask.Has(id), m.Allowed(id), want)
					}
					if want {
						allowed = append(allowed, id)
					}
				}
				if len(allowed) == 0 {
					t.Fatalf("no token allowed after %q", text)
				}
				rng = rng*6364136223846793005 + 1442695040888963407
				id := allowed[(rng>>33)%uint64(len(allowed))]
				if id == eos {
					break
				}
				if err := m.Accept(id); err != nil {
					t.Fatal(err)
				}
				text += string(pieces[id])
				if m.Complete() != match(text) {
					t.Fatalf("Complete after %q = %v", text, m.Complete())
				}
			}
		}
	}
}

func TestAcceptRefuses(t *testing.T) {
	v, pieces := toyVocab()
	g := mustGBNF(t, `root ::= "ab"`)
	m := NewAutomaton(g, v).NewMatcher()
	if err := m.Accept('x'); err == nil || !m.Dead() {
		t.Fatalf("Accept(x) = %v, dead %v", err, m.Dead())
	}
	m = NewAutomaton(g, v).NewMatcher()
	for id, p := range pieces {
		if string(p) == "ab" {
			if err := m.Accept(int32(id)); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if !m.Done() || !m.Complete() {
		t.Fatalf("after ab: done %v complete %v", m.Done(), m.Complete())
	}
}

func TestTooAmbiguous(t *testing.T) {
	// Exponentially many parses of a run of a's: bounded, reported.
	g := mustGBNF(t, `root ::= x*
x ::= "a" | "aa" | "aaa" | y
y ::= "a"+`)
	v, _ := toyVocab()
	a := NewAutomaton(g, v)
	m := a.NewMatcher()
	for range 200 {
		if m.Accept('a') != nil {
			break
		}
	}
	_ = m.Mask()
}

// TestBudgetKeepsEnding: in a complete state whose every continuation is
// too long for the budget, the budget leaves only the end-of-generation
// token (a complete answer ends rather than being cut mid-continuation).
func TestBudgetKeepsEnding(t *testing.T) {
	v, pieces := toyVocab()
	eos := int32(len(pieces) - 1)
	a := NewAutomaton(mustGBNF(t, `root ::= "yes" | "yes, sir"`), v)
	m := a.NewMatcher()
	for _, c := range "yes" {
		if err := m.Accept(int32(c)); err != nil {
			t.Fatal(err)
		}
	}
	for budget := 1; budget <= 4; budget++ { // ", sir": 5 more tokens at one byte each
		mask := m.MaskWithin(budget)
		if !mask.Has(eos) || mask.Has(',') {
			t.Errorf("after %q with %d tokens left: end-of-generation allowed %v, ',' allowed %v; want only the end", "yes", budget, mask.Has(eos), mask.Has(','))
		}
	}
	if mask := m.MaskWithin(5); !mask.Has(eos) || !mask.Has(',') {
		t.Errorf("with 5 tokens left both the end and ',' fit: %v %v", mask.Has(eos), mask.Has(','))
	}
}

// TestBudget: under a token budget the mask keeps only tokens after which
// the text can still be completed, so random walks of at most the budget
// always end complete.
func TestBudget(t *testing.T) {
	v, pieces := toyVocab()
	eos := int32(len(pieces) - 1)
	g := mustGBNF(t, "root ::= json-object\n"+jsonCommon)
	a := NewAutomaton(g, v)
	for seed := range 50 {
		m := a.NewMatcher()
		rng := uint64(seed)
		const budget = 12
		text := ""
		for left := budget; left > 0; left-- {
			mask := m.MaskWithin(left)
			var allowed []int32
			for id := range int32(len(pieces)) {
				if mask.Has(id) != m.AllowedWithin(id, left) {
					t.Fatalf("after %q: MaskWithin and AllowedWithin disagree on %q", text, pieces[id])
				}
				if mask.Has(id) {
					allowed = append(allowed, id)
				}
			}
			rng = rng*6364136223846793005 + 1442695040888963407
			id := allowed[(rng>>33)%uint64(len(allowed))]
			if id == eos {
				break
			}
			if err := m.Accept(id); err != nil {
				t.Fatal(err)
			}
			text += string(pieces[id])
		}
		if !m.Complete() {
			t.Fatalf("seed %d: %q is not complete after %d tokens", seed, text, budget)
		}
	}
}
