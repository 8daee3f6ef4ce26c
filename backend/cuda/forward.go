package cuda

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"worker-orcd/backend"
	"worker-orcd/model"
	"worker-orcd/sample"
)

// grow makes the scratch buffers hold T rows and nsel logits rows.
func (b *Backend) grow(T, nsel int) error {
	if T <= b.capT && nsel <= b.capSel {
		return nil
	}
	c := b.c
	T = max(T, b.capT)
	nsel = max(nsel, b.capSel, 1)
	sizes := []int64{
		int64(T * c.NEmbd), int64(T * c.NEmbd), int64(T * c.QDim()), int64(T * c.KVDim()), int64(T * c.KVDim()),
		int64(T * c.QDim()), int64(T * c.NFF), int64(T * c.NFF), int64(nsel * c.VocabSize),
		int64(T * c.NHead * maxSplits * (c.HeadDim + 2)),
		int64(nsel * topStride / 4),
		int64((T*c.NEmbd + 1) / 2), int64((T*c.QDim() + 1) / 2), int64((T*c.NFF + 1) / 2), // F16 copies: h16, att16, gate16
	}
	metaBytes := int64(T*4*2 + c.NLayer*T*8*2)
	var total int64
	for _, s := range sizes {
		total += (s*4 + 255) &^ 255
	}
	total += metaBytes
	// Allocate the new buffer before freeing the old one: a failed
	// allocation leaves the old scratch (and every pointer into it) valid.
	buf, err := b.dev.alloc(total, PurposeActivations)
	if err != nil {
		return err
	}
	if b.scratch != nil {
		b.dropGraphs() // they point into the old buffers
		b.dev.free(b.scratch)
	}
	b.scratch = buf
	p := buf.Ptr
	ptrs := []*devicePtr{&b.x, &b.h, &b.q, &b.k, &b.v, &b.att, &b.gate, &b.up, &b.logits, &b.attPart, &b.topBuf, &b.h16, &b.att16, &b.gate16}
	for i, s := range sizes {
		*ptrs[i] = p
		p += devicePtr((s*4 + 255) &^ 255)
	}
	b.meta = p
	b.capT, b.capSel = T, nsel
	return nil
}

func blocks(n, per int) uint32 { return uint32((n + per - 1) / per) }

// Forward runs one step over a batch (see backend.Backend).
func (b *Backend) Forward(batch []*backend.Seq) error {
	c := b.c
	type row struct {
		kv  *kvCache
		pos int
	}
	var rows []row
	kvs := make([]*kvCache, len(batch))
	var ids []int32
	nsel := 0
	for si, s := range batch {
		kv, ok := s.KV.(*kvCache)
		if !ok || kv.b != b {
			return fmt.Errorf("%w: sequence %d has a %T, not a KV cache of this GPU backend", ErrBadInput, si, s.KV)
		}
		kvs[si] = kv
		if len(s.Tokens) == 0 {
			return fmt.Errorf("%w: sequence %d of the batch has no tokens", ErrBadInput, si)
		}
		if kv.n+len(s.Tokens) > kv.cap {
			return fmt.Errorf("%w: sequence %d needs %d positions, its KV cache holds %d", ErrBadInput, si, kv.n+len(s.Tokens), kv.cap)
		}
		for i, id := range s.Tokens {
			if id < 0 || int(id) >= c.VocabSize {
				return fmt.Errorf("%w: token id %d out of range [0, %d)", ErrBadInput, id, c.VocabSize)
			}
			rows = append(rows, row{kv: kv, pos: kv.n + i})
			ids = append(ids, id)
		}
		if s.AllLogits {
			nsel += len(s.Tokens)
		} else {
			nsel++
		}
	}
	if len(rows) == 0 {
		return fmt.Errorf("%w: empty batch", ErrBadInput)
	}
	T, L := len(rows), c.NLayer
	// Host-side metadata: ids[T] int32, pos[T] int32, kptr[L][T] u64, vptr[L][T] u64.
	meta := b.hostMeta[:0]
	for _, id := range ids {
		meta = binary.LittleEndian.AppendUint32(meta, uint32(id))
	}
	for _, r := range rows {
		meta = binary.LittleEndian.AppendUint32(meta, uint32(r.pos))
	}
	for l := range L {
		for _, r := range rows {
			meta = binary.LittleEndian.AppendUint64(meta, uint64(r.kv.k(l)))
		}
	}
	for l := range L {
		for _, r := range rows {
			meta = binary.LittleEndian.AppendUint64(meta, uint64(r.kv.v(l)))
		}
	}
	b.hostMeta = meta
	err := b.dev.do(func() error {
		if err := b.grow(T, nsel); err != nil {
			return err
		}
		if err := b.dev.copyToDevice(b.meta, unsafe.Pointer(&meta[0]), int64(len(meta))); err != nil {
			return err
		}
		b.segs = segmentsOf(batch, false)
		defer func() { b.segs = nil }()
		if err := b.runLayers(T); err != nil {
			return err
		}
		b.segs = segmentsOf(batch, true)
		return b.head(batch, T)
	})
	if err != nil {
		return err
	}
	for si, s := range batch {
		kvs[si].n += len(s.Tokens)
	}
	return nil
}

func (b *Backend) idsPtr() devicePtr        { return b.meta }
func (b *Backend) posPtr(T int) devicePtr   { return b.meta + devicePtr(4*T) }
func (b *Backend) kPtrs(T, l int) devicePtr { return b.meta + devicePtr(8*T+8*l*T) }
func (b *Backend) vPtrs(T, l int) devicePtr { return b.meta + devicePtr(8*T+8*b.c.NLayer*T+8*l*T) }
func p(v any) unsafe.Pointer                { return argPtr(v) }
func dims(x, y, z uint32) [3]uint32         { return [3]uint32{x, y, z} }
func (b *Backend) dump(name string, ptr devicePtr, rows, cols int) error {
	if b.Dump == nil {
		return nil
	}
	host := make([]float32, rows*cols)
	if err := b.dev.copyToHost(unsafe.Pointer(&host[0]), ptr, int64(4*len(host))); err != nil {
		return err
	}
	b.Dump(name, rows, cols, host)
	return nil
}

// argPtr returns a pointer to a heap copy of a kernel argument.
func argPtr(v any) unsafe.Pointer {
	switch x := v.(type) {
	case devicePtr:
		q := new(devicePtr)
		*q = x
		return unsafe.Pointer(q)
	case int:
		q := new(int32)
		*q = int32(x)
		return unsafe.Pointer(q)
	case int64:
		q := new(int64)
		*q = x
		return unsafe.Pointer(q)
	case float32:
		q := new(float32)
		*q = x
		return unsafe.Pointer(q)
	}
	panic(fmt.Sprintf("cuda: kernel argument of type %T", v))
}

// mmJob and mmArgs mirror decoder.cu's MMJob and MMArgs (same layout).
type mmJob struct {
	W          devicePtr
	RowBytes   int64
	Out        devicePtr
	Bias       devicePtr
	Rows       int32
	Accumulate int32
}

type mmArgs struct {
	Job   [3]mmJob
	NJobs int32
	_     int32
	X     devicePtr
	X16   devicePtr // mmt_ only: X rounded to F16
	Out16 devicePtr // mmt_ only, with glu: F16 copy of the output (0: none)
	Cols  int32
	T     int32
	GLU   int32
	Parts int32 // mmt_ only
	Tok   int32 // mmt_ only
	_     int32
}

// mmOut is one matrix of a fused product: where its rows go.
type mmOut struct {
	m          *dmat
	out, bias  devicePtr
	accumulate bool
	out16      devicePtr // with glu, decode rows on the tensor cores: also an F16 copy of out (0: none)
}

// segment is a run of consecutive batch rows of one kind: decode rows (one
// token of a decoding sequence) or prefill rows (prompt or scored text).
type segment struct {
	start, n int
	prefill  bool
}

// mmLaunch runs out = x·mᵀ for one to three matrices of the same type and
// width over the same activations (with glu, two: gate, up →
// silu(gate)·up), for the T rows of x. Rows are computed by kind (b.segs):
// decode rows with the unit kernel, prefill rows with the element-wise one,
// so that a row's result never depends on what else is in the batch. With
// no segments set (kernel tests), T ≤ 8 counts as decode.
func (b *Backend) mmLaunch(x devicePtr, T int, glu bool, outs ...mmOut) error {
	return b.mmLaunch16(x, 0, T, glu, outs...)
}

// mmLaunch16 is mmLaunch with x16, an F16 copy of x (0: none; decode rows on
// the tensor cores then convert x first).
func (b *Backend) mmLaunch16(x, x16 devicePtr, T int, glu bool, outs ...mmOut) error {
	segs := b.segs
	if segs == nil {
		segs = []segment{{0, T, T > 8}}
	}
	for _, sg := range segs {
		shifted := make([]mmOut, len(outs))
		for i, o := range outs {
			shifted[i] = o
			shifted[i].out = o.out + devicePtr(4*sg.start*o.m.rows)
			if o.out16 != 0 {
				shifted[i].out16 = o.out16 + devicePtr(2*sg.start*o.m.rows)
			}
		}
		sx16 := x16
		if x16 != 0 {
			sx16 = x16 + devicePtr(2*sg.start*outs[0].m.cols)
		}
		if err := b.mmSegment(x+devicePtr(4*sg.start*outs[0].m.cols), sx16, sg.n, sg.prefill, glu, shifted...); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) mmSegment(x, x16 devicePtr, T int, prefill, glu bool, outs ...mmOut) error {
	same := true
	for _, o := range outs[1:] {
		same = same && o.m.suffix == outs[0].m.suffix && o.m.cols == outs[0].m.cols
	}
	if !same {
		if glu {
			return fmt.Errorf("cuda: gate and up have different types (%s, %s): a bug in the caller", outs[0].m.suffix, outs[1].m.suffix)
		}
		for _, o := range outs {
			if err := b.mmSegment(x, x16, T, prefill, false, o); err != nil {
				return err
			}
		}
		return nil
	}
	a := new(mmArgs)
	rows := 0
	for i, o := range outs {
		acc := int32(0)
		if o.accumulate {
			acc = 1
		}
		a.Job[i] = mmJob{W: o.m.ptr, RowBytes: o.m.rowBytes, Out: o.out, Bias: o.bias, Rows: int32(o.m.rows), Accumulate: acc}
		rows += o.m.rows
	}
	a.NJobs, a.X, a.Cols, a.T = int32(len(outs)), x, int32(outs[0].m.cols), int32(T)
	if glu {
		a.GLU, rows = 1, outs[0].m.rows
	}
	if prefill && b.blas != 0 {
		return b.gemmSegment(x, T, glu, outs...)
	}
	const warps = 8
	if prefill {
		return b.dev.launch("mme_"+outs[0].m.suffix, dims(blocks(rows, warps), blocks(T, 8), 1), dims(32*warps, 1, 1), 0, unsafe.Pointer(a))
	}
	if b.tensorCoreDecode(outs[0].m.suffix) {
		// Tiles of 16 weight rows (glu: 8 gate + 8 up), 8/parts tiles a block.
		tiles := blocks(rows, 16)
		if glu {
			tiles = blocks(rows, 8)
		}
		parts := b.mmtParts
		if parts == 0 {
			parts = mmtPartsFor(int(tiles))
		}
		rowBlocks := blocks(int(tiles), mmtWarps/parts)
		tok := mmtTokensFor(int(rowBlocks), parts, T)
		if b.mmtTok != 0 {
			tok = b.mmtTok
		}
		a.Parts, a.Tok = int32(parts), int32(tok)
		if x16 == 0 {
			var err error
			if x16, err = b.toF16(x, T*outs[0].m.cols); err != nil {
				return err
			}
		}
		a.X16 = x16
		if glu {
			a.Out16 = outs[0].out16
		}
		return b.dev.launch("mmt_"+outs[0].m.suffix, dims(rowBlocks, blocks(T, tok), 1), dims(32*mmtWarps, 1, 1),
			uint32(mmtShared(parts, tok)), unsafe.Pointer(a))
	}
	// Two rows a warp (with glu: a gate row and its up row).
	perWarp := 2
	if glu {
		perWarp = 1
	}
	return b.dev.launch("mm_"+outs[0].m.suffix, dims(blocks(rows, warps*perWarp), blocks(T, unitTile), 1), dims(32*warps, 1, 1), 0, unsafe.Pointer(a))
}

// unitTile is TILE_U of decoder.cu: tokens a block of the unit kernel takes.
const unitTile = 4

// mmtTokens and mmtWarps are MMT_TOK and MMT_WARPS of decoder.cu: the most
// tokens a block of the tensor-core decode kernel takes, and its warps.
const (
	mmtTokens = 64
	mmtWarps  = 8
)

// mmtPartsFor is how many warps split each row tile of a matrix with this
// many 16-row tiles (1, 2, 4 or 8): a function of the shape alone, since it
// sets the order of the row's sums. As few as still give a single decode
// row 2048 warps (measured on an H200: fewer parts are faster per warp, but
// a small matrix needs the split to fill the card).
func mmtPartsFor(tiles int) int {
	for _, p := range []int{1, 2, 4} {
		if tiles*p >= 2048 {
			return p
		}
	}
	return 8
}

// mmtTokensFor is how many tokens a block of the tensor-core kernel takes (a
// multiple of 8): at most mmtTokens and 256/parts (the staged activations
// must fit in shared memory), no more than the batch needs, and fewer when
// the matrix has few row blocks, so that a batch still fills the card. It
// changes no result.
func mmtTokensFor(rowBlocks, parts, T int) int {
	tok := min(mmtTokens, 256/parts, (T+7)/8*8)
	for tok > 16 && rowBlocks*((T+tok-1)/tok) < 264 {
		tok = (tok/2 + 7) / 8 * 8
	}
	return tok
}

// mmtShared is the dynamic shared memory of an mmt_ block: the staged F16
// activations (16-byte pieces, 4·parts units of 4·tok+1 pieces), at least
// the 32 KiB of partial sums that reuse it.
func mmtShared(parts, tok int) int {
	return max(64*parts*(4*tok+1), 32768)
}

// toF16 writes x's n float32 values (n a multiple of 4) as F16 into a
// workspace and returns it.
func (b *Backend) toF16(x devicePtr, n int) (devicePtr, error) {
	ptr, err := b.need(&b.gemm.x16, int64(2*n))
	if err != nil {
		return 0, err
	}
	return ptr, b.dev.launch("to_f16_rows", dims(blocks(n/4, 256), 1, 1), dims(256, 1, 1), 0, p(x), p(ptr), p(int64(n)))
}

// mmtMaxShared is the most mmtShared can ask for (parts·tok ≤ 256).
const mmtMaxShared = 80 << 10

// prepareMMT lets each loaded mmt_ kernel use mmtMaxShared bytes of dynamic
// shared memory (above the default 48 KiB); call inside do, after loadModule.
func (d *Device) prepareMMT() error {
	const attrMaxDynamicShared = 8
	if d.Arch() < 80 {
		return nil
	}
	for s := range mmtSuffix {
		f, ok := d.funcs["mmt_"+s]
		if !ok {
			continue
		}
		if err := check("cuFuncSetAttribute(mmt_"+s+")", drv.cuFuncSetAttribute(f, attrMaxDynamicShared, mmtMaxShared)); err != nil {
			return err
		}
	}
	return nil
}

// mmtSuffix lists the weight types whose decode rows run on the tensor
// cores (mmt_<suffix>): their dequantized values and the activations are
// rounded to F16, float32 accumulation. F32 and BF16 weights keep the
// float32 unit kernel (F16 would round or overflow them).
var mmtSuffix = map[string]bool{"f16": true, "q4_0": true, "q4_1": true, "q5_0": true, "q5_1": true,
	"q8_0": true, "q4_k": true, "q5_k": true, "q6_k": true}

// tensorCoreDecode reports whether decode rows of this weight type use
// mmt_<suffix>: the type is listed and the card has mma.m16n8k16 (sm_80+).
// The choice depends on the type and the card only, never on the batch.
func (b *Backend) tensorCoreDecode(suffix string) bool {
	return mmtSuffix[suffix] && b.dev.Arch() >= 80
}

// mm launches out[T, m.rows] = x[T, m.cols] · mᵀ.
func (b *Backend) mm(m *dmat, x, out devicePtr, T int) error {
	return b.mmLaunch(x, T, false, mmOut{m: m, out: out})
}

// rmsNorm writes out (and, when out16 is set, an F16 copy of it).
func (b *Backend) rmsNorm(x, w, out, out16 devicePtr, T, n int) error {
	return b.dev.launch("rms_norm_f32", dims(uint32(T), 1, 1), dims(1024, 1, 1), 0, p(x), p(w), p(out), p(n), p(b.c.RMSEps), p(out16))
}

func (b *Backend) elementwise(name string, total int, args ...unsafe.Pointer) error {
	return b.dev.launch(name, dims(blocks(total, 256), 1, 1), dims(256, 1, 1), 0, args...)
}

func (b *Backend) layersForward(T int) error {
	c := b.c
	d, qd, ff := c.NEmbd, c.QDim(), c.NFF
	if err := b.dev.launch("embed_"+b.embd.suffix, dims(uint32(T), 1, 1), dims(256, 1, 1), 0,
		p(b.embd.ptr), p(b.embd.rowBytes), p(b.idsPtr()), p(b.x), p(d)); err != nil {
		return err
	}
	if err := b.dump("inp_embd", b.x, T, d); err != nil {
		return err
	}
	scale := float32(1 / math.Sqrt(float64(c.HeadDim)))
	// Split attention over the positions so that decode batches (few
	// (row, head) pairs) have enough blocks. The count is the same for every
	// batch: it changes the summation order, so a row's result would
	// otherwise depend on the batch.
	splits := maxSplits
	for l := range b.layers {
		ly := &b.layers[l]
		neox := 0
		if c.Arch.Rope == model.RopeNeoX {
			neox = 1
		}
		steps := []func() error{
			func() error { return b.rmsNorm(b.x, ly.attnNorm, b.h, b.h16, T, d) },
			func() error { return b.dump(fmt.Sprintf("attn_norm-%d", l), b.h, T, d) },
			func() error {
				return b.mmLaunch16(b.h, b.h16, T, false, mmOut{m: &ly.q, out: b.q, bias: ly.qBias},
					mmOut{m: &ly.k, out: b.k, bias: ly.kBias}, mmOut{m: &ly.v, out: b.v, bias: ly.vBias})
			},
			func() error { return b.dump(fmt.Sprintf("Qcur-%d", l), b.q, T, qd) },
			func() error {
				return b.dev.launch("rope_store_"+b.kvType, dims(uint32(T), 1, 1), dims(1024, 1, 1), 0,
					p(b.q), p(b.k), p(b.v), p(b.kPtrs(T, l)), p(b.vPtrs(T, l)), p(b.posPtr(T)), p(b.invFreq),
					p(c.NHead), p(c.NHeadKV), p(c.HeadDim), p(c.RopeDim), p(neox))
			},
			func() error {
				return b.dev.launch("attention_split_"+b.kvType, dims(uint32(T), uint32(c.NHead), uint32(splits)), dims(128, 1, 1), 0,
					p(b.q), p(b.attPart), p(b.kPtrs(T, l)), p(b.vPtrs(T, l)), p(b.posPtr(T)),
					p(c.NHead), p(c.NHeadKV), p(c.HeadDim), p(c.SlidingWindow), p(scale), p(splits))
			},
			func() error {
				return b.dev.launch("attention_merge_f32", dims(uint32(T), uint32(c.NHead), 1), dims(128, 1, 1), 0,
					p(b.attPart), p(b.att), p(c.NHead), p(c.HeadDim), p(splits), p(b.att16))
			},
			func() error { return b.dump(fmt.Sprintf("kqv_out-%d", l), b.att, T, qd) },
			// Output projection added into the residual stream.
			func() error {
				return b.mmLaunch16(b.att, b.att16, T, false, mmOut{m: &ly.o, out: b.x, accumulate: true})
			},
			func() error { return b.dump(fmt.Sprintf("ffn_inp-%d", l), b.x, T, d) },
			func() error { return b.rmsNorm(b.x, ly.ffnNorm, b.h, b.h16, T, d) },
			func() error {
				if ly.gate.suffix == ly.up.suffix {
					return b.mmLaunch16(b.h, b.h16, T, true, mmOut{m: &ly.gate, out: b.gate, out16: b.gate16}, mmOut{m: &ly.up, out: b.up})
				}
				if err := b.mmLaunch16(b.h, b.h16, T, false, mmOut{m: &ly.gate, out: b.gate}); err != nil {
					return err
				}
				if err := b.mmLaunch16(b.h, b.h16, T, false, mmOut{m: &ly.up, out: b.up}); err != nil {
					return err
				}
				return b.elementwise("swiglu_f32", T*ff, p(b.gate), p(b.up), p(T*ff), p(b.gate16))
			},
			func() error { return b.dump(fmt.Sprintf("ffn_act-%d", l), b.gate, T, ff) },
			func() error {
				return b.mmLaunch16(b.gate, b.gate16, T, false, mmOut{m: &ly.down, out: b.x, accumulate: true})
			},
			func() error { return b.dump(fmt.Sprintf("l_out-%d", l), b.x, T, d) },
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
	}
	return nil
}

// head applies the final norm and LM head to the rows whose logits are
// wanted and copies the logits to each sequence.
func (b *Backend) head(batch []*backend.Seq, T int) error {
	c := b.c
	d, V := c.NEmbd, c.VocabSize
	// Gather the wanted rows into h (contiguous), one copy for each run of
	// rows that are contiguous in x too (a decode batch is one run).
	t, nsel := 0, 0
	runFirst, runN := 0, 0
	flush := func() error {
		if runN == 0 {
			return nil
		}
		return check("cuMemcpyDtoDAsync", drv.cuMemcpyDtoDAsync_v2(b.h+devicePtr(4*(nsel-runN)*d), b.x+devicePtr(4*runFirst*d),
			uint64(4*runN*d), b.dev.stream))
	}
	for _, s := range batch {
		first, n := t+len(s.Tokens)-1, 1
		if s.AllLogits {
			first, n = t, len(s.Tokens)
		}
		if runN > 0 && runFirst+runN != first {
			if err := flush(); err != nil {
				return err
			}
			runN = 0
		}
		if runN == 0 {
			runFirst = first
		}
		runN += n
		nsel += n
		t += len(s.Tokens)
	}
	if err := flush(); err != nil {
		return err
	}
	if err := b.rmsNorm(b.h, b.outputNorm, b.h, b.h16, nsel, d); err != nil {
		return err
	}
	if err := b.mmLaunch16(b.h, b.h16, nsel, false, mmOut{m: &b.out, out: b.logits}); err != nil {
		return err
	}
	// Rows that asked for their top candidates: select on the device and
	// bring back only those (one copy for all of them). One launch for each
	// run of consecutive rows with the same k (a block a row).
	off, ntop := 0, 0
	type topRun struct{ off, ntop, n, k int }
	var runs []topRun
	for _, s := range batch {
		s.HasTop = false
		if s.AllLogits {
			off += len(s.Tokens)
			continue
		}
		if k := min(s.TopK, sample.MaxTop, V); k > 0 {
			if r := len(runs) - 1; r >= 0 && runs[r].k == k && runs[r].off+runs[r].n == off && runs[r].ntop+runs[r].n == ntop {
				runs[r].n++
			} else {
				runs = append(runs, topRun{off: off, ntop: ntop, n: 1, k: k})
			}
			ntop++
		}
		off++
	}
	for _, r := range runs {
		rec := b.topBuf + devicePtr(r.ntop*topStride)
		if err := b.dev.launch("topk_f32", dims(uint32(r.n), 1, 1), dims(1024, 1, 1), 0,
			p(b.logits+devicePtr(4*r.off*V)), p(V), p(r.k), p(rec), p(rec+devicePtr(4*sample.MaxTop)), p(rec+devicePtr(8*sample.MaxTop)),
			p(int64(V)), p(int64(topStride))); err != nil {
			return err
		}
	}
	if ntop > 0 {
		if cap(b.hostTop) < ntop*topStride {
			b.hostTop = make([]byte, ntop*topStride)
		}
		host := b.hostTop[:ntop*topStride]
		if err := b.dev.copyToHost(unsafe.Pointer(&host[0]), b.topBuf, int64(len(host))); err != nil {
			return err
		}
		i := 0
		for _, s := range batch {
			if s.AllLogits || min(s.TopK, sample.MaxTop, V) <= 0 {
				continue
			}
			k := min(s.TopK, sample.MaxTop, V)
			rec := host[i*topStride:]
			s.Top = s.Top[:0]
			for j := range k {
				s.Top = append(s.Top, sample.Candidate{
					ID:      int32(binary.LittleEndian.Uint32(rec[4*j:])),
					Logprob: math.Float32frombits(binary.LittleEndian.Uint32(rec[4*sample.MaxTop+4*j:])),
				})
			}
			slices.SortFunc(s.Top, func(a, b sample.Candidate) int {
				switch {
				case a.Logprob > b.Logprob:
					return -1
				case a.Logprob < b.Logprob:
					return 1
				}
				return cmp.Compare(a.ID, b.ID)
			})
			s.LSE = float64(math.Float32frombits(binary.LittleEndian.Uint32(rec[8*sample.MaxTop:])))
			s.HasTop = true
			i++
		}
	}
	// The others get their whole rows.
	off = 0
	for _, s := range batch {
		n := 1
		if s.AllLogits {
			n = len(s.Tokens)
		}
		if !s.HasTop {
			if cap(s.Logits) < n*V {
				s.Logits = make([]float32, n*V)
			}
			s.Logits = s.Logits[:n*V]
			if err := b.dev.copyToHost(unsafe.Pointer(&s.Logits[0]), b.logits+devicePtr(4*off*V), int64(4*n*V)); err != nil {
				return err
			}
		}
		off += n
	}
	return nil
}

// maxGraphT is the largest batch whose layer pass is replayed from a CUDA
// graph: decode batches. Longer prompt chunks launch directly (their launch
// cost is spread over many tokens, and each length would need its own graph).
const maxGraphT = 64

// topStride is the bytes of one row's top-k result on the device: ids and
// values of up to sample.MaxTop candidates, then the log-sum-exp (padded).
const topStride = 8*sample.MaxTop + 16

// maxSplits is how many parts attention over the positions is split into
// for decode-sized batches.
const maxSplits = 16

// runLayers runs every layer for T rows: from a captured CUDA graph when
// the batch is small (one graph per T; the kernels read positions and KV
// pointers from device memory, so a graph serves every step with that T),
// directly otherwise, when tensors are being dumped, or with
// WORKER_CUDA_SYNC=1. Call on the device thread.
func (b *Backend) runLayers(T int) error {
	if T > maxGraphT || b.Dump != nil || b.dev.syncEach || b.noGraphs || b.blas != 0 && hasPrefill(b.segs) {
		// cuBLAS calls stay out of captured graphs.
		return b.layersForward(T)
	}
	// One graph per layout of the batch's rows (decode and prefill runs).
	key := fmt.Sprint(b.segs)
	exec, ok := b.graphs[key]
	if !ok {
		var err error
		if exec, err = b.capture(T); err != nil {
			// Capture is an optimization: run directly from now on.
			b.noGraphs = true
			return b.layersForward(T)
		}
		if b.graphs == nil {
			b.graphs = map[string]cuGraphExec{}
		}
		b.graphs[key] = exec
	}
	return check("cuGraphLaunch", drv.cuGraphLaunch(exec, b.dev.stream))
}

func (b *Backend) capture(T int) (cuGraphExec, error) {
	const captureThreadLocal = 1
	if err := check("cuStreamBeginCapture", drv.cuStreamBeginCapture_v2(b.dev.stream, captureThreadLocal)); err != nil {
		return 0, err
	}
	runErr := b.layersForward(T)
	var g cuGraph
	endErr := check("cuStreamEndCapture", drv.cuStreamEndCapture(b.dev.stream, &g))
	if runErr != nil || endErr != nil {
		if g != 0 {
			drv.cuGraphDestroy(g)
		}
		return 0, errors.Join(runErr, endErr)
	}
	defer drv.cuGraphDestroy(g)
	var exec cuGraphExec
	if err := check("cuGraphInstantiate", drv.cuGraphInstantiateWithFlags(&exec, g, 0)); err != nil {
		return 0, err
	}
	return exec, nil
}

func hasPrefill(segs []segment) bool {
	for _, s := range segs {
		if s.prefill {
			return true
		}
	}
	return false
}

// segmentsOf lists the runs of rows of one kind in a batch: every token of
// each sequence (headRows false), or the rows whose logits are wanted
// (headRows true: all of an AllLogits sequence, else its last).
func segmentsOf(batch []*backend.Seq, headRows bool) []segment {
	var segs []segment
	row := 0
	for _, s := range batch {
		n := len(s.Tokens)
		if headRows && !s.AllLogits {
			n = 1
		}
		if k := len(segs); k > 0 && segs[k-1].prefill == s.Prefill {
			segs[k-1].n += n
		} else {
			segs = append(segs, segment{start: row, n: n, prefill: s.Prefill})
		}
		row += n
	}
	return segs
}

func (b *Backend) dropGraphs() {
	for T, e := range b.graphs {
		drv.cuGraphExecDestroy(e)
		delete(b.graphs, T)
	}
}
