package cuda

import (
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

// scratchLayout is the scratch buffer for T rows and nsel logits rows: the
// float32 element count of each buffer (in the order grow assigns them)
// and the bytes of the whole, metadata included.
func scratchLayout(c *model.Config, T, nsel int) (sizes []int64, total int64) {
	sizes = []int64{
		int64(T * c.NEmbd), int64(T * c.NEmbd), int64(T * c.QDim()), int64(T * c.KVDim()), int64(T * c.KVDim()),
		int64(T * c.QDim()), int64(T * c.NFF), int64(T * c.NFF), int64(nsel * c.VocabSize),
		int64(T * c.NHead * maxSplits * (c.HeadDim + 2)),
		int64(nsel * topStride / 4), int64(nsel) * topkScratchBytes(c.VocabSize) / 4, int64(nsel * 2 * allowWords(c.VocabSize)),
		int64((T*c.NEmbd + 1) / 2), int64((T*c.QDim() + 1) / 2), int64((T*c.NFF + 1) / 2), // F16 copies: h16, att16, gate16
		q8Elements(T, max(c.NEmbd, c.QDim(), c.NFF)), // 8-bit activations of mmqt_
	}
	for _, s := range sizes {
		total += (s*4 + 255) &^ 255
	}
	return sizes, total + int64(T*4*2+T*8) // ids, positions, block tables
}

// grow makes the scratch buffers hold T rows and nsel logits rows.
func (b *Backend) grow(T, nsel int) error {
	if T <= b.capT && nsel <= b.capSel {
		return nil
	}
	T = max(T, b.capT)
	nsel = max(nsel, b.capSel, 1)
	sizes, total := scratchLayout(b.c, T, nsel)
	// Allocate the new buffer before freeing the old one: a failed
	// allocation leaves the old scratch (and every pointer into it) valid.
	buf, err := b.dev.alloc(total, PurposeActivations)
	if err != nil {
		return err
	}
	var freeErr error // a driver error freeing the old buffer: reported once the new one is in place
	if b.scratch != nil {
		// The graphs point into the old buffers.
		freeErr = errors.Join(b.dropGraphs(), b.dev.free(b.scratch))
	}
	b.scratch = buf
	p := buf.Ptr
	ptrs := []*devicePtr{&b.x, &b.h, &b.q, &b.k, &b.v, &b.att, &b.gate, &b.up, &b.logits, &b.attPart, &b.topBuf, &b.topScratch, &b.topAllow, &b.h16, &b.att16, &b.gate16, &b.xq}
	for i, s := range sizes {
		*ptrs[i] = p
		p += devicePtr((s*4 + 255) &^ 255)
	}
	b.xqBytes = 4 * sizes[len(sizes)-1]
	b.meta = p
	b.capT, b.capSel = T, nsel
	return freeErr
}

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
		if kv.pool != nil && kv.pool.closed {
			return fmt.Errorf("%w: sequence %d's KV cache reads blocks of a closed pool", ErrBadInput, si)
		}
	}
	if err := backend.CheckBatch(batch, c.VocabSize); err != nil {
		return fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	for si, s := range batch {
		kv := s.KV.(*kvCache)
		kvs[si] = kv
		for i, id := range s.Tokens {
			rows = append(rows, row{kv: kv, pos: kv.n + i})
			ids = append(ids, id)
		}
		switch {
		case s.Embed: // hidden states, no logits
		case s.AllLogits:
			nsel += len(s.Tokens)
		default:
			nsel++
		}
	}
	T := len(rows)
	// Host-side metadata: ids[T] int32, pos[T] int32, tabs[T] u64 (each
	// row's block table entries on the device; kvcache.go).
	meta := b.hostMeta[:0]
	for _, id := range ids {
		meta = binary.LittleEndian.AppendUint32(meta, uint32(id))
	}
	for _, r := range rows {
		meta = binary.LittleEndian.AppendUint32(meta, uint32(r.pos))
	}
	for _, r := range rows {
		meta = binary.LittleEndian.AppendUint64(meta, uint64(r.kv.tabEntries()))
	}
	b.hostMeta = meta
	err := b.dev.do(func() error {
		if err := b.grow(T, nsel); err != nil {
			return err
		}
		for _, kv := range kvs {
			if err := kv.queueTab(); err != nil { // before the metadata copy, which waits for it
				return err
			}
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

func (b *Backend) idsPtr() devicePtr       { return b.meta }
func (b *Backend) posPtr(T int) devicePtr  { return b.meta + devicePtr(4*T) }
func (b *Backend) tabsPtr(T int) devicePtr { return b.meta + devicePtr(8*T) }
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

// normFor writes rms_norm(x)·w into b.h (and b.h16) for T rows of n, the
// input of the products of ms that follow; for a lone decode row on the
// 8-bit kernels also its 8-bit form, which they read (normQ8; the caller
// ends it with clearPre after them).
func (b *Backend) normFor(x, w devicePtr, T, n int, ms ...*dmat) error {
	if b.normQ8(T, ms...) {
		return b.rmsNormPre(x, w, b.h, b.h16, T, n)
	}
	return b.rmsNorm(x, w, b.h, b.h16, T, n)
}

// rmsNorm writes out (and, when out16 is set, an F16 copy of it).
func (b *Backend) rmsNorm(x, w, out, out16 devicePtr, T, n int) error {
	return b.dev.rmsNorm(x, w, out, out16, T, n, b.c.RMSEps)
}

func (b *Backend) layersForward(T int) error {
	c := b.c
	d := c.NEmbd
	if err := b.dev.embed(&b.embd, b.idsPtr(), b.x, T); err != nil {
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
	heads := headShape{nHead: c.NHead, nKV: c.NHeadKV, headDim: c.HeadDim}
	for l := range b.layers {
		if err := b.layerForward(l, T, heads, scale, splits); err != nil {
			return err
		}
	}
	return nil
}

// layerForward runs layer l for T rows: x += attention(norm(x)), then
// x += ffn(norm(x)): its kernels in order (what a CUDA graph captures).
func (b *Backend) layerForward(l, T int, heads headShape, scale float32, splits int) error {
	c, ly := b.c, &b.layers[l]
	d, qd, ff := c.NEmbd, c.QDim(), c.NFF
	neox := c.Arch.Rope == model.RopeNeoX
	if err := b.normFor(b.x, ly.attnNorm, T, d, &ly.q, &ly.k, &ly.v); err != nil {
		return err
	}
	if err := b.dumpf("attn_norm-%d", l, b.h, T, d); err != nil {
		return err
	}
	// Q, K and V in one launch, with their biases.
	err := b.mmLaunch16(b.h, b.h16, T, false, mmOut{m: &ly.q, out: b.q, bias: ly.qBias},
		mmOut{m: &ly.k, out: b.k, bias: ly.kBias}, mmOut{m: &ly.v, out: b.v, bias: ly.vBias})
	b.clearPre()
	if err != nil {
		return err
	}
	if err := b.dumpf("Qcur-%d", l, b.q, T, qd); err != nil {
		return err
	}
	if err := b.dumpf("Kcur-%d", l, b.k, T, c.KVDim()); err != nil {
		return err
	}
	if err := b.dumpf("Vcur-%d", l, b.v, T, c.KVDim()); err != nil {
		return err
	}
	if err := b.dev.ropeStore(b.kvType, b.q, b.k, b.v, b.tabsPtr(T), b.posPtr(T), b.invFreq, l, T, heads, c.RopeDim, neox); err != nil {
		return err
	}
	if err := b.attention(l, T, heads, scale, splits); err != nil {
		return err
	}
	if err := b.dumpf("kqv_out-%d", l, b.att, T, qd); err != nil {
		return err
	}
	// Output projection added into the residual stream.
	before, err := b.snapshot(b.x, T*d)
	if err != nil {
		return err
	}
	if err := b.mmLaunch16(b.att, b.att16, T, false, mmOut{m: &ly.o, out: b.x, accumulate: true}); err != nil {
		return err
	}
	if err := b.dumpDelta("attn_out-%d", l, before, b.x, T, d); err != nil {
		return err
	}
	if err := b.dumpf("ffn_inp-%d", l, b.x, T, d); err != nil {
		return err
	}
	if err := b.normFor(b.x, ly.ffnNorm, T, d, &ly.gate, &ly.up); err != nil {
		return err
	}
	if err := b.dumpf("ffn_norm-%d", l, b.h, T, d); err != nil {
		return err
	}
	// Gate and up with SwiGLU in one launch when they share a type.
	if ly.gate.suffix == ly.up.suffix {
		err := b.mmLaunch16(b.h, b.h16, T, true, mmOut{m: &ly.gate, out: b.gate, out16: b.gate16}, mmOut{m: &ly.up, out: b.up})
		b.clearPre()
		if err != nil {
			return err
		}
	} else {
		err := b.mmLaunch16(b.h, b.h16, T, false, mmOut{m: &ly.gate, out: b.gate})
		if err == nil {
			err = b.mmLaunch16(b.h, b.h16, T, false, mmOut{m: &ly.up, out: b.up})
		}
		b.clearPre()
		if err != nil {
			return err
		}
		if err := b.dev.swiglu(b.gate, b.up, b.gate16, T*ff); err != nil {
			return err
		}
	}
	if err := b.dumpf("ffn_act-%d", l, b.gate, T, ff); err != nil {
		return err
	}
	if before, err = b.snapshot(b.x, T*d); err != nil {
		return err
	}
	if err := b.mmLaunch16(b.gate, b.gate16, T, false, mmOut{m: &ly.down, out: b.x, accumulate: true}); err != nil {
		return err
	}
	if err := b.dumpDelta("ffn_out-%d", l, before, b.x, T, d); err != nil {
		return err
	}
	return b.dumpf("l_out-%d", l, b.x, T, d)
}

// snapshot copies n floats at ptr to the host when dumping (nil otherwise):
// the residual stream before a projection is added into it.
func (b *Backend) snapshot(ptr devicePtr, n int) ([]float32, error) {
	if b.Dump == nil {
		return nil, nil
	}
	host := make([]float32, n)
	return host, b.dev.copyToHost(unsafe.Pointer(&host[0]), ptr, int64(4*n))
}

// dumpDelta dumps what a fused projection added into the residual stream
// (its value now minus the snapshot before): the tensor the kernels never
// hold on their own (attn_out, ffn_out).
func (b *Backend) dumpDelta(format string, l int, before []float32, ptr devicePtr, rows, cols int) error {
	if b.Dump == nil {
		return nil
	}
	after, err := b.snapshot(ptr, rows*cols)
	if err != nil {
		return err
	}
	for i := range after {
		after[i] -= before[i]
	}
	b.Dump(fmt.Sprintf(format, l), rows, cols, after)
	return nil
}

// dumpf is dump with the name formatted from layer l (only when dumping).
func (b *Backend) dumpf(format string, l int, ptr devicePtr, rows, cols int) error {
	if b.Dump == nil {
		return nil
	}
	return b.dump(fmt.Sprintf(format, l), ptr, rows, cols)
}

// ForwardEmbed is Forward where a sequence with Embed set gets the final
// hidden states of all its tokens (the output norm's result) in Hidden and
// no logits (backend.Embedder). Each row's hidden state is computed as in
// Forward: it depends only on the row's own tokens.
func (b *Backend) ForwardEmbed(batch []*backend.Seq) error { return b.Forward(batch) }

// embedRows copies the final hidden states of the Embed sequences (rows of
// x after the layers) to their Hidden, through the output norm; one norm
// launch and one copy for each such sequence. h is free scratch here.
func (b *Backend) embedRows(batch []*backend.Seq) error {
	d := b.c.NEmbd
	t := 0
	for _, s := range batch {
		n := len(s.Tokens)
		if s.Embed {
			if err := b.rmsNorm(b.x+devicePtr(4*t*d), b.outputNorm, b.h, b.h16, n, d); err != nil {
				return err
			}
			if cap(s.Hidden) < n*d {
				s.Hidden = make([]float32, n*d)
			}
			s.Hidden = s.Hidden[:n*d]
			s.HasTop = false
			if err := b.dev.copyToHost(unsafe.Pointer(&s.Hidden[0]), b.h, int64(4*n*d)); err != nil {
				return err
			}
		}
		t += n
	}
	return nil
}

// head applies the final norm and LM head to the rows whose logits are
// wanted and copies the logits to each sequence (the hidden states to
// each Embed sequence).
func (b *Backend) head(batch []*backend.Seq, T int) error {
	c := b.c
	d, V := c.NEmbd, c.VocabSize
	if err := b.embedRows(batch); err != nil {
		return err
	}
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
		if s.Embed {
			t += len(s.Tokens)
			continue
		}
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
	if nsel == 0 {
		return nil // only hidden states were wanted
	}
	if err := b.normFor(b.h, b.outputNorm, nsel, d, &b.out); err != nil {
		return err
	}
	if err := b.dump("result_norm", b.h, nsel, d); err != nil {
		return err
	}
	err := b.mmLaunch16(b.h, b.h16, nsel, false, mmOut{m: &b.out, out: b.logits})
	b.clearPre()
	if err != nil {
		return err
	}
	// Rows that asked for their top candidates: select on the device and
	// bring back only those (one copy for all of them). One selection for
	// each run of consecutive rows with the same k.
	off, ntop := 0, 0
	type topRun struct{ off, ntop, n, k int }
	var runs []topRun
	for _, s := range batch {
		s.HasTop = false
		if s.Embed {
			continue
		}
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
	// Constrained rows' masks (Seq.Allow), asked for now that the step's
	// kernels are queued: the host waits for them while the device works.
	// Every top row gets a mask (all ones for the unconstrained), one copy.
	words := allowWords(V)
	var allow devicePtr
	for _, s := range batch {
		if s.Allow != nil && !s.Embed && !s.AllLogits && min(s.TopK, sample.MaxTop, V) > 0 {
			allow = b.topAllow
		}
	}
	if allow != 0 {
		host := b.hostAllow[:0]
		for _, s := range batch {
			if s.Embed || s.AllLogits || min(s.TopK, sample.MaxTop, V) <= 0 {
				continue
			}
			n := len(host)
			host = slices.Grow(host, words)[:n+words]
			clear(host[n:])
			if s.Allow == nil {
				for i := range words {
					host[n+i] = ^uint64(0)
				}
				continue
			}
			copy(host[n:], s.Allow()) // ids past the mask stay refused
		}
		b.hostAllow = host
		if err := b.dev.copyToDevice(allow, unsafe.Pointer(&host[0]), int64(8*len(host))); err != nil {
			return err
		}
	}
	for _, r := range runs {
		rec := b.topBuf + devicePtr(r.ntop*topStride)
		runAllow := devicePtr(0)
		if allow != 0 {
			runAllow = allow + devicePtr(8*r.ntop*words)
		}
		if err := b.dev.topK(b.logits+devicePtr(4*r.off*V), r.n, V, r.k, rec, rec+devicePtr(4*sample.MaxTop), rec+devicePtr(8*sample.MaxTop),
			int64(V), int64(topStride), b.topScratch, runAllow, int64(words)); err != nil {
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
			if s.Embed || s.AllLogits || min(s.TopK, sample.MaxTop, V) <= 0 {
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
			sample.SortCandidates(s.Top)
			s.LSE = float64(math.Float32frombits(binary.LittleEndian.Uint32(rec[8*sample.MaxTop:])))
			s.HasTop = true
			i++
		}
	}
	// The others get their whole rows.
	off = 0
	for _, s := range batch {
		if s.Embed {
			continue
		}
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

// attention writes b.att and b.att16 for the T rows of layer l: prompt rows
// on the tensor cores (attention_prompt) where the model and card allow it
// (promptAttention: a property of the model and card, never of the batch),
// the other rows split over the positions and merged.
func (b *Backend) attention(l, T int, heads headShape, scale float32, splits int) error {
	c := b.c
	segs := b.segs
	if segs == nil || !b.promptAttention() || !hasPrefill(segs) {
		segs = []segment{{0, T, false}}
	}
	qd := c.QDim()
	for _, sg := range segs {
		o := sg.start
		q, out, out16 := b.q+devicePtr(4*o*qd), b.att+devicePtr(4*o*qd), b.att16+devicePtr(2*o*qd)
		tabs, pos := b.tabsPtr(T)+devicePtr(8*o), b.posPtr(T)+devicePtr(4*o)
		part := b.attPart + devicePtr(4*o*c.NHead*splits*(c.HeadDim+2))
		if sg.prefill {
			if err := b.dev.attentionPrompt(q, part, tabs, pos, l, sg.n, heads, c.SlidingWindow, scale, splits); err != nil {
				return err
			}
		} else if err := b.dev.attentionSplit(b.kvType, q, part, tabs, pos, l, sg.n, heads, c.SlidingWindow, scale, splits); err != nil {
			return err
		}
		if err := b.dev.attentionMerge(part, out, out16, sg.n, c.NHead, c.HeadDim, splits); err != nil {
			return err
		}
	}
	return nil
}

// promptAttention reports whether prompt rows take attention_prompt: an F16
// cache, a card with tensor cores (sm_80+), a head dimension the kernel has,
// and WORKER_CUDA_NO_FLASH unset (set, prompt rows are split and merged
// like decode rows: to measure the difference).
func (b *Backend) promptAttention() bool {
	return !b.noFlash && b.kvType == "f16" && b.dev.Arch() >= 80 && promptHeadDim(b.c.HeadDim)
}

// maxGraphT is the largest batch whose layer pass is replayed from a CUDA
// graph: decode batches. Longer prompt chunks launch directly (their launch
// cost is spread over many tokens, and each length would need its own graph).
const maxGraphT = 64

// topStride is the bytes of one row's top-k result on the device: ids and
// values of up to sample.MaxTop candidates, then the log-sum-exp (padded).
const topStride = 8*sample.MaxTop + 16

// maxSplits is the most shares attention over a row's positions is split
// into (decode rows: attention_split; prompt rows: attention_prompt), each
// row taking as many as its own position calls for.
const maxSplits = 16

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
// (headRows true: all of an AllLogits sequence, none of an Embed one,
// else its last).
func segmentsOf(batch []*backend.Seq, headRows bool) []segment {
	var segs []segment
	row := 0
	for _, s := range batch {
		n := len(s.Tokens)
		if headRows && s.Embed {
			continue // no logits rows
		}
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
