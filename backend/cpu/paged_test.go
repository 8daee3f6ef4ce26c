package cpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/internal/testmodel"
	"worker-orcd/model"
)

// pagedModels are the micro models the paged-cache tests run: GQA with
// biases (qwen2), interleaved RoPE (llama), and phi3 with a sliding window
// of 20 positions, so that a window starts inside a block.
func pagedModels() []struct {
	name string
	spec testmodel.Spec
} {
	window := testmodel.MustPreset("phi3-micro")
	window.SlidingWindow = 20
	return []struct {
		name string
		spec testmodel.Spec
	}{
		{"qwen2-micro", testmodel.MustPreset("qwen2-micro")},
		{"llama-micro", testmodel.MustPreset("llama-micro")},
		{"phi3-micro-window20", window},
	}
}

// scrambled returns n distinct ids of a pool of blocks blocks, in no
// order (never consecutive by construction of the permutation's use).
func scrambled(n, blocks int, seed uint64) []int32 {
	perm := rand.New(rand.NewPCG(seed, 15)).Perm(blocks)
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(perm[i])
	}
	return ids
}

// tokens returns n token ids of the model's vocabulary, from salt.
func tokens(m *model.Model, n, salt int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32((i*131 + salt*17 + 3) % m.Config.VocabSize)
	}
	return ids
}

// forward runs one sequence's step and returns a copy of its logits (every
// row for a prompt chunk, the last for a decode step).
func forward(t *testing.T, b *Backend, kv backend.KVCache, toks []int32, prefill bool) []float32 {
	t.Helper()
	s := &backend.Seq{Tokens: toks, KV: kv, AllLogits: prefill, Prefill: prefill}
	if err := b.Forward([]*backend.Seq{s}); err != nil {
		t.Fatal(err)
	}
	return slices.Clone(s.Logits)
}

// sameBits reports the first element where got and want differ bit for
// bit.
func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d logits, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: logit %d is %g (%#x), want %g (%#x)", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

// TestPagedForwardMatchesStandalone: the same prompt (in chunks that start
// and end inside blocks) and decode steps through a standalone cache of the
// whole length, a standalone cache that grows by Reserve to exactly what
// each step needs (its last block partly allocated, then replaced), and a
// paged cache whose table names scrambled, non-consecutive blocks of a pool
// and grows a block at a time (SetTable) give bit-identical logits.
func TestPagedForwardMatchesStandalone(t *testing.T) {
	chunks := []int{5, 16, 11, 1, 23} // positions 0-4, 5-20, 21-31, 32, 33-55
	const decode = 20
	total := decode
	for _, n := range chunks {
		total += n
	}
	for _, mc := range pagedModels() {
		t.Run(mc.name, func(t *testing.T) {
			m := openSpec(t, mc.spec)
			b := New(m, 2)
			defer b.Close()
			whole, err := b.NewKVCache(total)
			if err != nil {
				t.Fatal(err)
			}
			defer whole.Free()
			grown, err := b.NewKVCache(3)
			if err != nil {
				t.Fatal(err)
			}
			defer grown.Free()
			bp, err := b.NewBlockPool(64)
			if err != nil {
				t.Fatal(err)
			}
			defer bp.Close()
			paged := bp.NewCache()
			table := scrambled((total+KVBlockLen-1)/KVBlockLen, bp.Blocks(), 1)

			var steps [][]int32
			for i, n := range chunks {
				steps = append(steps, tokens(m, n, i))
			}
			for i := range decode {
				steps = append(steps, []int32{int32((i*53 + 7) % m.Config.VocabSize)})
			}
			for i, toks := range steps {
				prefill := i < len(chunks)
				need := whole.Len() + len(toks)
				if err := grown.Reserve(need); err != nil {
					t.Fatal(err)
				}
				if blocks := (need + KVBlockLen - 1) / KVBlockLen; blocks > len(paged.Table()) {
					if err := paged.SetTable(table[:blocks], paged.Len()); err != nil {
						t.Fatal(err)
					}
				}
				want := forward(t, b, whole, toks, prefill)
				sameBits(t, fmt.Sprintf("step %d (positions %d-%d), grown by Reserve", i, need-len(toks), need-1), forward(t, b, grown, toks, prefill), want)
				sameBits(t, fmt.Sprintf("step %d (positions %d-%d), paged %v", i, need-len(toks), need-1, paged.Table()), forward(t, b, paged, toks, prefill), want)
			}
			if grown.Cap() != total || grown.Bytes() != whole.Bytes() {
				t.Errorf("grown cache: cap %d, %d bytes; want %d, %d", grown.Cap(), grown.Bytes(), total, whole.Bytes())
			}
		})
	}
}

// TestPagedSharedBlocks: two paged caches whose prompts start alike read
// the same blocks for their common start — two full blocks shared, the
// partly filled third copied (CopyBlock) — and diverge after it; their
// prompt rows and the decode steps they then take together in one batch
// give the logits of separate standalone computations, bit for bit. A
// standalone cache that copies the paged cache's prefix (CopyPrefix) reads
// the same rows.
func TestPagedSharedBlocks(t *testing.T) {
	const common, decode = 40, 9 // the common start: blocks 0 and 1, 8 positions of block 2
	for _, mc := range pagedModels() {
		t.Run(mc.name, func(t *testing.T) {
			m := openSpec(t, mc.spec)
			b := New(m, 2)
			defer b.Close()
			start := tokens(m, common, 1)
			promptA := append(slices.Clone(start), tokens(m, 13, 2)...)
			promptB := append(slices.Clone(start), tokens(m, 7, 3)...)

			refA, refB := NewKVCache(&m.Config, 64), NewKVCache(&m.Config, 64)
			wantA := forward(t, b, refA, promptA, true)
			wantB := forward(t, b, refB, promptB, true)

			bp, err := b.NewBlockPool(32)
			if err != nil {
				t.Fatal(err)
			}
			defer bp.Close()
			a, c := bp.NewCache(), bp.NewCache()
			if err := a.SetTable([]int32{30, 4, 17, 9}, 0); err != nil {
				t.Fatal(err)
			}
			sameBits(t, "A's prompt", forward(t, b, a, promptA, true), wantA)
			// B: A's first two blocks, its own copy of A's third (8 of A's
			// 16 positions there are the common start), its own fourth.
			if err := c.SetTable([]int32{30, 4, 11, 2}, common); err != nil {
				t.Fatal(err)
			}
			if err := bp.CopyBlock(11, 17, common%KVBlockLen); err != nil {
				t.Fatal(err)
			}
			V := m.Config.VocabSize
			sameBits(t, "B's prompt after the shared start", forward(t, b, c, promptB[common:], true), wantB[common*V:])

			// Standalone caches (their last blocks partly allocated) taking
			// the paged cache's start, and taking it from one another.
			copied, again := NewKVCache(&m.Config, len(promptB)), NewKVCache(&m.Config, 50)
			if err := copied.CopyPrefix(c, common); err != nil {
				t.Fatal(err)
			}
			if err := again.CopyPrefix(copied, common); err != nil {
				t.Fatal(err)
			}
			sameBits(t, "a standalone copy of B's start", forward(t, b, copied, promptB[common:], true), wantB[common*V:])
			sameBits(t, "a copy of that copy", forward(t, b, again, promptB[common:], true), wantB[common*V:])

			for i := range decode {
				ta, tb := []int32{int32(i*11 + 5)}, []int32{int32(i*29 + 1)}
				ea := forward(t, b, refA, ta, false)
				eb := forward(t, b, refB, tb, false)
				sa := &backend.Seq{Tokens: ta, KV: a}
				sb := &backend.Seq{Tokens: tb, KV: c}
				if err := b.Forward([]*backend.Seq{sa, sb}); err != nil {
					t.Fatal(err)
				}
				sameBits(t, fmt.Sprintf("decode step %d, A", i), sa.Logits, ea)
				sameBits(t, fmt.Sprintf("decode step %d, B", i), sb.Logits, eb)
			}
		})
	}
}

// poolBlock returns layer's key and value rows of a pool's block id.
func poolBlock(p *BlockPool, id int32, layer int) (k, v []float32) {
	s := kvStore{layers: p.layers, kvDim: p.kvDim, blocks: [][]float32{p.block(id)}}
	return s.layerRows(0, layer)
}

// TestBlockPoolCopyBlock: CopyBlock copies the first n positions of every
// layer's keys and values and leaves the destination's other positions as
// they were.
func TestBlockPoolCopyBlock(t *testing.T) {
	m := openMicro(t)
	b := New(m, 1)
	defer b.Close()
	bpi, err := b.NewBlockPool(16)
	if err != nil {
		t.Fatal(err)
	}
	defer bpi.Close()
	bp := bpi.(*BlockPool)
	src, dst := bp.NewCache(), bp.NewCache()
	if err := src.SetTable([]int32{6, 2}, 0); err != nil {
		t.Fatal(err)
	}
	forward(t, b, src, tokens(m, 2*KVBlockLen, 4), true)
	if err := dst.SetTable([]int32{13}, 0); err != nil {
		t.Fatal(err)
	}
	forward(t, b, dst, tokens(m, KVBlockLen, 5), true) // rows to be kept or overwritten
	kvd := m.Config.KVDim()
	for _, c := range []struct {
		from int32
		n    int
	}{{2, 5}, {6, 0}, {6, KVBlockLen}, {2, 1}} {
		var before [][]float32
		for l := range m.Config.NLayer {
			k, v := poolBlock(bp, 13, l)
			before = append(before, slices.Clone(k), slices.Clone(v))
		}
		if err := bp.CopyBlock(13, c.from, c.n); err != nil {
			t.Fatalf("CopyBlock(13, %d, %d): %v", c.from, c.n, err)
		}
		for l := range m.Config.NLayer {
			dk, dv := poolBlock(bp, 13, l)
			sk, sv := poolBlock(bp, c.from, l)
			for j, x := range []struct{ got, src, old []float32 }{{dk, sk, before[2*l]}, {dv, sv, before[2*l+1]}} {
				if !slices.Equal(x.got[:c.n*kvd], x.src[:c.n*kvd]) || !slices.Equal(x.got[c.n*kvd:], x.old[c.n*kvd:]) {
					t.Errorf("CopyBlock(13, %d, %d): layer %d %s: positions < %d not the source's or the rest changed", c.from, c.n, l, []string{"keys", "values"}[j], c.n)
				}
			}
		}
	}
}

// TestBlockPoolMemory: a block takes its memory, counted in the budget,
// the first time a table uses it, never again; Free on a paged cache only
// forgets its table; Close gives the pool's bytes back.
func TestBlockPoolMemory(t *testing.T) {
	m := openMicro(t)
	b := New(m, 1)
	defer b.Close()
	b.SetKVBudget(0)
	blockBytes := kvBytes(m.Config.NLayer, m.Config.KVDim(), KVBlockLen)
	bpi, err := b.NewBlockPool(1000)
	if err != nil {
		t.Fatal(err)
	}
	bp := bpi.(*BlockPool)
	x, y := bp.NewCache(), bp.NewCache()
	steps := []struct {
		name        string
		do          func() error
		blocks      int // the pool holds
		bytesX      int64
		lenX, capX  int
		tableLength int // x's
	}{
		{"nothing used", func() error { return nil }, 0, 0, 0, 0, 0},
		{"x takes blocks 5 and 900", func() error { return x.SetTable([]int32{900, 5}, 20) }, 2, 2 * blockBytes, 20, 32, 2},
		{"y takes 900 again and 3", func() error { return y.SetTable([]int32{900, 3}, 3) }, 3, 2 * blockBytes, 20, 32, 2},
		{"x grows onto 3 and 999", func() error { return x.SetTable([]int32{900, 5, 3, 999}, 40) }, 4, 4 * blockBytes, 40, 64, 4},
		{"x shrinks to one block", func() error { return x.SetTable([]int32{5}, 16) }, 4, blockBytes, 16, 16, 1},
		{"x truncates", func() error { return x.Truncate(7) }, 4, blockBytes, 7, 16, 1},
		{"x is freed: its table only", func() error { x.Free(); return nil }, 4, 0, 0, 0, 0},
		{"x takes the blocks of before again", func() error { return x.SetTable([]int32{999, 900, 5, 3}, 0) }, 4, 4 * blockBytes, 0, 64, 4},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		_, used, _ := b.KVBudget()
		if bp.Bytes() != int64(s.blocks)*blockBytes || used != bp.Bytes() {
			t.Errorf("%s: pool %d bytes, budget used %d; want %d (%d blocks)", s.name, bp.Bytes(), used, int64(s.blocks)*blockBytes, s.blocks)
		}
		if x.Bytes() != s.bytesX || x.Len() != s.lenX || x.Cap() != s.capX || len(x.Table()) != s.tableLength {
			t.Errorf("%s: x holds %d bytes, len %d cap %d, %d blocks; want %d, %d, %d, %d", s.name, x.Bytes(), x.Len(), x.Cap(), len(x.Table()), s.bytesX, s.lenX, s.capX, s.tableLength)
		}
	}
	// The table is a copy.
	tab := []int32{1, 2}
	if err := y.SetTable(tab, 0); err != nil {
		t.Fatal(err)
	}
	tab[0] = 7
	if got := y.Table(); !slices.Equal(got, []int32{1, 2}) {
		t.Errorf("table after the caller changed its slice: %v, want [1 2]", got)
	}
	if err := bp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bp.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, used, _ := b.KVBudget(); used != 0 || bp.Bytes() != 0 {
		t.Errorf("after Close: budget used %d, pool %d bytes; want 0", used, bp.Bytes())
	}
}

// TestBlockPoolBudget: blocks a table uses first beyond the backend's KV
// budget (shared with standalone caches) are refused with an
// *AllocationError matching backend.ErrOutOfMemory that names them, and
// the cache, the pool and the budget are unchanged.
func TestBlockPoolBudget(t *testing.T) {
	m := openMicro(t)
	b := New(m, 1)
	defer b.Close()
	blockBytes := kvBytes(m.Config.NLayer, m.Config.KVDim(), KVBlockLen)
	b.SetKVBudget(4 * blockBytes)
	bp, err := b.NewBlockPool(100)
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	x, y := bp.NewCache(), bp.NewCache()
	if err := x.SetTable([]int32{10, 11}, 0); err != nil {
		t.Fatal(err)
	}
	forward(t, b, x, tokens(m, 20, 1), true)
	standalone, err := b.NewKVCache(KVBlockLen) // a block's worth: 3 of 4 used
	if err != nil {
		t.Fatal(err)
	}
	if err := y.SetTable([]int32{50}, 1); err != nil {
		t.Fatal(err)
	}
	if _, used, _ := b.KVBudget(); used != 4*blockBytes {
		t.Fatalf("budget used %d, want %d", used, 4*blockBytes)
	}
	keys, _ := contiguous(&x.(*PagedKVCache).kvStore, 1, 20)
	cases := []struct {
		name  string
		cache backend.PagedCache
		table []int32
		want  AllocationError
	}{
		{"one more block", x, []int32{10, 11, 12}, AllocationError{Bytes: blockBytes, Positions: KVBlockLen, InUse: 4 * blockBytes, Budget: 4 * blockBytes, Blocks: 1}},
		{"three more, reusing the used ones", y, []int32{50, 11, 1, 2, 3}, AllocationError{Bytes: 3 * blockBytes, Positions: 3 * KVBlockLen, InUse: 4 * blockBytes, Budget: 4 * blockBytes, Blocks: 3}},
	}
	for _, c := range cases {
		table, n := slices.Clone(c.cache.Table()), c.cache.Len()
		err := c.cache.SetTable(c.table, n)
		var ae *AllocationError
		if !errors.As(err, &ae) || !errors.Is(err, backend.ErrOutOfMemory) {
			t.Fatalf("%s: %v, want an *AllocationError matching backend.ErrOutOfMemory", c.name, err)
		}
		got := *ae
		got.Source = ""
		if got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
		for _, part := range []string{fmt.Sprintf("AllocationFailed: %d bytes for %d more KV blocks", c.want.Bytes, c.want.Blocks), fmt.Sprint("budget ", c.want.Budget), EnvKVBudget} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("%s: message %q lacks %q", c.name, err, part)
			}
		}
		if !slices.Equal(c.cache.Table(), table) || c.cache.Len() != n || bp.Bytes() != 3*blockBytes {
			t.Errorf("%s: after the refusal the table is %v (len %d), the pool %d bytes; want %v (len %d), %d", c.name, c.cache.Table(), c.cache.Len(), bp.Bytes(), table, n, 3*blockBytes)
		}
		if _, used, _ := b.KVBudget(); used != 4*blockBytes {
			t.Errorf("%s: budget used %d, want %d", c.name, used, 4*blockBytes)
		}
	}
	if after, _ := contiguous(&x.(*PagedKVCache).kvStore, 1, 20); !slices.Equal(after, keys) {
		t.Error("x's keys changed")
	}
	// The standalone cache's bytes make room for one block.
	standalone.Free()
	if err := x.SetTable([]int32{10, 11, 12}, 20); err != nil {
		t.Errorf("a block after the standalone cache was freed: %v", err)
	}
}

// TestPagedBadInputs: bad arguments to the pool, its caches and Forward
// over them are errors that say what is wrong, never panics, and leave the
// cache as it was.
func TestPagedBadInputs(t *testing.T) {
	m := openMicro(t)
	b := New(m, 1)
	defer b.Close()
	other := New(openSpec(t, testmodel.MustPreset("llama-micro")), 1) // same shape, another backend
	defer other.Close()
	bigger := New(openSpec(t, testmodel.MustPreset("phi3-micro")), 1) // KV width 64, not 32
	defer bigger.Close()
	bpi, err := b.NewBlockPool(8)
	if err != nil {
		t.Fatal(err)
	}
	defer bpi.Close()
	bp := bpi.(*BlockPool)
	x := bp.NewCache()
	if err := x.SetTable([]int32{1, 3}, 4); err != nil {
		t.Fatal(err)
	}
	otherPool, _ := other.NewBlockPool(8)
	defer otherPool.Close()
	foreign := otherPool.NewCache()
	if err := foreign.SetTable([]int32{0}, 0); err != nil {
		t.Fatal(err)
	}
	closedPool, _ := b.NewBlockPool(8)
	stale := closedPool.NewCache()
	if err := stale.SetTable([]int32{0}, 0); err != nil {
		t.Fatal(err)
	}
	closedPool.Close()
	wrongModel, _ := bigger.NewKVCache(8)
	seq := func(kv backend.KVCache, n int) error {
		return b.Forward([]*backend.Seq{{Tokens: tokens(m, n, 0), KV: kv}})
	}

	cases := []struct {
		name string
		do   func() error
		is   error
		want string
	}{
		{"a pool of no blocks", func() error { _, err := b.NewBlockPool(0); return err }, ErrBadBlocks, "a pool of 0 KV blocks"},
		{"a pool of more blocks than int32 ids", func() error { _, err := b.NewBlockPool(1 << 40); return err }, ErrBadBlocks, "block ids are int32"},
		{"a negative id", func() error { return x.SetTable([]int32{1, -1}, 0) }, ErrBadBlocks, "table entry 1 is block -1, outside the pool's blocks 0 to 7"},
		{"an id past the pool", func() error { return x.SetTable([]int32{8}, 0) }, ErrBadBlocks, "table entry 0 is block 8"},
		{"an id twice", func() error { return x.SetTable([]int32{4, 1, 5, 1}, 0) }, ErrBadBlocks, "names block 1 twice (entries 1 and 3)"},
		{"more positions than the table holds", func() error { return x.SetTable([]int32{1, 3}, 33) }, ErrBadBlocks, "a table of 2 blocks holds 32 positions, not 33"},
		{"negative positions", func() error { return x.SetTable([]int32{1}, -1) }, ErrBadBlocks, "not -1"},
		{"reserve beyond the table", func() error { return x.Reserve(33) }, ErrBadBlocks, "give it more blocks with SetTable"},
		{"truncate beyond what it holds", func() error { return x.Truncate(5) }, nil, "truncate KV cache to 5 positions: it holds 4"},
		{"copy a block never used", func() error { return bp.CopyBlock(1, 6, 3) }, ErrBadBlocks, "block 6 was never used"},
		{"copy to a block never used", func() error { return bp.CopyBlock(0, 1, 3) }, ErrBadBlocks, "block 0 was never used"},
		{"copy more than a block", func() error { return bp.CopyBlock(3, 1, 17) }, ErrBadBlocks, "copy 17 positions of block 1 to block 3"},
		{"copy negative positions", func() error { return bp.CopyBlock(3, 1, -1) }, ErrBadBlocks, "copy -1 positions"},
		{"copy a block onto itself", func() error { return bp.CopyBlock(3, 3, 2) }, ErrBadBlocks, "onto itself"},
		{"copy from outside the pool", func() error { return bp.CopyBlock(3, 9, 2) }, ErrBadBlocks, "the source is block 9"},
		{"copy to outside the pool", func() error { return bp.CopyBlock(-2, 1, 2) }, ErrBadBlocks, "the destination is block -2"},
		{"a table on a closed pool", func() error { return stale.SetTable([]int32{0}, 0) }, ErrBadBlocks, "the KV block pool is closed"},
		{"a copy on a closed pool", func() error { return closedPool.CopyBlock(1, 0, 2) }, ErrBadBlocks, "the KV block pool is closed"},
		{"forward beyond the table", func() error { return seq(x, 29) }, ErrBadInput, "needs 33 positions, its KV cache holds 32"},
		{"forward on another backend's pool", func() error { return seq(foreign, 1) }, ErrBadInput, "sequence 0: its paged KV cache is of a block pool of another backend"},
		{"forward on a closed pool", func() error { return seq(stale, 1) }, ErrBadInput, "the KV block pool is closed"},
		{"forward on another model's cache", func() error { return seq(wrongModel, 1) }, ErrBadInput, "its KV cache is of another model (2 layers of width 64, this one has 2 of 32)"},
		{"forward on a cache of no kind", func() error { return seq(nil, 1) }, ErrBadInput, "sequence 0: it has a <nil>, not a CPU KV cache"},
		{"a prefix copied from a closed pool", func() error { kv := NewKVCache(&m.Config, 4); return kv.CopyPrefix(stale, 0) }, ErrBadBlocks, "copy KV prefix: cpu: bad KV block request: the KV block pool is closed"},
		{"a prefix copied from another model", func() error { kv := NewKVCache(&m.Config, 4); return kv.CopyPrefix(wrongModel, 0) }, nil, "not a cache of this model"},
		{"a prefix longer than the paged source", func() error { kv := NewKVCache(&m.Config, 8); return kv.CopyPrefix(x, 5) }, nil, "copy 5 KV positions: the source holds 4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("panic: %v", r)
					}
				}()
				err = c.do()
			}()
			if err == nil || !strings.Contains(err.Error(), c.want) || (c.is != nil && !errors.Is(err, c.is)) {
				t.Errorf("error %v, want one containing %q (matching %v)", err, c.want, c.is)
			}
			if !slices.Equal(x.Table(), []int32{1, 3}) || x.Len() != 4 || x.Cap() != 32 {
				t.Errorf("x after the error: table %v len %d cap %d, want [1 3] 4 32", x.Table(), x.Len(), x.Cap())
			}
		})
	}
	if _, ok := x.(backend.PrefixCopier); ok {
		t.Error("a paged cache offers CopyPrefix (sequences share blocks instead)")
	}
}
