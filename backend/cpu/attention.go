package cpu

import "math"

// attBlock is the positions one pass covers where they are whole KV blocks
// (a multiple of KVBlockLen): the KV head's keys (or values) of those
// blocks are read from memory once and stay in L1 (64 rows × 64 floats =
// 16 KiB at head dim 64) while each query head of the group uses them.
const attBlock = 64

// attention computes, for every row and head, softmax(q·kᵀ/√hd) over the
// sequence's cached positions ≤ the row's own (causal; within the sliding
// window when the model has one) and the weighted sum of the values.
// Query head h reads key/value head h / (n_head/n_head_kv).
//
// One job is the query heads of one row that share a KV head (grouped-query
// attention): they walk its keys and values together, a block of positions
// at a time, instead of each head on its own. When there are fewer
// row × KV head pairs than workers (decode on many cores), a group is split
// into parts so that every worker has one; otherwise each pair's keys and
// values are read by one job only.
func (b *Backend) attention(rows []rowInfo, layer int) {
	c := b.c
	maxPos := 0
	for _, ri := range rows {
		maxPos = max(maxPos, ri.pos+1)
	}
	group := c.NHead / c.NHeadKV
	parts := 1
	if pairs := len(rows) * c.NHeadKV; pairs < b.pool.workers {
		parts = min(group, (b.pool.workers+pairs-1)/pairs)
	}
	per := (group + parts - 1) / parts
	parts = (group + per - 1) / per
	b.at = attArgs{rows: rows, layer: layer, maxPos: maxPos, per: per, parts: parts}
	b.pool.parallelFor(len(rows)*c.NHeadKV*parts, 1, b.attFn)
	b.at = attArgs{}
}

// attArgs are one attention step's operands, for attend.
type attArgs struct {
	rows          []rowInfo
	layer, maxPos int
	per, parts    int // query heads a job, jobs a (row, KV head)
}

// attend computes attention jobs [lo, hi): job = (row·n_head_kv + kv
// head)·parts + part, the part's query heads [h0, h1) of that KV head.
//
// The cache is read through its blocks (a block's key rows, and its value
// rows, are contiguous, kvDim apart) in passes of increasing positions:
// whole blocks up to attBlock positions at a time (dotBlocks, axpyBlocks),
// and on their own the positions before the first block edge (a sliding
// window's start) and after the last one (dotRows, axpyRows). Every
// (head, position) score is one dot8, each head's softmax is the same loop
// over its own scores, and each output element is the axpy sum over
// positions in increasing order (the sum goes through memory between
// passes, which does not round it). So the results are bit-identical to
// one pass per head over all positions of a contiguous cache; only the
// order in which heads and passes are visited changes.
func (b *Backend) attend(lo, hi int) {
	c := b.c
	at := &b.at
	rows, layer := at.rows, at.layer
	hd, kvd, qd := c.HeadDim, c.KVDim(), c.QDim()
	group := c.NHead / c.NHeadKV
	jobsPerRow := c.NHeadKV * at.parts
	rsqrt := float32(1 / math.Sqrt(float64(hd)))
	sp, _ := b.scores.Get().(*[]float32)
	if sp == nil {
		sp = new([]float32)
	}
	if need := at.per * at.maxPos; cap(*sp) < need {
		*sp = make([]float32, need)
	}
	defer b.scores.Put(sp)
	const mask = KVBlockLen - 1
	for job := lo; job < hi; job++ {
		r, kvh, part := job/jobsPerRow, job%jobsPerRow/at.parts, job%at.parts
		h0 := kvh*group + part*at.per
		h1 := min(h0+at.per, (kvh+1)*group)
		ri := rows[r]
		kv := ri.kv
		start := 0
		if c.SlidingWindow > 0 {
			start = max(0, ri.pos-c.SlidingWindow+1)
		}
		end := ri.pos + 1
		n := end - start
		// Offsets in a whole block of the KV head's first key and value.
		koff := 2*layer*KVBlockLen*kvd + kvh*hd
		voff := koff + KVBlockLen*kvd
		q := b.q[r*qd : (r+1)*qd]
		out := b.att[r*qd : (r+1)*qd]
		scores := (*sp)[:(h1-h0)*n] // head h's at [(h-h0)·n, (h-h0+1)·n)
		for p0 := start; p0 < end; {
			var p1 int
			if p0&mask == 0 && p0+KVBlockLen <= end { // whole blocks
				p1 = min(p0+attBlock, end&^mask)
				blocks := kv.blocks[p0>>kvBlockShift : p1>>kvBlockShift]
				for h := h0; h < h1; h++ {
					o := (h-h0)*n - start
					dotBlocks(q[h*hd:(h+1)*hd], blocks, koff, kvd, scores[o+p0:o+p1])
				}
			} else { // part of a block
				p1 = min((p0|mask)+1, end)
				K, _ := kv.layerRows(p0>>kvBlockShift, layer)
				K = K[(p0&mask)*kvd+kvh*hd:]
				for h := h0; h < h1; h++ {
					o := (h-h0)*n - start
					dotRows(q[h*hd:(h+1)*hd], K, kvd, scores[o+p0:o+p1])
				}
			}
			p0 = p1
		}
		softmaxGroup(scores, n, rsqrt)
		clear(out[h0*hd : h1*hd])
		for p0 := start; p0 < end; {
			var p1 int
			if p0&mask == 0 && p0+KVBlockLen <= end {
				p1 = min(p0+attBlock, end&^mask)
				blocks := kv.blocks[p0>>kvBlockShift : p1>>kvBlockShift]
				for h := h0; h < h1; h++ {
					o := (h-h0)*n - start
					axpyBlocks(out[h*hd:(h+1)*hd], blocks, voff, kvd, scores[o+p0:o+p1])
				}
			} else {
				p1 = min((p0|mask)+1, end)
				_, V := kv.layerRows(p0>>kvBlockShift, layer)
				V = V[(p0&mask)*kvd+kvh*hd:]
				for h := h0; h < h1; h++ {
					o := (h-h0)*n - start
					axpyRows(out[h*hd:(h+1)*hd], V, kvd, scores[o+p0:o+p1])
				}
			}
			p0 = p1
		}
	}
}

// softmaxGroup sets each head's scores s (len(sc)/n heads, n scores each)
// to e^(s_i·by − max) / Σ e^(s_j·by − max): expf in float32
// (expShift), the sum in float64 in position order, the quotient as a
// float32 multiply by 1/sum. The sums of up to four heads run in one loop:
// four independent chains of adds hide one another's latency.
func softmaxGroup(sc []float32, n int, by float32) {
	heads := len(sc) / n
	for h := range heads {
		scaleExp(sc[h*n:(h+1)*n], by)
	}
	for h := 0; h < heads; h += 4 {
		var hs [4][]float32
		for i := range hs {
			o := min(h+i, heads-1) * n // past the last head: its scores again, the sum unused
			hs[i] = sc[o : o+n]
		}
		var sums [4]float64
		sums[0], sums[1], sums[2], sums[3] = sum4(hs[0], hs[1], hs[2], hs[3])
		for i := range min(4, heads-h) {
			scale(hs[i], float32(1/sums[i]))
		}
	}
}

// scaleExp sets sc[i] = expf(s_i − max) with s_i = sc[i]·by (rounded to
// float32, as it is stored).
func scaleExp(sc []float32, by float32) {
	scale(sc, by)
	mx := float32(math.Inf(-1))
	for _, s := range sc {
		if s > mx { // a branch that settles (the builtin max also orders NaN and ±0, which expShift does not need)
			mx = s
		}
	}
	expShift(sc, mx) // expf: float32, eight at a time where the CPU has AVX2
}

// sum4 returns the float64 sums of a, b, c and d (len(a) elements each),
// each in index order.
func sum4(a, b, c, d []float32) (sa, sb, sc, sd float64) {
	b, c, d = b[:len(a)], c[:len(a)], d[:len(a)]
	for i, x := range a {
		sa += float64(x)
		sb += float64(b[i])
		sc += float64(c[i])
		sd += float64(d[i])
	}
	return sa, sb, sc, sd
}
