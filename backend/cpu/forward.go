// Package cpu runs the decoder described by package model on the CPU, in
// pure Go: matrix products directly on the quantized weights (activations
// converted to each weight type's vec-dot type, as ggml does), a float32 KV
// cache, and a fixed pool of worker goroutines parallel over output rows.
package cpu

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"worker-orcd/backend"
	"worker-orcd/model"
	"worker-orcd/quant"
)

// ErrBadInput reports a request the forward pass cannot run (empty batch,
// token id out of range, cache full).
var ErrBadInput = errors.New("cpu: bad forward input")

// Backend runs one model. It is not safe for concurrent use: one Forward at
// a time (the engine batches sequences into one call instead).
type Backend struct {
	closeOnce sync.Once
	m         *model.Model
	c         *model.Config
	w         *model.Weights
	pool      *pool
	inv       []float64        // RoPE inverse frequencies, rope_dim/2 of them (model.RopeInvFreq)
	Dump      backend.DumpFunc // optional tap on intermediate tensors

	actBytes, wsBytes atomic.Int64 // scratch sizes, for Memory
	kv                *kvBudget    // what the KV caches may hold together

	// ReferenceMatmul makes every matrix product a float64 sum over
	// dequantized weights and float32 activations: slow, for checking other
	// paths (the GPU's, the quantized dot products) against it.
	ReferenceMatmul bool

	// scratch, grown to the largest batch seen
	x, h, q, k, v, att, gate, up []float32
	act                          map[quant.Type][]byte

	// the current matrix product and attention step, and the pool's loop
	// bodies over them (bound once: no allocation per step)
	mm                                mmArgs
	at                                attArgs
	mmQuantFn, mmRowsFn, attFn, gluFn func(lo, hi int)
	scores                            sync.Pool // *[]float32 attention scratch
}

// New prepares a backend for m with the given number of worker goroutines
// (0 = GOMAXPROCS). Its KV caches together may hold what
// WORKER_CPU_KV_BUDGET says, else DefaultKVBudget (see SetKVBudget).
func New(m *model.Model, threads int) *Backend {
	c := &m.Config
	b := &Backend{m: m, c: c, w: m.Weights, pool: newPool(threads), act: map[quant.Type][]byte{}, kv: newKVBudget()}
	b.mmQuantFn, b.mmRowsFn, b.attFn, b.gluFn = b.mmQuant, b.mmRows, b.attend, b.glu
	b.inv = m.RopeInvFreq()
	return b
}

// Close stops the worker goroutines.
func (b *Backend) Close() error {
	b.closeOnce.Do(b.pool.close) // a second Close is a no-op
	return nil
}

// Name is "cpu".
func (b *Backend) Name() string { return "cpu" }

// Config returns the model's hyperparameters.
func (b *Backend) Config() *model.Config { return b.c }

// NewKVCache allocates a cache for up to maxLen positions of one sequence.
// A cache that would take the caches alive beyond the backend's budget is
// not allocated: the error is an *AllocationError (backend.ErrOutOfMemory).
func (b *Backend) NewKVCache(maxLen int) (backend.KVCache, error) {
	if maxLen <= 0 {
		return nil, fmt.Errorf("%w: KV cache of %d positions", ErrBadInput, maxLen)
	}
	kv, err := newBudgetedKVCache(b.c, maxLen, b.kv)
	if err != nil {
		return nil, err
	}
	return kv, nil
}

// Memory reports the mapped weights, the KV caches alive, and the scratch
// buffers. KV caches are counted by the engine, which owns them.
// It is safe to call during Forward (it reads counters Forward updates).
func (b *Backend) Memory() backend.Memory {
	return backend.Memory{Weights: b.w.Bytes(), Activations: b.actBytes.Load(), Workspace: b.wsBytes.Load()}
}

// account records the sizes of the scratch buffers for Memory.
func (b *Backend) account() {
	var act int64
	for _, s := range [][]float32{b.x, b.h, b.q, b.k, b.v, b.att, b.gate, b.up} {
		act += int64(cap(s)) * 4
	}
	var ws int64
	for _, a := range b.act {
		ws += int64(cap(a))
	}
	b.actBytes.Store(act)
	b.wsBytes.Store(ws)
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// rowInfo locates one token of the batch.
type rowInfo struct {
	kv  *kvStore
	pos int
}

// Forward runs one step over a batch of sequences: every sequence's new
// tokens go through all layers together (one matrix product per weight for
// the whole batch), their keys and values are appended to their caches, and
// each sequence's Logits are filled.
func (b *Backend) Forward(batch []*backend.Seq) error { return b.forward(batch, false) }

// ForwardEmbed is Forward where the sequences with Embed set get the final
// hidden state of each of their tokens (the output norm's result) in
// Hidden, and no logits (backend.Embedder).
func (b *Backend) ForwardEmbed(batch []*backend.Seq) error { return b.forward(batch, true) }

func (b *Backend) forward(batch []*backend.Seq, embed bool) error {
	c := b.c
	rows := make([]rowInfo, 0, 16)
	kvs := make([]*kvStore, len(batch))
	for si, s := range batch {
		if s == nil {
			break // CheckBatch reports it
		}
		kv, err := b.store(s.KV)
		if err != nil {
			return fmt.Errorf("%w: sequence %d: %w", ErrBadInput, si, err)
		}
		kvs[si] = kv
	}
	if err := backend.CheckBatch(batch, c.VocabSize); err != nil {
		return fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	for si, s := range batch {
		kv := kvs[si]
		for i := range s.Tokens {
			rows = append(rows, rowInfo{kv: kv, pos: kv.n + i})
		}
	}
	T, d := len(rows), c.NEmbd
	b.x = grow(b.x, T*d)
	b.h = grow(b.h, T*d)
	b.q = grow(b.q, T*c.QDim())
	b.k = grow(b.k, T*c.KVDim())
	b.v = grow(b.v, T*c.KVDim())
	b.att = grow(b.att, T*c.QDim())
	b.gate = grow(b.gate, T*c.NFF)
	b.up = grow(b.up, T*c.NFF)
	defer b.account() // after the step: matmul may grow the workspace

	// Embedding gather.
	t := 0
	for _, s := range batch {
		for _, id := range s.Tokens {
			emb := &b.w.TokenEmbd
			quant.DequantizeRow(emb.Type, emb.Row(int(id)), b.x[t*d:(t+1)*d])
			t++
		}
	}
	b.dump("inp_embd", T, d, b.x)

	for l := range b.w.Layers {
		ly := &b.w.Layers[l]
		b.rmsNorm(b.h, b.x, ly.AttnNorm, T, d)
		b.dumpL("attn_norm", l, T, d, b.h)
		b.matmulGroup(b.h, T, &ly.Q, b.q, &ly.K, b.k, &ly.V, b.v)
		addBias(b.q, ly.QBias, T)
		addBias(b.k, ly.KBias, T)
		addBias(b.v, ly.VBias, T)
		b.dumpL("Qcur", l, T, c.QDim(), b.q)
		b.dumpL("Kcur", l, T, c.KVDim(), b.k)
		b.dumpL("Vcur", l, T, c.KVDim(), b.v)
		b.rope(rows, b.q, c.NHead)
		b.rope(rows, b.k, c.NHeadKV)
		// Append this step's keys and values to each sequence's cache:
		// row pos % KVBlockLen of its block pos / KVBlockLen.
		kvd := c.KVDim()
		for r, ri := range rows {
			k, v := ri.kv.layerRows(ri.pos>>kvBlockShift, l)
			o := (ri.pos & (KVBlockLen - 1)) * kvd
			copy(k[o:o+kvd], b.k[r*kvd:(r+1)*kvd])
			copy(v[o:o+kvd], b.v[r*kvd:(r+1)*kvd])
		}
		b.attention(rows, l)
		b.dumpL("kqv_out", l, T, c.QDim(), b.att)
		b.matmul(&ly.O, b.att, b.h, T)
		b.dumpL("attn_out", l, T, d, b.h)
		addInPlace(b.x, b.h)
		b.dumpL("ffn_inp", l, T, d, b.x)

		b.rmsNorm(b.h, b.x, ly.FFNNorm, T, d)
		b.dumpL("ffn_norm", l, T, d, b.h)
		b.matmulGroup(b.h, T, &ly.Gate, b.gate, &ly.Up, b.up, nil, nil)
		// Element by element: split over the workers in pieces of 1024.
		b.pool.parallelFor((len(b.gate)+1023)/1024, 4, b.gluFn)
		b.dumpL("ffn_act", l, T, c.NFF, b.gate)
		b.matmul(&ly.Down, b.gate, b.h, T)
		b.dumpL("ffn_out", l, T, d, b.h)
		addInPlace(b.x, b.h)
		b.dumpL("l_out", l, T, d, b.x)
	}
	for si, s := range batch {
		kvs[si].n += len(s.Tokens)
	}

	// Final norm and LM head, only for the rows whose logits are wanted.
	var sel []int
	t = 0
	for _, s := range batch {
		if s.AllLogits || (s.Embed && embed) {
			for i := range s.Tokens {
				sel = append(sel, t+i)
			}
		} else {
			sel = append(sel, t+len(s.Tokens)-1)
		}
		t += len(s.Tokens)
	}
	for i, r := range sel {
		copy(b.h[i*d:(i+1)*d], b.x[r*d:(r+1)*d])
	}
	b.rmsNorm(b.h, b.h, b.w.OutputNorm, len(sel), d)
	b.dump("result_norm", len(sel), d, b.h[:len(sel)*d])
	V := c.VocabSize
	i := 0
	for _, s := range batch {
		n := 1
		if s.AllLogits {
			n = len(s.Tokens)
		}
		if s.Embed && embed {
			n = len(s.Tokens)
			s.Hidden = grow(s.Hidden, n*d)
			copy(s.Hidden, b.h[i*d:(i+n)*d])
			i += n
			continue
		}
		if cap(s.Logits) < n*V {
			s.Logits = make([]float32, n*V)
		}
		s.Logits = s.Logits[:n*V]
		b.matmul(&b.w.Output, b.h[i*d:(i+n)*d], s.Logits, n)
		i += n
	}
	return nil
}

func (b *Backend) dump(name string, rows, cols int, data []float32) {
	if b.Dump != nil {
		b.Dump(name, rows, cols, data[:rows*cols])
	}
}

func (b *Backend) dumpL(name string, layer, rows, cols int, data []float32) {
	if b.Dump != nil {
		b.Dump(fmt.Sprintf("%s-%d", name, layer), rows, cols, data[:rows*cols])
	}
}

// rmsNorm: dst[r] = src[r] / sqrt(mean(src[r]²) + eps) * weight, per row of
// n (dst may alias src). The sum of squares is accumulated in float64.
func (b *Backend) rmsNorm(dst, src, weight []float32, rows, n int) {
	eps := float64(b.c.RMSEps)
	for r := range rows {
		x := src[r*n : (r+1)*n]
		y := dst[r*n : (r+1)*n]
		var ss float64
		for _, v := range x {
			ss += float64(v) * float64(v)
		}
		scale := float32(1 / math.Sqrt(ss/float64(n)+eps))
		for i, v := range x {
			y[i] = v * scale * weight[i]
		}
	}
}

// matmul computes out[t*m.Rows + r] = m.Row(r) · x[t] for the T rows of x
// (each m.Cols wide). Each activation row is converted once to the weight
// type's vec-dot type; then workers take ranges of weight rows and dot each
// with every activation row, so a weight row is read once per batch.
func (b *Backend) matmul(m *model.Matrix, x, out []float32, T int) {
	b.matmulGroup(x, T, m, out, nil, nil, nil, nil)
}

// matmulGroup is matmul for up to three matrices (m2, m3 may be nil) that
// read the same input x: where they share the row length and vec-dot type
// (Q, K and V; gate and up), x is converted once and one parallel loop runs
// over all their rows. Results are those of separate products.
func (b *Backend) matmulGroup(x []float32, T int, m1 *model.Matrix, o1 []float32, m2 *model.Matrix, o2 []float32, m3 *model.Matrix, o3 []float32) {
	type prod struct {
		m   *model.Matrix
		out []float32
	}
	all := [3]prod{{m1, o1}, {m2, o2}, {m3, o3}}
	if b.ReferenceMatmul {
		for _, p := range all {
			if p.m != nil {
				referenceMatmul(p.m, x, p.out, T)
			}
		}
		return
	}
	a := &b.mm
	*a = mmArgs{}
	var rest [3]prod // products that cannot share the first one's input
	for i, p := range all {
		if p.m == nil {
			continue
		}
		if a.k > 0 && (p.m.Cols != a.ms[0].Cols || quant.VecDotType(p.m.Type) != quant.VecDotType(a.ms[0].Type)) {
			rest[i] = p
			continue
		}
		a.ms[a.k], a.outs[a.k] = p.m, p.out
		a.starts[a.k+1] = a.starts[a.k] + p.m.Rows
		a.k++
	}
	if a.k == 0 {
		return
	}
	n := a.ms[0].Cols
	ab := quant.ActivationBytes(a.ms[0].Type, n)
	vt := quant.VecDotType(a.ms[0].Type)
	buf := b.act[vt]
	if cap(buf) < T*ab {
		buf = make([]byte, T*ab)
		b.act[vt] = buf
	}
	a.x, a.buf, a.T, a.n, a.ab = x, buf[:T*ab], T, n, ab
	// The loop bodies are methods reading b.mm, bound once in New: no
	// closure is allocated per product.
	b.pool.parallelFor(T, 1, b.mmQuantFn)
	b.pool.parallelFor(a.starts[a.k], 16, b.mmRowsFn)
	*a = mmArgs{}
	for _, p := range rest {
		if p.m != nil {
			b.matmulGroup(x, T, p.m, p.out, nil, nil, nil, nil)
		}
	}
}

// mmArgs are one group of matrix products' operands (k matrices reading the
// same converted input; rows numbered on from one matrix to the next), for
// the pool's loop bodies.
type mmArgs struct {
	ms       [3]*model.Matrix
	outs     [3][]float32
	starts   [4]int
	k        int
	x        []float32
	buf      []byte
	T, n, ab int
}

// mmQuant converts activation rows [lo, hi) to the weights' vec-dot type.
func (b *Backend) mmQuant(lo, hi int) {
	a := &b.mm
	for t := lo; t < hi; t++ {
		if err := quant.QuantizeActivations(a.ms[0].Type, a.x[t*a.n:(t+1)*a.n], a.buf[t*a.ab:(t+1)*a.ab]); err != nil {
			panic(err) // sizes are fixed by the model: a bug
		}
	}
}

// mmRows computes rows [lo, hi) of the group for every token.
func (b *Backend) mmRows(lo, hi int) {
	a := &b.mm
	for i := range a.k {
		m := a.ms[i]
		l, h := max(lo, a.starts[i])-a.starts[i], min(hi, a.starts[i+1])-a.starts[i]
		// Blocks of rows (~128 KiB, at least 64 rows) small enough to stay
		// in the core's cache while every token's activations pass over
		// them; quant.MatMul takes four or eight tokens at a time over each
		// four rows where it has a tile kernel, and prepares each group of
		// eight tokens once per block.
		blockRows := max(64, (128<<10)/m.RowBytes&^3)
		for r0 := l; r0 < h; r0 += blockRows {
			r1 := min(r0+blockRows, h)
			w := m.Data[r0*m.RowBytes : r1*m.RowBytes]
			quant.MatMul(m.Type, w, m.RowBytes, r1-r0, a.buf, a.ab, a.T, a.n, a.outs[i][r0:], m.Rows)
		}
	}
}

// referenceMatmul is matmul in float64 over dequantized weight rows.
func referenceMatmul(m *model.Matrix, x, out []float32, T int) {
	row := make([]float32, m.Cols)
	for r := range m.Rows {
		quant.DequantizeRow(m.Type, m.Row(r), row)
		for t := range T {
			var s float64
			for i, w := range row {
				s += float64(w) * float64(x[t*m.Cols+i])
			}
			out[t*m.Rows+r] = float32(s)
		}
	}
}

func addBias(x, bias []float32, T int) {
	if bias == nil {
		return
	}
	n := len(bias)
	for t := range T {
		row := x[t*n : (t+1)*n]
		for i, v := range bias {
			row[i] += v
		}
	}
}

func addInPlace(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

// glu runs swiglu (gate = silu(gate) * up, simd.go) on pieces [lo, hi) of 1024 elements of b.gate and b.up.
func (b *Backend) glu(lo, hi int) {
	e := min(hi*1024, len(b.gate))
	swiglu(b.gate[lo*1024:e], b.up[lo*1024:e])
}

// rope rotates the first rope_dim elements of each head of x (heads per
// row) by angle pos·inv[i]. NeoX pairs element i with i+rope_dim/2;
// the normal (Llama) form pairs 2i with 2i+1.
func (b *Backend) rope(rows []rowInfo, x []float32, heads int) {
	c := b.c
	hd, half := c.HeadDim, c.RopeDim/2
	neox := c.Arch.Rope == model.RopeNeoX
	width := heads * hd
	for r, ri := range rows {
		p := float64(ri.pos)
		for i := range half {
			sin, cos := math.Sincos(p * b.inv[i])
			s, co := float32(sin), float32(cos)
			for h := range heads {
				base := r*width + h*hd
				var a, bb int
				if neox {
					a, bb = base+i, base+i+half
				} else {
					a, bb = base+2*i, base+2*i+1
				}
				x0, x1 := x[a], x[bb]
				x[a] = x0*co - x1*s
				x[bb] = x0*s + x1*co
			}
		}
	}
}

// store returns the blocks a sequence's cache reads through: a
// standalone or paged cache of this model on the CPU, the latter of a pool
// of this backend that is still open.
func (b *Backend) store(kv backend.KVCache) (*kvStore, error) {
	var s *kvStore
	switch c := kv.(type) {
	case *KVCache:
		s = &c.kvStore
	case *PagedKVCache:
		if c.pool.be != b {
			return nil, errors.New("its paged KV cache is of a block pool of another backend")
		}
		if err := c.usable(); err != nil {
			return nil, err
		}
		s = &c.kvStore
	default:
		return nil, fmt.Errorf("it has a %T, not a CPU KV cache", kv)
	}
	if s.layers != b.c.NLayer || s.kvDim != b.c.KVDim() {
		return nil, fmt.Errorf("its KV cache is of another model (%d layers of width %d, this one has %d of %d)", s.layers, s.kvDim, b.c.NLayer, b.c.KVDim())
	}
	return s, nil
}

var _ backend.Backend = (*Backend)(nil)
