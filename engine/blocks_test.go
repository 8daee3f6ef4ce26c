package engine

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// checkBook fails when a blockCache's counts disagree with its blocks:
// used + cached + free = total, the used blocks are those
// held, the cached ones the unheld entries (all on the lru list), the
// free ones neither.
func checkBook(t *testing.T, c *blockCache) {
	t.Helper()
	used, cached := 0, 0
	onList := map[*blockNode]bool{}
	for n := c.lru.next; n != &c.lru; n = n.next {
		onList[n] = true
	}
	for id := range c.next {
		switch {
		case c.ref[id] < 0:
			t.Fatalf("block %d held %d times", id, c.ref[id])
		case c.ref[id] > 0:
			used++
			if onList[c.node[id]] {
				t.Errorf("block %d is held and on the lru list", id)
			}
		case c.node[id] != nil:
			cached++
			if !onList[c.node[id]] {
				t.Errorf("block %d is an unheld entry off the lru list", id)
			}
		case !slices.Contains(c.free, id):
			t.Errorf("block %d is neither held, cached nor free", id)
		}
	}
	free := int(int32(c.total)-c.next) + len(c.free)
	if used != c.used || cached != c.cached || len(onList) != cached || used+cached+free != c.total || c.freeCount() != free {
		t.Fatalf("book: %d used (%d counted), %d cached (%d counted, %d on the list), %d free, of %d",
			used, c.used, cached, c.cached, len(onList), free, c.total)
	}
}

// seqOf is a sequence's part in the unit tests: its table and its prompt.
type seqOf struct {
	table  []int32
	prompt []int32
	reg    int
}

// admitTo does what the engine's admission does with the cache: the
// matched entries held, fresh blocks for the rest (want in all), the
// partial match's rows "copied".
func admitTo(t *testing.T, c *blockCache, prompt []int32, want int) (*seqOf, int, bool) {
	t.Helper()
	full, part, k := c.match(prompt, len(prompt)-1)
	if c.available(append(slices.Clone(full), part)...) < want-len(full) {
		return nil, 0, false
	}
	for _, n := range full {
		c.hold(n)
	}
	if part != nil {
		c.hold(part)
	}
	fresh, ok := c.take(want - len(full))
	if !ok {
		t.Fatalf("take(%d) failed after available said yes", want-len(full))
	}
	if part != nil {
		c.drop([]int32{part.id})
	}
	s := &seqOf{prompt: prompt, reg: len(full)}
	for _, n := range full {
		s.table = append(s.table, n.id)
	}
	s.table = append(s.table, fresh...)
	checkBook(t, c)
	return s, len(full)*c.blockLen + k, true
}

// fill registers the sequence's full prompt blocks (rows: prompt rows
// computed), as the engine's registerRows does.
func fill(t *testing.T, c *blockCache, s *seqOf, rows int) {
	t.Helper()
	L := c.blockLen
	for ; (s.reg+1)*L <= rows; s.reg++ {
		var parent *blockNode
		if s.reg > 0 {
			parent = c.node[s.table[s.reg-1]]
		}
		if n, dup := c.register(s.table[s.reg], parent, s.prompt[s.reg*L:(s.reg+1)*L]); n == nil {
			if dup == nil {
				return
			}
			c.hold(dup)
			c.drop(s.table[s.reg : s.reg+1])
			s.table[s.reg] = dup.id
		}
	}
	checkBook(t, c)
}

// end is releasePaged: full blocks, the partial end, every block dropped.
func end(t *testing.T, c *blockCache, s *seqOf, rows int) {
	t.Helper()
	fill(t, c, s, rows)
	L := c.blockLen
	if j, k := rows/L, rows%L; k > 0 && s.reg == j && c.node[s.table[j]] == nil {
		var parent *blockNode
		if j > 0 {
			parent = c.node[s.table[j-1]]
		}
		c.addPartial(s.table[j], parent, s.prompt[j*L:j*L+k])
	}
	c.drop(s.table)
	checkBook(t, c)
}

func seqPrompt(n, salt int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32((i*7 + salt*13 + 1) % 50)
	}
	return p
}

// TestBlockCacheReuse: a prompt's full blocks and partial end, left by
// an ended sequence, are found again by any prompt that starts with the
// same tokens: the full blocks shared, the rows of the partly matching
// block after them copied; never the prompt's last token; nothing for a
// prompt that differs in its first token.
func TestBlockCacheReuse(t *testing.T) {
	c := newBlockCache(64, 4)
	base := seqPrompt(18, 1) // 4 full blocks and 2 rows
	s, start, _ := admitTo(t, c, base, 6)
	if start != 0 {
		t.Fatalf("an empty cache gave %d positions", start)
	}
	end(t, c, s, len(base))
	if c.used != 0 || c.cached != 5 {
		t.Fatalf("after the first: %d used, %d cached; want 0 and 5 (4 full blocks and the partial end)", c.used, c.cached)
	}
	other := slices.Clone(base)
	other[0]++
	cases := []struct {
		name   string
		prompt []int32
		start  int // positions taken from the cache
		shared int // blocks shared
	}{
		{"same prompt: all but its last token", base, 17, 4},
		{"longer", append(slices.Clone(base), 1, 2, 3), 18, 4},
		{"diverges inside block 2", append(slices.Clone(base[:10]), 49, 48), 10, 2},
		{"diverges at a block's end", append(slices.Clone(base[:8]), 49, 48), 8, 2},
		{"shorter than a block", base[:3], 2, 0},
		{"first token differs", other, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			full, part, k := c.match(tc.prompt, len(tc.prompt)-1)
			if got := len(full)*4 + k; got != tc.start || len(full) != tc.shared || (k > 0) != (part != nil) {
				t.Fatalf("match: %d full blocks and %d rows of a partial one (%v), want %d positions, %d blocks", len(full), k, part != nil, tc.start, tc.shared)
			}
			for i, n := range full {
				if !slices.Equal(n.tokens, tc.prompt[i*4:(i+1)*4]) {
					t.Errorf("block %d holds %v, the prompt %v", i, n.tokens, tc.prompt[i*4:(i+1)*4])
				}
			}
			if part != nil && !slices.Equal(part.tokens[:k], tc.prompt[len(full)*4:len(full)*4+k]) {
				t.Errorf("partial block %v for %v", part.tokens[:k], tc.prompt[len(full)*4:])
			}
		})
	}
}

// TestBlockCacheCollision: an entry whose hash a different block of
// tokens (or the same tokens after another parent) gives is never
// taken for it, and a block whose hash is taken is not registered.
func TestBlockCacheCollision(t *testing.T) {
	c := newBlockCache(32, 4)
	c.hashFn = func(uint64, []int32) uint64 { return 42 } // every block collides
	a := []int32{1, 2, 3, 4, 5, 6, 7, 8, 9}
	s, _, _ := admitTo(t, c, a, 3)
	end(t, c, s, len(a))
	if c.cached != 1 {
		t.Fatalf("%d cached, want block 0 alone (block 1's hash is block 0's: the chain stops there)", c.cached)
	}
	b := []int32{1, 2, 3, 9, 5, 6, 7, 8, 9} // differs in block 0, same hash
	full, part, k := c.match(b, len(b)-1)
	if len(full) != 0 || k != 3 || part == nil || !slices.Equal(part.tokens, a[:4]) {
		t.Fatalf("a colliding block: %d shared, %d copied; want 0 shared and the 3 rows block 0 starts with", len(full), k)
	}
	full, _, _ = c.match(a, len(a)-1)
	if len(full) != 1 {
		t.Fatalf("the registered chain: %d blocks found, want 1", len(full))
	}
}

// TestBlockCacheEviction: when blocks are needed, the least recently used
// unheld entries go first, and of blocks given back together the deepest
// of a chain before its parents; held entries are never evicted, and an
// entry's eviction takes the entries under it.
func TestBlockCacheEviction(t *testing.T) {
	c := newBlockCache(10, 2)
	a := seqPrompt(6, 1) // 3 full blocks
	b := seqPrompt(4, 2) // 2 full blocks
	sa, _, _ := admitTo(t, c, append(slices.Clone(a), 0), 4)
	end(t, c, sa, len(a)) // a's 3 blocks cached (the 4th free: its rows none)
	sb, _, _ := admitTo(t, c, append(slices.Clone(b), 0), 3)
	end(t, c, sb, len(b)) // then b's 2
	if c.cached != 5 || c.freeCount() != 5 {
		t.Fatalf("%d cached, %d free; want 5 and 5", c.cached, c.freeCount())
	}
	order := func() (ids []int32) {
		for n := c.lru.next; n != &c.lru; n = n.next {
			ids = append(ids, n.id)
		}
		return ids
	}
	want := []int32{sa.table[2], sa.table[1], sa.table[0], sb.table[1], sb.table[0]}
	if got := order(); !slices.Equal(got, want) {
		t.Fatalf("lru order %v, want %v (a's chain deepest first, then b's)", got, want)
	}
	// A request that shares a's first block holds it: it is not
	// evicted, and goes to the end of the list when given back.
	sc, start, ok := admitTo(t, c, append(slices.Clone(a[:2]), 9, 9, 9), 3)
	if !ok || start != 2 {
		t.Fatalf("admitted %v with %d positions cached, want 2", ok, start)
	}
	// 2 fresh blocks came from the free ones; 3 more need evictions:
	// a's block 2, then its block 1 (its block 0 is held), then b's
	// block 1; b's block 0 stays.
	ids, ok := c.take(6)
	if !ok {
		t.Fatal("take(6) failed with 3 free and 4 evictable")
	}
	checkBook(t, c)
	entries := func(s *seqOf) (in []bool) {
		for _, id := range s.table[:s.reg] {
			in = append(in, c.node[id] != nil)
		}
		return in
	}
	if ea, eb := entries(sa), entries(sb); c.evicted != 3 || !slices.Equal(ea, []bool{true, false, false}) || !slices.Equal(eb, []bool{true, false}) {
		t.Errorf("%d evicted, entries left of a %v, of b %v; want 3, a's first block and b's", c.evicted, ea, eb)
	}
	if _, ok := c.take(2); ok {
		t.Error("take(2) succeeded with 1 block evictable")
	}
	checkBook(t, c)
	c.drop(ids)
	end(t, c, sc, 2)
	if c.used != 0 || c.cached != 2 {
		t.Errorf("afterwards: %d used, %d cached; want 0 and 2 (the first blocks of a and b)", c.used, c.cached)
	}
}

// TestBlockCacheRandom: random admissions (sharing starts), growth,
// registration, ends with and without caching, Score's blocks: the book
// adds up after every operation, every entry found holds the tokens
// asked for, and when everything has ended every block is free or
// cached.
func TestBlockCacheRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := newBlockCache(40, 4)
	bases := [][]int32{seqPrompt(40, 1), seqPrompt(40, 2)}
	var live []*seqOf
	var scoring []int32
	for range 3000 {
		switch op := rng.IntN(10); {
		case op < 4: // admit
			p := slices.Clone(bases[rng.IntN(2)][:1+rng.IntN(30)])
			for range rng.IntN(3) {
				p = append(p, int32(rng.IntN(50)))
			}
			want := (len(p)+3)/4 + 1
			s, start, ok := admitTo(t, c, p, want)
			if !ok {
				continue
			}
			if !slices.Equal(p[:start], s.prompt[:start]) || start >= len(p) {
				t.Fatalf("admitted %v from position %d", p, start)
			}
			for i := range s.reg {
				if !slices.Equal(c.node[s.table[i]].tokens, p[i*4:(i+1)*4]) {
					t.Fatalf("shared block %d holds %v for %v", i, c.node[s.table[i]].tokens, p[i*4:(i+1)*4])
				}
			}
			live = append(live, s)
		case op < 6 && len(live) > 0: // prompt rows computed
			s := live[rng.IntN(len(live))]
			fill(t, c, s, len(s.prompt))
		case op < 7 && len(live) > 0: // grow
			s := live[rng.IntN(len(live))]
			if ids, ok := c.take(1); ok {
				s.table = append(s.table, ids...)
			}
			checkBook(t, c)
		case op < 9 && len(live) > 0: // end
			i := rng.IntN(len(live))
			s := live[i]
			live = slices.Delete(live, i, i+1)
			if rng.IntN(4) == 0 {
				c.drop(s.table) // failed: nothing more cached
				checkBook(t, c)
			} else {
				end(t, c, s, rng.IntN(len(s.prompt)+1))
			}
		default: // Score: blocks held, no entries
			if scoring != nil {
				c.drop(scoring)
				scoring = nil
			} else {
				scoring, _ = c.take(1 + rng.IntN(8))
			}
			checkBook(t, c)
		}
	}
	for _, s := range live {
		end(t, c, s, len(s.prompt))
	}
	c.drop(scoring)
	checkBook(t, c)
	if c.used != 0 || c.cached+c.freeCount() != c.total || c.evicted == 0 {
		t.Errorf("afterwards: %d used, %d cached, %d free of %d, %d evicted", c.used, c.cached, c.freeCount(), c.total, c.evicted)
	}
	c.clear()
	checkBook(t, c)
	if c.freeCount() != c.total {
		t.Errorf("after clear: %d free of %d", c.freeCount(), c.total)
	}
}
