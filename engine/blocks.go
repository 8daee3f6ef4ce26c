package engine

import (
	"encoding/binary"
	"hash/maphash"
	"slices"
)

// blockCache is the engine's book of a paged backend's KV blocks (block
// ids 0 … total−1 of one backend.BlockPool): which blocks are free, how
// many sequences hold each, and the prefix cache — blocks of prompt rows
// kept after their sequence ends, found again by the tokens they hold.
//
// A block of the cache is an entry (blockNode) under the entry of the
// block before it in its prompt (its parent; none for a prompt's first
// block). A full entry holds blockLen prompt rows and is found by a hash
// chain: the hash of its parent's chain value and its tokens, checked
// against the entry's parent and tokens, so that a collision never gives
// a block of other rows. A partial entry holds fewer (the end of a prompt
// whose sequence ended): its rows are copied, never shared, by a prompt
// that starts with its tokens; so is the start of a full entry a prompt
// shares only in part.
//
// Held blocks (ref > 0) are used; unheld entries are cached, on a list
// in the order they were last held (the least recently used are evicted
// first when blocks are needed; blocks given back together go deepest
// first, so a chain loses its end before its start); what neither holds
// is free. used + cached + free = total, always. Not safe for
// concurrent use (the engine's mu guards it).
type blockCache struct {
	blockLen int
	total    int
	seed     maphash.Seed
	hashFn   func(parent uint64, tokens []int32) uint64 // tests set it to force collisions

	next    int32        // ids from next on were never handed out (free)
	free    []int32      // ids given back, reused first
	ref     []int32      // [next] sequences holding each block
	node    []*blockNode // [next] each block's cache entry (nil: none)
	byHash  map[uint64]*blockNode
	roots   kids      // the entries of prompts' first blocks
	lru     blockNode // sentinel of the unheld entries, least recently used first
	used    int       // blocks held
	cached  int       // entries not held
	evicted int64     // entries evicted to make room
}

// blockNode is a cache entry: block id holds the prompt rows of tokens
// after parent's.
type blockNode struct {
	id         int32
	hash       uint64     // chain value (full entries)
	parent     *blockNode // nil: a prompt's first block
	tokens     []int32    // blockLen tokens (full) or fewer (partial)
	children   kids       // the entries after this one
	prev, next *blockNode // on the lru list while not held
}

func (n *blockNode) full(blockLen int) bool { return len(n.tokens) == blockLen }

// kids are the entries after one entry (or the first blocks), by their
// first token: a prompt is compared only with those that start like it.
type kids map[int32][]*blockNode

func (k *kids) add(n *blockNode) {
	if *k == nil {
		*k = kids{}
	}
	(*k)[n.tokens[0]] = append((*k)[n.tokens[0]], n)
}

func (k kids) del(n *blockNode) {
	t := n.tokens[0]
	if l := slices.DeleteFunc(k[t], func(x *blockNode) bool { return x == n }); len(l) > 0 {
		k[t] = l
	} else {
		delete(k, t)
	}
}

// any is one of the entries (nil when there are none).
func (k kids) any() *blockNode {
	for _, l := range k {
		return l[len(l)-1]
	}
	return nil
}

func newBlockCache(total, blockLen int) *blockCache {
	c := &blockCache{blockLen: blockLen, total: total, seed: maphash.MakeSeed(), byHash: map[uint64]*blockNode{}}
	c.lru.prev, c.lru.next = &c.lru, &c.lru
	return c
}

// freeCount is the blocks neither held nor cached.
func (c *blockCache) freeCount() int { return c.total - c.used - c.cached }

// chainHash is the chain value of a full block of tokens after parent.
func (c *blockCache) chainHash(parent *blockNode, tokens []int32) uint64 {
	var p uint64
	if parent != nil {
		p = parent.hash
	}
	if c.hashFn != nil {
		return c.hashFn(p, tokens)
	}
	var buf [8 + 4*64]byte
	b := binary.LittleEndian.AppendUint64(buf[:0], p)
	var h maphash.Hash
	h.SetSeed(c.seed)
	for _, t := range tokens {
		b = binary.LittleEndian.AppendUint32(b, uint32(t))
		if len(b) == cap(buf) {
			h.Write(b)
			b = buf[:0]
		}
	}
	h.Write(b)
	return h.Sum64()
}

// match finds the cached rows of prompt's first limit positions: the
// chain of full entries that hold its first len(full)·blockLen tokens
// (shared as they are), then the entry under the last of them (or a
// first block) whose start holds the most of the following tokens, k of
// them (copied: 0 < k < blockLen, or part nil and k 0 when none does).
func (c *blockCache) match(prompt []int32, limit int) (full []*blockNode, part *blockNode, k int) {
	L := c.blockLen
	limit = min(limit, len(prompt))
	var parent *blockNode
	for (len(full)+1)*L <= limit {
		toks := prompt[len(full)*L : (len(full)+1)*L]
		n := c.byHash[c.chainHash(parent, toks)]
		if n == nil || n.parent != parent || !slices.Equal(n.tokens, toks) {
			break
		}
		full = append(full, n)
		parent = n
	}
	rest := prompt[len(full)*L : limit]
	if len(rest) == 0 {
		return full, nil, 0
	}
	for _, n := range c.siblings(parent)[rest[0]] {
		j := commonPrefix(n.tokens, rest)
		if j > k {
			part, k = n, j
		}
	}
	return full, part, min(k, L-1)
}

// commonPrefix is the length of the longest common start of a and b.
func commonPrefix(a, b []int32) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// available is the blocks take could hand out once the entries of keep
// are held (they are then not evictable).
func (c *blockCache) available(keep ...*blockNode) int {
	n := c.freeCount() + c.cached
	for _, x := range keep {
		if x != nil && c.ref[x.id] == 0 {
			n-- // (keep holds no entry twice: a chain and what follows it)
		}
	}
	return n
}

// hold counts one more holder of an entry's block (a cached entry is
// then used).
func (c *blockCache) hold(n *blockNode) {
	if c.ref[n.id] == 0 {
		c.unlink(n)
		c.cached--
		c.used++
	}
	c.ref[n.id]++
}

// take hands out k free blocks, each held once, evicting the least
// recently used entries where the free blocks do not do. False (nothing
// changed) when even evicting every entry would not do.
func (c *blockCache) take(k int) ([]int32, bool) {
	if k > c.freeCount()+c.cached {
		return nil, false
	}
	if !c.makeFree(k) {
		return nil, false
	}
	ids := make([]int32, k)
	for i := range ids {
		var id int32
		if n := len(c.free); n > 0 {
			id, c.free = c.free[n-1], c.free[:n-1]
		} else {
			id = c.next
			c.next++
			c.ref = append(c.ref, 0)
			c.node = append(c.node, nil)
		}
		c.ref[id] = 1
		ids[i] = id
	}
	c.used += k
	return ids, true
}

// makeFree evicts entries, least recently used first, until k blocks are
// free. False when there are too few even so (what was evicted stays so).
func (c *blockCache) makeFree(k int) bool {
	for c.freeCount() < k {
		if c.lru.next == &c.lru {
			return false
		}
		c.evicted += int64(c.remove(c.lru.next))
	}
	return true
}

// drop gives back one hold of each block of a sequence's table, the last
// first: an unheld entry is cached (the deeper ones of a chain ahead of
// their parents on the lru list), an unheld block without one is free.
func (c *blockCache) drop(ids []int32) {
	for i := len(ids) - 1; i >= 0; i-- {
		id := ids[i]
		if c.ref[id]--; c.ref[id] > 0 {
			continue
		}
		c.used--
		if n := c.node[id]; n != nil {
			c.pushBack(n)
			c.cached++
		} else {
			c.free = append(c.free, id)
		}
	}
}

// register makes held block id the full entry of tokens after parent
// (nil: a first block), held by its sequence until it drops it. When an
// entry of the same tokens after the same parent exists it returns that
// one instead (dup) and registers nothing; nil, nil when another entry has
// the same hash (a collision: nothing registered).
func (c *blockCache) register(id int32, parent *blockNode, tokens []int32) (n, dup *blockNode) {
	h := c.chainHash(parent, tokens)
	if x := c.byHash[h]; x != nil {
		if x.parent == parent && slices.Equal(x.tokens, tokens) {
			return nil, x
		}
		return nil, nil
	}
	n = &blockNode{id: id, hash: h, parent: parent, tokens: slices.Clone(tokens)}
	c.byHash[h] = n
	c.addChild(n)
	return n, nil
}

// addPartial makes held block id the partial entry of tokens (fewer than
// a block) after parent, unless an entry after parent starts with them
// already (it would copy the same rows). Partial entries whose tokens
// start this one's are evicted: they hold nothing more.
func (c *blockCache) addPartial(id int32, parent *blockNode, tokens []int32) bool {
	for _, x := range c.siblings(parent)[tokens[0]] {
		if commonPrefix(x.tokens, tokens) == len(tokens) {
			return false
		}
	}
	c.addChild(&blockNode{id: id, parent: parent, tokens: slices.Clone(tokens)})
	return true
}

func (c *blockCache) siblings(parent *blockNode) kids {
	if parent == nil {
		return c.roots
	}
	return parent.children
}

// addChild records n under its parent and its block's entry, evicting
// the unheld partial siblings whose tokens start n's.
func (c *blockCache) addChild(n *blockNode) {
	for _, x := range slices.Clone(c.siblings(n.parent)[n.tokens[0]]) {
		if !x.full(c.blockLen) && c.ref[x.id] == 0 && commonPrefix(x.tokens, n.tokens) == len(x.tokens) {
			c.remove(x)
		}
	}
	if n.parent == nil {
		c.roots.add(n)
	} else {
		n.parent.children.add(n)
	}
	c.node[n.id] = n
}

// remove forgets an entry, and the entries under it (they could not be
// found any more); an unheld one's block is free, a held one's stays with
// its holders and is free when they drop it. It returns the blocks freed.
func (c *blockCache) remove(n *blockNode) (freed int) {
	for x := n.children.any(); x != nil; x = n.children.any() {
		freed += c.remove(x)
	}
	c.siblings(n.parent).del(n)
	if c.byHash[n.hash] == n {
		delete(c.byHash, n.hash)
	}
	c.node[n.id] = nil
	if c.ref[n.id] == 0 {
		c.unlink(n)
		c.cached--
		c.free = append(c.free, n.id)
		freed++
	}
	return freed
}

// clear forgets every entry (the engine closes).
func (c *blockCache) clear() {
	for x := c.roots.any(); x != nil; x = c.roots.any() {
		c.remove(x)
	}
}

func (c *blockCache) pushBack(n *blockNode) {
	n.prev, n.next = c.lru.prev, &c.lru
	c.lru.prev.next = n
	c.lru.prev = n
}

func (c *blockCache) unlink(n *blockNode) {
	n.prev.next, n.next.prev = n.next, n.prev
	n.prev, n.next = nil, nil
}
