package grammar

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// classSet is the set of bytes lo1-hi1, lo2-hi2, … and the single bytes of
// extra.
func classSet(ranges string, extra string) byteSet {
	var k byteSet
	for i := 0; i+1 < len(ranges); i += 2 {
		k.addRange(ranges[i], ranges[i+1])
	}
	for i := 0; i < len(extra); i++ {
		k.add(extra[i])
	}
	return k
}

// TestBuildClass: a class's tokens by length and the trie nodes it marks
// pure are what checking every token and every node on its own says.
func TestBuildClass(t *testing.T) {
	v, pieces, _ := plainVocab()
	cases := []struct {
		name string
		k    byteSet
		lead int
	}{
		{"letters", classSet("azAZ", ""), -1},
		{"alnum", classSet("azAZ09", ""), -1},
		{"email-local", classSet("azAZ09", "._+-"), -1},
		{"digits", classSet("09", ""), -1},
		{"x", classSet("", "x"), -1},
		{"dash", classSet("", "-"), -1},
		{"é's bytes", classSet("", "\xC3\xA9"), -1},
		{"not-quote", classSet("\x20\x21\x23\xFF", ""), -1},
		{"dot letters", classSet("azAZ", ""), '.'},
		{"at letters", classSet("azAZ", ""), '@'},
		{"space letters", classSet("azAZ", ""), ' '},
		{"a then b and space", classSet("", "b "), 'a'},
		{"dash dashes", classSet("", "-"), '-'},
		{"é then é's bytes", classSet("", "\xA9\xC3"), 0xC3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ct := buildClass(&v.all, &c.k, c.lead, v.n)
			if ct == nil {
				t.Fatal("no class tokens")
			}
			if ct.k != c.k || len(ct.bytes) == 0 {
				t.Fatalf("class %x, bytes %q", ct.k, ct.bytes)
			}
			for _, b := range ct.bytes {
				if !c.k.has(b) {
					t.Fatalf("byte %q outside the class", b)
				}
			}
			start := 0 // the class's bytes start here
			if c.lead >= 0 {
				start = 1
			}
			only := func(p []byte) bool {
				if c.lead >= 0 && (len(p) == 0 || p[0] != byte(c.lead)) {
					return false
				}
				for _, b := range p[start:] {
					if !c.k.has(b) {
						return false
					}
				}
				return len(p) > start
			}
			// The tokens by count of the class's bytes.
			p := &ct.byLen
			most := 0
			for _, piece := range v.piece {
				if only(piece) {
					most = max(most, len(piece)-start)
				}
			}
			if len(p.n) != most+1 {
				t.Fatalf("counts up to %d, want %d", len(p.n)-1, most)
			}
			for l := 1; l <= most; l++ {
				var want []int32
				for id, piece := range v.piece {
					if only(piece) && len(piece)-start == l {
						want = append(want, int32(id))
					}
				}
				if int(p.n[l]) != len(want) {
					t.Errorf("length %d: %d tokens, want %d", l, p.n[l], len(want))
				}
				var got []int32
				if l < len(p.cum) {
					for id := range int32(v.n) {
						if p.cum[l].Has(id) && !p.cum[l-1].Has(id) {
							got = append(got, id)
						}
						if p.cum[l-1].Has(id) && !p.cum[l].Has(id) {
							t.Errorf("cum[%d] lacks %q of cum[%d]", l, pieces[id], l-1)
						}
					}
				} else {
					got = slices.Sorted(slices.Values(p.long[l-len(p.cum)]))
				}
				if !slices.Equal(got, want) {
					t.Errorf("length %d: got %v, want %v", l, got, want)
				}
			}
			if len(p.cum) > classDense+1 {
				t.Errorf("%d bitsets, want at most %d", len(p.cum), classDense+1)
			}
			// A node is pure when every token of its subtree is made of the
			// class's bytes (after the lead), the lead's own node not.
			nodes := v.all.nodes
			pureCount := 0
			for i, nd := range nodes {
				want := true
				for j := i; j < int(nd.next); j++ {
					if tok := nodes[j].tok; tok != int32(v.n) && !only(pieces[tok]) {
						want = false
					}
					for _, id := range v.all.dup[int32(j)] {
						if !only(pieces[id]) {
							want = false
						}
					}
				}
				if got := ct.pureAt(i); got != want {
					t.Fatalf("node %d (%q…): pure %v, want %v", i, pieces[firstTok(nodes, i, v.n)], got, want)
				}
				if want {
					pureCount++
				}
			}
			if pureCount == 0 {
				t.Error("no pure node")
			}
		})
	}
}

// firstTok is a token in the subtree of node i.
func firstTok(nodes []node, i, n int) int32 {
	for j := i; j < int(nodes[i].next); j++ {
		if nodes[j].tok != int32(n) {
			return nodes[j].tok
		}
	}
	return 0
}

// TestBuildClassTooFew: a class with fewer tokens than 1/512 of the
// vocabulary has no sets.
func TestBuildClassTooFew(t *testing.T) {
	var pieces [][]byte
	for i := range 2048 {
		pieces = append(pieces, fmt.Appendf(nil, "<%d>", i))
	}
	pieces = append(pieces, []byte("a"), []byte("ab"), []byte("abc"), []byte("b"))
	v := NewVocab(pieces, nil, nil)
	cases := []struct {
		k    byteSet
		want bool
	}{
		{classSet("az", ""), true},   // 4 ≥ 2052/512
		{classSet("", "ab"), false},  // a, ab, b: 3 < 4
		{classSet("", "a"), false},   // a
		{classSet("", "xyz"), false}, // none
		{classSet("09", "<>"), true}, // all the <n>
	}
	for _, c := range cases {
		if got := v.classTokens(&c.k, -1) != nil; got != c.want {
			t.Errorf("class %x: sets %v, want %v", c.k, got, c.want)
		}
	}
}

// TestClassParts: which states take their class's tokens, and which
// their lead classes' tokens, from the sets, and which cannot (a class
// split on the way, no class).
func TestClassParts(t *testing.T) {
	v, _, _ := plainVocab()
	const email = `root ::= [a-zA-Z0-9] [a-zA-Z0-9._+-]{0,30} "@" [a-zA-Z0-9] [a-zA-Z0-9-]{0,30} ("." [a-zA-Z]{2,10}){1,3}`
	cases := []struct {
		src, text string
		class     byteSet // the state's class (classOf)
		own       bool    // its tokens come from the sets
		leads     string  // the first bytes whose lead class's tokens come from the sets
	}{
		{email, "", classSet("azAZ09", ""), true, ""},
		{email, "a", classSet("azAZ09", "._+-"), true, "@"},
		{email, "a.b-c_d+e123456789012345678901", classSet("azAZ09", "._+-"), true, "@"},
		{email, "a@b", classSet("azAZ09", "-"), true, "."},
		{email, "a@b.c", classSet("azAZ", ""), true, ""},
		{email, "a@b.cd", classSet("azAZ", ""), true, "."},
		// [a-z] after three letters is split: [a-f] goes on, [g-z] dies.
		{`root ::= [a-z]{3} [a-f0-9]*`, "", classSet("az", ""), false, ""},
		{`root ::= [a-z]{3} [a-f0-9]*`, "ab", classSet("az", ""), false, ""},
		{`root ::= [a-z]{3} [a-f0-9]*`, "abc", classSet("af09", ""), true, ""},
		// Two alternatives take different halves to one state: the
		// class is one half (the first of equal size).
		{`root ::= ([a-m] | [n-z]) "!"`, "", classSet("am", ""), true, ""},
		// One byte alone is no class; what follows it may be.
		{`root ::= "x" [a-z]`, "", byteSet{}, false, "x"},
		{`root ::= "x" | "y"`, "", byteSet{}, false, ""},
		{`root ::= "." [a-z]+`, "", byteSet{}, false, "."},
		{`root ::= "." [a-z]{2} [a-f]*`, "", byteSet{}, false, ""},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%.40s/%q", c.src, c.text), func(t *testing.T) {
			a := NewAutomaton(mustGBNF(t, c.src), v)
			a.mu.Lock()
			defer a.mu.Unlock()
			st := a.start
			for i := 0; i < len(c.text) && st >= 0; i++ {
				st = a.step(st, c.text[i])
			}
			if st < 0 {
				t.Fatalf("text leaves the language: %d", st)
			}
			k, ok := a.classOf(st)
			if ok != (c.class != byteSet{}) || ok && k != c.class {
				t.Errorf("class %x (%v), want %x", k, ok, c.class)
			}
			m := make(Mask, (v.n+63)/64+1)
			if _, _, code := a.classParts(st, maxDist, m); code != 0 {
				t.Fatalf("code %d", code)
			}
			own := a.states[st].class
			if got := own != nil && a.skips[own.bytes[0]] == own; got != c.own {
				t.Errorf("own class's sets used: %v, want %v", got, c.own)
			}
			var leads []byte
			for b, ct := range a.skips {
				if ct != nil && ct != own {
					leads = append(leads, byte(b))
					if ct.k == (byteSet{}) || ct.off == 0 {
						t.Errorf("lead %q: class %x, nodes from %d", byte(b), ct.k, ct.off)
					}
				}
			}
			if string(leads) != c.leads {
				t.Errorf("lead classes' sets used for %q, want %q", leads, c.leads)
			}
			if !c.own && c.leads == "" && m.Count() != 0 {
				t.Errorf("mask touched: %d tokens", m.Count())
			}
		})
	}
}

// TestClassCacheBound: past maxClassBytes (or maxClassEntries
// entries) the cache starts again, and what it gives stays what a fresh
// vocabulary gives.
func TestClassCacheBound(t *testing.T) {
	v, pieces, _ := plainVocab()
	fresh, _, _ := plainVocab()
	for i := range maxClassEntries + 10 {
		k := classSet("az", "")
		k.add(byte(i))
		k.add(byte(i * 7))
		got := v.classTokens(&k, i%3-1)
		v.classes.mu.Lock()
		size, entries := v.classes.bytes, len(v.classes.m)
		want := 0
		for _, ct := range v.classes.m {
			if ct != nil {
				want += ct.size()
			}
		}
		v.classes.mu.Unlock()
		if size != want || size > maxClassBytes || entries > maxClassEntries {
			t.Fatalf("after %d classes: %d bytes (sum %d), %d entries", i+1, size, want, entries)
		}
		fresh := buildClass(&fresh.all, &k, i%3-1, fresh.n)
		if (got == nil) != (fresh == nil) || got != nil && (!slices.Equal(got.pure, fresh.pure) || !slices.Equal(got.byLen.n, fresh.byLen.n)) {
			t.Fatalf("class %x differs from a fresh build", k)
		}
		if again := v.classTokens(&k, i%3-1); again != got {
			t.Fatalf("class %x: not kept", k)
		}
	}
	_ = pieces
}

// TestClassesConcurrent: automata of different grammars sharing one
// vocabulary (and its classes, built as they ask) on several goroutines
// give the masks each gives alone (-race).
func TestClassesConcurrent(t *testing.T) {
	srcs := []string{
		`root ::= [a-zA-Z0-9] [a-zA-Z0-9._+-]{0,30} "@" [a-z]{2,6}`,
		`root ::= [a-z]{3} [a-f0-9]* "."`,
		`root ::= [0-9]{5} | [A-Z]{2} "-" [0-9]+`,
		`root ::= ([a-m] | [n-z])+ "!"`,
	}
	v, pieces, _ := plainVocab()
	run := func(v *Vocab, src string, seed uint64) []Mask {
		a := NewAutomaton(mustGBNF(t, src), v)
		m := a.NewMatcher()
		var out []Mask
		rng := seed
		for step := 0; step < 20 && !m.Done(); step++ {
			mask := m.Mask()
			out = append(out, slices.Clone(mask))
			rng = rng*6364136223846793005 + 1442695040888963407
			id := pickAllowed(mask, rng>>20)
			if id < 0 || v.piece[id] == nil {
				break
			}
			if err := m.Accept(id); err != nil {
				t.Error(err)
				break
			}
		}
		return out
	}
	var want [][]Mask
	for i, src := range srcs {
		alone, _, _ := plainVocab()
		want = append(want, run(alone, src, uint64(i+1)))
	}
	var wg sync.WaitGroup
	got := make([][]Mask, len(srcs))
	for i, src := range srcs {
		wg.Go(func() { got[i] = run(v, src, uint64(i+1)) })
	}
	wg.Wait()
	for i := range srcs {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("%s: %d steps, want %d", srcs[i], len(got[i]), len(want[i]))
		}
		for s := range got[i] {
			if !slices.Equal(got[i][s], want[i][s]) {
				t.Fatalf("%s, step %d: %s", srcs[i], s, maskDiff(got[i][s], want[i][s], pieces))
			}
		}
	}
}

// TestLeadRoots: the first bytes where lead classes are tried are those
// of at least 1/64 of the usable tokens.
func TestLeadRoots(t *testing.T) {
	v, _, _ := plainVocab()
	var count [256]int
	for _, p := range v.piece {
		if p != nil {
			count[p[0]]++
		}
	}
	var want []byte
	for b, n := range count {
		if n > 0 && n >= v.n/64 {
			want = append(want, byte(b))
		}
	}
	if !slices.Equal(v.leadRoots, want) || len(want) < 3 {
		t.Errorf("lead roots %q, want %q", v.leadRoots, want)
	}
}
