package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"worker-orcd/model"
)

// contiguous returns layer's keys and values of s's first n positions, each
// as one slice (key i of position p at p·kvDim + i): the layout of the CPU
// cache before block tables.
func contiguous(s *kvStore, layer, n int) (K, V []float32) {
	K, V = make([]float32, n*s.kvDim), make([]float32, n*s.kvDim)
	for p := range n {
		k, v := s.layerRows(p/KVBlockLen, layer)
		o := p % KVBlockLen * s.kvDim
		copy(K[p*s.kvDim:(p+1)*s.kvDim], k[o:o+s.kvDim])
		copy(V[p*s.kvDim:(p+1)*s.kvDim], v[o:o+s.kvDim])
	}
	return K, V
}

// fillLayer sets layer's keys and values of every position s's blocks hold
// to random normal values times sd.
func fillLayer(s *kvStore, layer int, rng *rand.Rand, sd float64) {
	for i := range s.blocks {
		k, v := s.layerRows(i, layer)
		for _, x := range [][]float32{k, v} {
			for j := range x {
				x[j] = float32(rng.NormFloat64() * sd)
			}
		}
	}
}

// attendPerHead is attention as it was before the grouped pass and the
// block tables: one job a (row, query head), each head walking all its
// positions of a contiguous cache on its own. The grouped pass through
// the blocks must reproduce it bit for bit.
func attendPerHead(b *Backend, rows []rowInfo, layer int, att []float32) {
	c := b.c
	hd, nh, kvd := c.HeadDim, c.NHead, c.KVDim()
	group := c.NHead / c.NHeadKV
	scale := float32(1 / math.Sqrt(float64(hd)))
	type kv struct{ K, V []float32 }
	flat := map[*kvStore]kv{}
	for _, ri := range rows {
		if _, ok := flat[ri.kv]; !ok {
			K, V := contiguous(ri.kv, layer, ri.kv.maxLen)
			flat[ri.kv] = kv{K, V}
		}
	}
	for job := range len(rows) * nh {
		r, h := job/nh, job%nh
		ri := rows[r]
		kvh := h / group
		q := b.q[r*c.QDim()+h*hd : r*c.QDim()+(h+1)*hd]
		K, V := flat[ri.kv].K, flat[ri.kv].V
		start := 0
		if c.SlidingWindow > 0 {
			start = max(0, ri.pos-c.SlidingWindow+1)
		}
		sc := make([]float32, ri.pos+1-start)
		dotRows(q, K[start*kvd+kvh*hd:], kvd, sc)
		mx := float32(math.Inf(-1))
		for i, s := range sc {
			s *= scale
			sc[i] = s
			if s > mx {
				mx = s
			}
		}
		expShift(sc, mx)
		var sum float64
		for _, e := range sc {
			sum += float64(e)
		}
		inv := float32(1 / sum)
		for i := range sc {
			sc[i] *= inv
		}
		out := att[r*c.QDim()+h*hd : r*c.QDim()+(h+1)*hd]
		clear(out)
		axpyRows(out, V[start*kvd+kvh*hd:], kvd, sc)
	}
}

// The grouped pass (the query heads of a KV head together, a block of
// positions at a time, groups split over the workers) gives bit for bit
// the per-head pass's output over a contiguous cache: GQA ratios 1, 2 and
// 7, head dims with and without a tail, with and without a sliding window,
// decode (one row), prefill (many rows of one sequence) and a batch of two
// sequences, on 1 to 16 workers, with the assembly and the portable Go
// loops, reading standalone caches (whose last block is partly allocated)
// and paged caches whose tables name scrambled blocks of a pool.
func TestAttentionGroupedMatchesPerHead(t *testing.T) {
	type shape struct{ nh, nkv, hd int }
	shapes := []shape{{4, 4, 64}, {4, 2, 64}, {14, 2, 64}, {14, 2, 12}, {6, 3, 20}}
	type batch struct {
		name string
		seqs [][2]int // (first new position, new tokens) per sequence
	}
	batches := []batch{
		{"decode", [][2]int{{199, 1}}},
		{"decode-short", [][2]int{{3, 1}}},
		{"prefill", [][2]int{{0, 150}}},
		{"chunk", [][2]int{{70, 40}}},
		{"two-seqs", [][2]int{{130, 1}, {0, 9}}},
	}
	for _, portable := range []bool{false, true} {
		for _, sh := range shapes {
			for _, window := range []int{0, 50} {
				for _, bt := range batches {
					for _, workers := range []int{1, 2, 5, 16} {
						paged := workers%2 == 0 // half the cases: enough to cover both caches with every shape
						name := fmt.Sprintf("portable=%v/gqa%d-hd%d-nkv%d/window%d/%s/w%d/paged=%v", portable, sh.nh/sh.nkv, sh.hd, sh.nkv, window, bt.name, workers, paged)
						t.Run(name, func(t *testing.T) {
							withPortable(portable, func() {
								checkGroupedAttention(t, &model.Config{NHead: sh.nh, NHeadKV: sh.nkv, HeadDim: sh.hd, SlidingWindow: window}, bt.seqs, workers, paged)
							})
						})
					}
				}
			}
		}
	}
}

func checkGroupedAttention(t *testing.T, c *model.Config, seqs [][2]int, workers int, paged bool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(c.NHead*1000+c.HeadDim), uint64(workers)))
	b := &Backend{c: c, pool: newPool(workers)}
	defer b.pool.close()
	b.attFn = b.attend
	const layer = 1
	kc := &model.Config{NLayer: 2, NHeadKV: c.NHeadKV, HeadDim: c.HeadDim}
	pool := &BlockPool{be: b, layers: kc.NLayer, kvDim: kc.KVDim(), blocks: 1000}
	next := int32(0)
	var rows []rowInfo
	for _, s := range seqs {
		var kv *kvStore
		if paged {
			pc := pool.NewCache().(*PagedKVCache)
			table := make([]int32, (s[0]+s[1]+KVBlockLen-1)/KVBlockLen)
			for i := range table { // ids 7 apart, wrapping around the pool: no order
				table[i] = next * 7 % int32(pool.blocks)
				next++
			}
			if err := pc.SetTable(table, 0); err != nil {
				t.Fatal(err)
			}
			kv = &pc.kvStore
		} else {
			kv = &NewKVCache(kc, s[0]+s[1]).kvStore
		}
		fillLayer(kv, layer, rng, 2)
		for i := range s[1] {
			rows = append(rows, rowInfo{kv: kv, pos: s[0] + i})
		}
	}
	b.q = make([]float32, len(rows)*c.QDim())
	for i := range b.q {
		b.q[i] = float32(rng.NormFloat64() * 3)
	}
	b.att = make([]float32, len(rows)*c.QDim())
	for i := range b.att {
		b.att[i] = float32(math.NaN()) // every element must be written
	}
	want := make([]float32, len(b.att))
	attendPerHead(b, rows, layer, want)
	b.attention(rows, layer)
	for i := range want {
		if math.Float32bits(b.att[i]) != math.Float32bits(want[i]) {
			r, h := i/c.QDim(), i%c.QDim()/c.HeadDim
			t.Fatalf("row %d (pos %d) head %d element %d: grouped %g (%#x), per head %g (%#x)", r, rows[r].pos, h, i%c.HeadDim,
				b.att[i], math.Float32bits(b.att[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

// BenchmarkAttention times attention in the Qwen2.5-0.5B shape (14 query
// heads on 2 KV heads, head dim 64) for all 24 layers of one step, on all
// cores: decode (one row) and prefill (every row of the prompt) at 64 and
// 1 500 positions. The 24 layers' keys and values (37 MB at 1 500
// positions) do not stay in the core's caches from one layer to the next,
// as in a forward pass. MB/s counts each cached key and value once.
func BenchmarkAttention(b *testing.B) {
	c := &model.Config{NHead: 14, NHeadKV: 2, HeadDim: 64}
	const layers = 24
	for _, n := range []int{64, 1500} {
		for _, prefill := range []bool{false, true} {
			name := fmt.Sprintf("pos%d/decode", n)
			if prefill {
				name = fmt.Sprintf("pos%d/prefill", n)
			}
			b.Run(name, func(b *testing.B) {
				rng := rand.New(rand.NewPCG(1, 2))
				be := &Backend{c: c, pool: newPool(0)}
				defer be.pool.close()
				be.attFn = be.attend
				kv := &NewKVCache(&model.Config{NLayer: layers, NHeadKV: c.NHeadKV, HeadDim: c.HeadDim}, n).kvStore
				for l := range layers {
					fillLayer(kv, l, rng, 1)
				}
				rows := []rowInfo{{kv: kv, pos: n - 1}}
				if prefill {
					rows = rows[:0]
					for p := range n {
						rows = append(rows, rowInfo{kv: kv, pos: p})
					}
				}
				be.q = make([]float32, len(rows)*c.QDim())
				for i := range be.q {
					be.q[i] = float32(rng.NormFloat64())
				}
				be.att = make([]float32, len(rows)*c.QDim())
				b.SetBytes(int64(layers * n * 2 * c.KVDim() * 4))
				for b.Loop() {
					for l := range layers {
						be.attention(rows, l)
					}
				}
			})
		}
	}
}
