package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"testing"
	"unsafe"

	"worker-orcd/quant"
	"worker-orcd/sample"
)

// testDevice opens GPU 0 or skips: GPU tests are ordinary tests that skip
// cleanly where there is no NVIDIA driver (and fail instead with
// WORKER_TEST_REQUIRE_GPU=1).
func testDevice(t testing.TB) *Device {
	t.Helper()
	if os.Getenv("WORKER_TEST_NO_GPU") == "1" {
		t.Skip("WORKER_TEST_NO_GPU=1")
	}
	d, err := OpenDevice(0, "")
	if err != nil {
		if os.Getenv("WORKER_TEST_REQUIRE_GPU") == "1" {
			t.Fatalf("WORKER_TEST_REQUIRE_GPU=1 but no GPU: %v", err)
		}
		t.Skipf("no GPU: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

var poison = math.Float32frombits(0x7fc00001) // a NaN no kernel produces

func randRow(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// opHarness holds a backend-less set of kernels for op tests.
type opHarness struct {
	t    *testing.T
	d    *Device
	b    *Backend
	blas uintptr // a cuBLAS handle when libcublas loads
}

func newOpHarness(t *testing.T) *opHarness {
	d := testDevice(t)
	h := &opHarness{t: t, d: d, b: &Backend{dev: d}}
	if err := d.do(func() error {
		if err := d.loadModule("decoder", kernelsDecoder(), kernelDefines(), kernelNames()); err != nil {
			return err
		}
		return d.prepareMMT()
	}); err != nil {
		t.Fatal(err)
	}
	if loadCUBLAS("") == nil {
		d.do(func() error {
			var bh uintptr
			if cublas.cublasCreate_v2(&bh) == 0 && cublas.cublasSetStream_v2(bh, d.stream) == 0 {
				h.blas = bh
			}
			return nil
		})
		t.Cleanup(func() {
			d.do(func() error { h.b.freeGemm(); return nil })
			if h.blas != 0 {
				cublas.cublasDestroy_v2(h.blas)
			}
		})
	}
	return h
}

func (h *opHarness) upload(data []byte) *Buffer {
	h.t.Helper()
	var buf *Buffer
	err := h.d.do(func() (err error) {
		if buf, err = h.d.alloc(int64(len(data)), PurposeWorkspace); err != nil {
			return err
		}
		return h.d.copyToDevice(buf.Ptr, unsafe.Pointer(&data[0]), int64(len(data)))
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { h.d.Free(buf) })
	return buf
}

// pagedKV is one layer's keys and values laid out as the blocks of a paged
// cache (kvcache.go) on the device, in scrambled order (logical block i at
// physical block order[i], so a kernel that ignored the table would read
// the wrong rows), with the table of their addresses.
type pagedKV struct {
	buf, tab       *Buffer
	order          []int
	n, row, blocks int // positions, bytes a row, blocks
}

// pagedKV uploads k and v (n rows of row bytes each) as one layer's blocks.
func (h *opHarness) pagedKV(k, v []byte, n, row int) *pagedKV {
	h.t.Helper()
	nb := (n + kvBlockLen - 1) / kvBlockLen
	p := &pagedKV{order: make([]int, nb), n: n, row: row, blocks: nb}
	for i := range nb {
		p.order[i] = (i*7 + 3) % nb
		if nb%7 == 0 {
			p.order[i] = nb - 1 - i
		}
	}
	host := make([]byte, nb*2*kvBlockLen*row)
	for pos := range n {
		o := p.offset(pos)
		copy(host[o:o+row], k[pos*row:(pos+1)*row])
		copy(host[o+kvBlockLen*row:o+kvBlockLen*row+row], v[pos*row:(pos+1)*row])
	}
	p.buf = h.upload(host)
	// The header (the layer stride: one layer here, so any value serves
	// layer 0), then the blocks' addresses.
	tab := []uint64{uint64(nb * 2 * kvBlockLen * row)}
	for i := range nb {
		tab = append(tab, uint64(p.buf.Ptr)+uint64(p.order[i]*2*kvBlockLen*row))
	}
	p.tab = h.upload(bytesOf(tab))
	return p
}

// entries is what a kernel gets for a row of this cache: the address of
// the table's first block entry.
func (p *pagedKV) entries() uint64 { return uint64(p.tab.Ptr) + 8 }

// offset is the byte offset of position pos's key row in buf.
func (p *pagedKV) offset(pos int) int {
	return (p.order[pos/kvBlockLen]*2*kvBlockLen + pos%kvBlockLen) * p.row
}

// download returns the keys and values (contiguous rows) as the device holds them.
func (p *pagedKV) download(h *opHarness) (k, v []byte) {
	h.t.Helper()
	host := make([]byte, p.buf.Bytes)
	if err := h.d.do(func() error { return h.d.copyToHost(unsafe.Pointer(&host[0]), p.buf.Ptr, p.buf.Bytes) }); err != nil {
		h.t.Fatal(err)
	}
	k, v = make([]byte, p.n*p.row), make([]byte, p.n*p.row)
	for pos := range p.n {
		o := p.offset(pos)
		copy(k[pos*p.row:], host[o:o+p.row])
		copy(v[pos*p.row:], host[o+kvBlockLen*p.row:o+kvBlockLen*p.row+p.row])
	}
	return k, v
}

// bytesOf is the bytes of x.
func bytesOf[T any](x []T) []byte {
	var z T
	return unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), len(x)*int(unsafe.Sizeof(z)))
}

func (h *opHarness) uploadF32(x []float32) *Buffer {
	return h.upload(unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 4*len(x)))
}

// poisoned allocates n float32 filled with the poison NaN.
func (h *opHarness) poisoned(n int) *Buffer {
	x := make([]float32, n)
	for i := range x {
		x[i] = poison
	}
	return h.uploadF32(x)
}

func (h *opHarness) download(buf *Buffer, n int) []float32 {
	h.t.Helper()
	out := make([]float32, n)
	if err := h.d.do(func() error { return h.d.copyToHost(unsafe.Pointer(&out[0]), buf.Ptr, int64(4*n)) }); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func relErr(got []float32, want []float64) float64 {
	var num, den float64
	for i := range want {
		if math.IsNaN(float64(got[i])) {
			return math.Inf(1)
		}
		d := float64(got[i]) - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	return math.Sqrt(num / max(den, 1e-30))
}

func sortedTypes() []quant.Type {
	var ts []quant.Type
	for t := range kernelSuffix {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts
}

// TestMatMulAndEmbedParity: every weight type's matrix (mmu_/mmt_, mme_, cuBLAS) and embed_ kernels
// against the CPU's dequantization in float64, on fresh random data, with
// the outputs poisoned first. Bounds: embed is exact up to float rounding
// (1e-6 relative); mm sums float32 products (1e-5 relative).
func TestMatMulAndEmbedParity(t *testing.T) {
	h := newOpHarness(t)
	r := rand.New(rand.NewPCG(7, uint64(os.Getpid())))
	for _, typ := range sortedTypes() {
		for _, shape := range []struct{ rows, cols, T int }{{37, 256, 1}, {70, 512, 3}, {5, 768, 9}, {130, 256, 17}} {
			w, deq, rb := randQuantMatrix(t, r, typ, shape.rows, shape.cols)
			x := randRow(r, shape.T*shape.cols)
			want := matVec64(deq, x, shape.rows, shape.cols, shape.T)
			wb, xb, ob := h.upload(w), h.uploadF32(x), h.poisoned(shape.T*shape.rows)
			m := dmat{ptr: wb.Ptr, rows: shape.rows, cols: shape.cols, rowBytes: int64(rb), suffix: kernelSuffix[typ]}
			// Decode rows (T ≤ 8 here) of quantized types are integer dot
			// products with the activations rounded to 8 bits (mmq_): their
			// reference takes the same rounded activations (float32 sums of
			// exact integer products: 1e-5 relative).
			int8 := shape.T <= 8 && h.b.int8Decode(kernelSuffix[typ])
			wantDecode := want
			if int8 {
				wantDecode = matVec64(deq, q8Activations(x, shape.cols), shape.rows, shape.cols, shape.T)
			}
			if err := h.d.do(func() error { return h.b.mm(&m, xb.Ptr, ob.Ptr, shape.T) }); err != nil {
				t.Fatal(err)
			}
			// Decode rows (T ≤ 8 here) of the types on the tensor cores round
			// weights and activations to F16 (float32 sums): within 3e-3 as
			// for the cuBLAS path; the float32 kernels within 1e-5.
			tol := 1e-5
			if shape.T <= 8 && !int8 && h.b.tensorCoreDecode(kernelSuffix[typ]) {
				tol = 3e-3
			}
			if e := relErr(h.download(ob, shape.T*shape.rows), wantDecode); e > tol {
				t.Errorf("mm %s %dx%d T=%d: relative error %.3g > %g", kernelSuffix[typ], shape.rows, shape.cols, shape.T, e, tol)
			}
			// Prompt rows through cuBLAS (F16 weights and activations, float32
			// accumulation): within 3e-3 of the float64 reference.
			if h.blas != 0 {
				gb := h.poisoned(shape.T * shape.rows)
				h.b.blas = h.blas
				err := h.d.do(func() error { return h.b.gemmSegment(xb.Ptr, shape.T, false, mmOut{m: &m, out: gb.Ptr}) })
				h.b.blas = 0
				if err != nil {
					t.Fatal(err)
				}
				if e := relErr(h.download(gb, shape.T*shape.rows), want); e > 3e-3 {
					t.Errorf("cuBLAS path %s %dx%d T=%d: relative error %.3g > 3e-3", kernelSuffix[typ], shape.rows, shape.cols, shape.T, e)
				}
			}
			// The fused forms: bias + accumulate into existing values, and
			// glu (the same matrix as gate and up: silu(y)·y).
			bias := randRow(r, shape.rows)
			init := randRow(r, shape.T*shape.rows)
			bb, accb, glub := h.uploadF32(bias), h.uploadF32(init), h.poisoned(shape.T*shape.rows)
			err := h.d.do(func() error {
				if err := h.b.mmLaunch(xb.Ptr, shape.T, false, mmOut{m: &m, out: accb.Ptr, bias: bb.Ptr, accumulate: true}); err != nil {
					return err
				}
				return h.b.mmLaunch(xb.Ptr, shape.T, true, mmOut{m: &m, out: glub.Ptr}, mmOut{m: &m, out: glub.Ptr})
			})
			if err != nil {
				t.Fatal(err)
			}
			wantAcc, wantGLU := make([]float64, len(want)), make([]float64, len(want))
			for i, y := range wantDecode {
				wantAcc[i] = float64(init[i]) + y + float64(bias[i%shape.rows])
				wantGLU[i] = y / (1 + math.Exp(-y)) * y
			}
			if e := relErr(h.download(accb, len(want)), wantAcc); e > tol {
				t.Errorf("mm %s bias+accumulate T=%d: relative error %.3g", kernelSuffix[typ], shape.T, e)
			}
			if e := relErr(h.download(glub, len(want)), wantGLU); e > tol {
				t.Errorf("mm %s glu T=%d: relative error %.3g", kernelSuffix[typ], shape.T, e)
			}
			// Embedding: gather rows 3, 0, last.
			ids := []int32{3 % int32(shape.rows), 0, int32(shape.rows - 1)}
			idb := h.upload(unsafe.Slice((*byte)(unsafe.Pointer(&ids[0])), 12))
			eb := h.poisoned(3 * shape.cols)
			err = h.d.do(func() error {
				return h.d.embed(&m, idb.Ptr, eb.Ptr, 3)
			})
			if err != nil {
				t.Fatal(err)
			}
			wantE := make([]float64, 3*shape.cols)
			for k, id := range ids {
				for i := range shape.cols {
					wantE[k*shape.cols+i] = float64(deq[int(id)*shape.cols+i])
				}
			}
			if e := relErr(h.download(eb, 3*shape.cols), wantE); e > 1e-6 {
				t.Errorf("embed_%s cols %d: relative error %.3g > 1e-6", kernelSuffix[typ], shape.cols, e)
			}
		}
	}
}

// promptSplits runs prompt rows of m through gemmSegment, rows [s_i,
// s_i+1) of splits a call each: x (rows of cols, on the device) with the
// bias b added into init (accumulate), and glu with m as gate and up;
// it returns both outputs (T rows of m.rows).
func (h *opHarness) promptSplits(m *dmat, x, b devicePtr, init []float32, T int, splits ...int) (acc, glu []float32) {
	h.t.Helper()
	rows, cols := m.rows, m.cols
	accb, glub := h.uploadF32(init), h.poisoned(T*rows)
	err := h.d.do(func() error {
		for i := 0; i+1 < len(splits); i++ {
			c0, n := splits[i], splits[i+1]-splits[i]
			xo := x + devicePtr(4*c0*cols)
			if err := h.b.gemmSegment(xo, n, false, mmOut{m: m, out: accb.Ptr + devicePtr(4*c0*rows), bias: b, accumulate: true}); err != nil {
				return err
			}
			if err := h.b.gemmSegment(xo, n, true, mmOut{m: m, out: glub.Ptr + devicePtr(4*c0*rows)}, mmOut{m: m, out: glub.Ptr + devicePtr(4*c0*rows)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return h.download(accb, T*rows), h.download(glub, T*rows)
}

// TestPromptProductsGrouped: prompt rows through cuBLAS over several tiles,
// in groups of one tile and of two (gemmGroupBytes lowered), plain with a
// bias added into existing values, and glu: within 3e-3 of the float64
// reference (F16 operands), and each row bit for bit the same whatever the
// grouping and however the rows are split into calls.
func TestPromptProductsGrouped(t *testing.T) {
	h := newOpHarness(t)
	if h.blas == 0 {
		t.Skip("no cuBLAS")
	}
	r := rand.New(rand.NewPCG(17, uint64(os.Getpid())))
	defer func(v int) { gemmGroupBytes = v }(gemmGroupBytes)
	for _, typ := range []quant.Type{quant.Q4_K, quant.F16} {
		rows, cols, T := 96, 256, 2*gemmTile+5
		rb, err := quant.RowBytes(typ, cols)
		if err != nil {
			t.Fatal(err)
		}
		w := make([]byte, rb*rows)
		deq := make([]float32, rows*cols)
		for row := range rows {
			if err := quant.Quantize(typ, randRow(r, cols), w[row*rb:(row+1)*rb]); err != nil {
				t.Fatal(err)
			}
			if err := quant.Dequantize(typ, w[row*rb:(row+1)*rb], deq[row*cols:(row+1)*cols]); err != nil {
				t.Fatal(err)
			}
		}
		x, bias, init := randRow(r, T*cols), randRow(r, rows), randRow(r, T*rows)
		wantAcc, wantGLU := make([]float64, T*rows), make([]float64, T*rows)
		for tt := range T {
			for row := range rows {
				var y float64
				for i := range cols {
					y += float64(deq[row*cols+i]) * float64(x[tt*cols+i])
				}
				wantAcc[tt*rows+row] = float64(init[tt*rows+row]) + y + float64(bias[row])
				wantGLU[tt*rows+row] = y / (1 + math.Exp(-y)) * y
			}
		}
		wb, xb, bb := h.upload(w), h.uploadF32(x), h.uploadF32(bias)
		m := dmat{ptr: wb.Ptr, rows: rows, cols: cols, rowBytes: int64(rb), suffix: kernelSuffix[typ]}
		// run computes rows [c0, c1) of each split in one call each.
		run := func(splits ...int) (acc, glu []float32) {
			h.b.blas = h.blas
			defer func() { h.b.blas = 0 }()
			return h.promptSplits(&m, xb.Ptr, bb.Ptr, init, T, splits...)
		}
		var refAcc, refGLU []float32
		for _, c := range []struct {
			tiles  int // a group's tiles
			splits []int
		}{{1, []int{0, T}}, {2, []int{0, T}}, {2, []int{0, 7, gemmTile + 9, T}}} {
			gemmGroupBytes = c.tiles * gemmTile * rows * 4
			acc, glu := run(c.splits...)
			if e := relErr(acc, wantAcc); e > 3e-3 {
				t.Errorf("%s bias+accumulate, groups of %d tiles, calls %v: relative error %.3g", kernelSuffix[typ], c.tiles, c.splits, e)
			}
			if e := relErr(glu, wantGLU); e > 3e-3 {
				t.Errorf("%s glu, groups of %d tiles, calls %v: relative error %.3g", kernelSuffix[typ], c.tiles, c.splits, e)
			}
			if refAcc == nil {
				refAcc, refGLU = acc, glu
				continue
			}
			for i := range acc {
				if math.Float32bits(acc[i]) != math.Float32bits(refAcc[i]) || math.Float32bits(glu[i]) != math.Float32bits(refGLU[i]) {
					t.Fatalf("%s, groups of %d tiles, calls %v: row %d differs from one call in groups of one tile", kernelSuffix[typ], c.tiles, c.splits, i/rows)
				}
			}
		}
	}
}

// TestTensorCoreDecode: the mmt_ kernels (decode rows on the tensor cores)
// for every type that uses them, over widths whose units fill the 8 warps'
// steps unevenly or leave a partial step, 70 decode rows (two token blocks),
// plain and glu: within 3e-3 of the float64 reference, every output written,
// and each row bit-identical when computed alone, in a batch of 9, or at
// another place of the 70 (batch invariance at the kernel level).
func TestTensorCoreDecode(t *testing.T) {
	h := newOpHarness(t)
	if h.d.Arch() < 80 {
		t.Skipf("sm_%d has no mma.m16n8k16: decode rows use the float32 kernels", h.d.Arch())
	}
	h.b.int8 = false // the quantized types too, as with several decode rows a step
	r := rand.New(rand.NewPCG(11, uint64(os.Getpid())))
	const T = 70
	for _, typ := range sortedTypes() {
		sfx := kernelSuffix[typ]
		if !h.b.tensorCoreDecode(sfx) {
			continue
		}
		for _, shape := range []struct{ rows, cols int }{{40, 352}, {24, 1024}, {19, 2816}} {
			if shape.cols%typ.BlockSize() != 0 {
				continue
			}
			w, deq, rb := randQuantMatrix(t, r, typ, shape.rows, shape.cols)
			x := randRow(r, T*shape.cols)
			want := make([]float64, T*shape.rows)
			for tt := range T {
				for row := range shape.rows {
					var s float64
					for i := range shape.cols {
						s += float64(deq[row*shape.cols+i]) * float64(x[tt*shape.cols+i])
					}
					want[tt*shape.rows+row] = s
				}
			}
			wb, xb := h.upload(w), h.uploadF32(x)
			m := dmat{ptr: wb.Ptr, rows: shape.rows, cols: shape.cols, rowBytes: int64(rb), suffix: sfx}
			// run computes n decode rows starting at x row from, plain or glu.
			run := func(from, n int, glu bool) []float32 {
				ob := h.poisoned(n * shape.rows)
				o16 := h.poisoned((n*shape.rows + 1) / 2)
				err := h.d.do(func() error {
					h.b.segs = []segment{{0, n, false}}
					defer func() { h.b.segs = nil }()
					xp := xb.Ptr + devicePtr(4*from*shape.cols)
					if glu {
						return h.b.mmLaunch(xp, n, true, mmOut{m: &m, out: ob.Ptr, out16: o16.Ptr}, mmOut{m: &m, out: ob.Ptr})
					}
					return h.b.mmLaunch(xp, n, false, mmOut{m: &m, out: ob.Ptr})
				})
				if err != nil {
					t.Fatal(err)
				}
				got := h.download(ob, n*shape.rows)
				if glu {
					// The F16 copy of a glu output: within half an F16 ulp.
					raw := h.download(o16, (n*shape.rows+1)/2)
					h16 := unsafe.Slice((*uint16)(unsafe.Pointer(&raw[0])), n*shape.rows)
					for i, v := range got {
						if d := math.Abs(float64(halfToFloat(h16[i]) - v)); d > math.Abs(float64(v))/2048+1e-7 {
							t.Fatalf("mmt_%s glu F16 copy [%d] = %g, output %g", sfx, i, halfToFloat(h16[i]), v)
						}
					}
				}
				return got
			}
			for _, split := range []struct{ parts, tok int }{{0, 0}, {1, 64}, {2, 64}, {4, 32}, {8, 32}, {8, 8}} {
				if split.tok > 0 { // the most tokens the shared memory takes with this many stages
					split.tok = min(split.tok, 256/(mmtStages*split.parts))
				}
				h.b.mmtParts, h.b.mmtTok = split.parts, split.tok
				for _, glu := range []bool{false, true} {
					full := run(0, T, glu)
					ref := want
					if glu {
						ref = make([]float64, len(want))
						for i, y := range want {
							ref[i] = y / (1 + math.Exp(-y)) * y
						}
					}
					if e := relErr(full, ref); e > 3e-3 {
						t.Errorf("mmt_%s %dx%d T=%d glu=%v split %+v: relative error %.3g > 3e-3", sfx, shape.rows, shape.cols, T, glu, split, e)
					}
					for _, from := range []int{0, 5, 61, 64, 69} {
						alone := run(from, 1, glu)
						if !slices.Equal(alone, full[from*shape.rows:(from+1)*shape.rows]) {
							t.Errorf("mmt_%s %dx%d glu=%v split %+v: row %d alone differs from the same row among %d", sfx, shape.rows, shape.cols, glu, split, from, T)
						}
					}
					// The same rows in a batch of 9 with the default token
					// count a block (so a different one from the 70 above).
					h.b.mmtTok = 0
					nine := run(3, 9, glu)
					h.b.mmtTok = split.tok
					if !slices.Equal(nine, full[3*shape.rows:12*shape.rows]) {
						t.Errorf("mmt_%s %dx%d glu=%v split %+v: rows 3..11 in a batch of 9 differ from the same rows among %d", sfx, shape.rows, shape.cols, glu, split, T)
					}
				}
			}
			h.b.mmtParts, h.b.mmtTok = 0, 0
		}
		h.d.do(func() error {
			regs, local, shared, err := h.d.kernelResources("mmt_" + sfx)
			if err == nil {
				t.Logf("mmt_%s: %d registers, %d local bytes a thread, %d shared bytes a block", sfx, regs, local, shared)
			}
			return nil
		})
	}
}

// TestNormRopeAttentionParity checks the float kernels against float64
// references written here.
func TestNormRopeAttentionParity(t *testing.T) {
	h := newOpHarness(t)
	r := rand.New(rand.NewPCG(11, uint64(os.Getpid())))
	// RMS norm.
	T, n := 5, 896
	x, w := randRow(r, T*n), randRow(r, n)
	want := make([]float64, T*n)
	for tt := range T {
		var ss float64
		for i := range n {
			ss += float64(x[tt*n+i]) * float64(x[tt*n+i])
		}
		s := 1 / math.Sqrt(ss/float64(n)+1e-6)
		for i := range n {
			want[tt*n+i] = float64(x[tt*n+i]) * s * float64(w[i])
		}
	}
	xb, wb, ob := h.uploadF32(x), h.uploadF32(w), h.poisoned(T*n)
	h.b.c = testConfig()
	if err := h.d.do(func() error { return h.b.rmsNorm(xb.Ptr, wb.Ptr, ob.Ptr, 0, T, n) }); err != nil {
		t.Fatal(err)
	}
	if e := relErr(h.download(ob, T*n), want); e > 1e-6 {
		t.Errorf("rms_norm: relative error %.3g", e)
	}
	// Attention with GQA and a sliding window, through kv_store, against a
	// float64 softmax.
	// 16 splits leave most empty for the row at position 0; 1 split is the
	// plain online softmax; 96 is Phi-3's head dimension (24 of 32 lanes).
	for _, c := range []struct{ window, hd, splits int }{{0, 64, 16}, {7, 64, 3}, {2, 64, 1}, {0, 96, 16}, {300, 96, 5}} {
		window, splits := c.window, c.splits
		nh, nkv, hd, L := 4, 2, c.hd, 1500 // L > one 1024-position chunk
		kvd := nkv * hd
		K, V := randRow(r, L*kvd), randRow(r, L*kvd)
		Tq := 3
		q := randRow(r, Tq*nh*hd)
		pos := []int32{0, 700, int32(L - 1)}
		// The cache in float32, then in F16 (the reference then uses the
		// F16 values the kernel reads).
		for _, kvt := range []string{"f32", "f16"} {
			kh, vh, row := bytesOf(K), bytesOf(V), 4*kvd
			if kvt == "f16" {
				kh, vh, row = h.f16Bytes(K), h.f16Bytes(V), 2*kvd
			}
			cache := h.pagedKV(kh, vh, L, row)
			qb, ob := h.uploadF32(q), h.poisoned(Tq*nh*hd)
			tabs := make([]uint64, Tq)
			for i := range Tq {
				tabs[i] = cache.entries()
			}
			pb := h.upload(bytesOf(tabs))
			posb := h.upload(bytesOf(pos))
			scale := float32(1 / math.Sqrt(float64(hd)))
			part := h.poisoned(Tq * nh * splits * (hd + 2))
			err := h.d.do(func() error {
				if err := h.d.attentionSplit(kvt, qb.Ptr, part.Ptr, pb.Ptr, posb.Ptr, 0, Tq,
					headShape{nHead: nh, nKV: nkv, headDim: hd}, window, scale, splits); err != nil {
					return err
				}
				return h.d.attentionMerge(part.Ptr, ob.Ptr, 0, Tq, nh, hd, splits)
			})
			if err != nil {
				t.Fatal(err)
			}
			var want []float64
			for tt := range Tq {
				want = append(want, refAttention(q[tt*nh*hd:(tt+1)*nh*hd], K, V, nh, nkv, hd, int(pos[tt]), window, scale)...)
			}
			if e := relErr(h.download(ob, Tq*nh*hd), want); e > 1e-5 {
				t.Errorf("attention (%s cache) window %d, head dimension %d: relative error %.3g", kvt, window, hd, e)
			}
		}
	}
}

// f16Bytes is f16Cache's F16 values as bytes (x overwritten likewise).
func (h *opHarness) f16Bytes(x []float32) []byte {
	h.t.Helper()
	buf := h.f16Cache(x)
	out := make([]byte, 2*len(x))
	if err := h.d.do(func() error { return h.d.copyToHost(unsafe.Pointer(&out[0]), buf.Ptr, int64(len(out))) }); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// f16Cache uploads x rounded to F16 on the device (to_f16_rows, as a cache
// store rounds) and overwrites x with the rounded values, which a reference
// then reads.
func (h *opHarness) f16Cache(x []float32) *Buffer {
	h.t.Helper()
	n := len(x)
	xb, out := h.uploadF32(x), h.poisoned((n+1)/2)
	if err := h.d.do(func() error { return h.d.toF16Rows(xb.Ptr, out.Ptr, n) }); err != nil {
		h.t.Fatal(err)
	}
	raw := h.download(out, (n+1)/2)
	for i, v := range unsafe.Slice((*uint16)(unsafe.Pointer(&raw[0])), n) {
		x[i] = halfToFloat(v)
	}
	return out
}

// refAttention is one row's attention in float64: q [nh·hd] at position pos
// (positions pos−window+1 … pos with a window, else 0 … pos) over K and V
// [positions, nkv·hd], KV head hh/(nh/nkv) for head hh.
func refAttention(q, K, V []float32, nh, nkv, hd, pos, window int, scale float32) []float64 {
	kvd := nkv * hd
	out := make([]float64, nh*hd)
	first := 0
	if window > 0 {
		first = max(0, pos-window+1)
	}
	for hh := range nh {
		kh := hh / (nh / nkv)
		var sc []float64
		mx := math.Inf(-1)
		for pp := first; pp <= pos; pp++ {
			var s float64
			for i := range hd {
				s += float64(q[hh*hd+i]) * float64(K[pp*kvd+kh*hd+i])
			}
			s *= float64(scale)
			sc = append(sc, s)
			mx = math.Max(mx, s)
		}
		var sum float64
		for i := range sc {
			sc[i] = math.Exp(sc[i] - mx)
			sum += sc[i]
		}
		for i := range hd {
			var a float64
			for j, pp := 0, first; pp <= pos; j, pp = j+1, pp+1 {
				a += sc[j] * float64(V[pp*kvd+kh*hd+i])
			}
			out[hh*hd+i] = a / sum
		}
	}
	return out
}

// TestPromptAttentionParity: attention_prompt and the merge against a
// float64 softmax (over the F16 cache values the kernel reads; Q and P are
// rounded to F16, hence the tolerance) for head dimensions 64, 96 and 128
// with GQA, with and without a sliding window, over two sequences in one
// launch (one a chunk after 600 cached positions, so its rows take three
// shares of the positions; a warp holds rows of both); each row bit for bit
// the same when its sequence runs alone or in chunks; cache positions past
// the rows' hold NaN, which a read past them would spread.
func TestPromptAttentionParity(t *testing.T) {
	h := newOpHarness(t)
	if h.d.Arch() < 80 {
		t.Skipf("attention_prompt needs tensor cores (sm_80+); this card is sm_%d", h.d.Arch())
	}
	r := rand.New(rand.NewPCG(13, uint64(os.Getpid())))
	nan := float32(math.NaN())
	for _, c := range []struct{ hd, window int }{{64, 0}, {64, 20}, {96, 0}, {96, 300}, {128, 0}} {
		nh, nkv, hd, L, splits := 4, 2, c.hd, 700, maxSplits
		kvd := nkv * hd
		// Rows 0..36: sequence 0 at positions 600..636; rows 37..99: sequence 1 at 0..62.
		var seqOf, pos []int32
		for p := 600; p <= 636; p++ {
			seqOf, pos = append(seqOf, 0), append(pos, int32(p))
		}
		for p := 0; p <= 62; p++ {
			seqOf, pos = append(seqOf, 1), append(pos, int32(p))
		}
		last := []int{636, 62}
		// Each sequence's cache in F16, NaN past its last position.
		type seqCache struct {
			paged  *pagedKV
			kf, vf []float32
		}
		caches := make([]seqCache, 2)
		for i := range caches {
			kf, vf := randRow(r, L*kvd), randRow(r, L*kvd)
			for j := (last[i] + 1) * kvd; j < L*kvd; j++ {
				kf[j], vf[j] = nan, nan
			}
			caches[i] = seqCache{h.pagedKV(h.f16Bytes(kf), h.f16Bytes(vf), L, 2*kvd), kf, vf}
		}
		T := len(pos)
		q := randRow(r, T*nh*hd)
		tabs := make([]uint64, T)
		for i, s := range seqOf {
			tabs[i] = caches[s].paged.entries()
		}
		qb := h.uploadF32(q)
		pb := h.upload(bytesOf(tabs))
		posb := h.upload(bytesOf(pos))
		scale := float32(1 / math.Sqrt(float64(hd)))
		shape := headShape{nHead: nh, nKV: nkv, headDim: hd}
		// run launches each chunk {first row, rows} on freshly poisoned
		// buffers and returns the whole output.
		run := func(chunks ...[2]int) []float32 {
			out, part := h.poisoned(T*nh*hd), h.poisoned(T*nh*splits*(hd+2))
			err := h.d.do(func() error {
				for _, ch := range chunks {
					o := devicePtr(ch[0])
					pt := part.Ptr + 4*o*devicePtr(nh*splits*(hd+2))
					if err := h.d.attentionPrompt(qb.Ptr+4*o*devicePtr(nh*hd), pt, pb.Ptr+8*o, posb.Ptr+4*o, 0, ch[1],
						shape, c.window, scale, splits); err != nil {
						return err
					}
					if err := h.d.attentionMerge(pt, out.Ptr+4*o*devicePtr(nh*hd), 0, ch[1], nh, hd, splits); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return h.download(out, T*nh*hd)
		}
		all := run([2]int{0, T})
		var want []float64
		for tt := range T {
			cc := caches[seqOf[tt]]
			want = append(want, refAttention(q[tt*nh*hd:(tt+1)*nh*hd], cc.kf, cc.vf, nh, nkv, hd, int(pos[tt]), c.window, scale)...)
		}
		if e := relErr(all, want); e > 5e-3 {
			t.Errorf("attention_prompt head dimension %d window %d: relative error %.3g", hd, c.window, e)
		}
		// Each sequence alone, and in chunks: the same bits for its rows.
		for _, cs := range []struct {
			rows   [2]int
			chunks [][2]int
		}{
			{[2]int{0, 37}, [][2]int{{0, 37}}}, {[2]int{0, 37}, [][2]int{{0, 5}, {5, 32}}},
			{[2]int{37, 100}, [][2]int{{37, 63}}}, {[2]int{37, 100}, [][2]int{{37, 21}, {58, 42}}},
		} {
			got := run(cs.chunks...)
			for i := cs.rows[0] * nh * hd; i < cs.rows[1]*nh*hd; i++ {
				if math.Float32bits(got[i]) != math.Float32bits(all[i]) {
					t.Fatalf("head dimension %d window %d, launches %v: element %d is %g, %g in the launch of both sequences", hd, c.window, cs.chunks, i, got[i], all[i])
				}
			}
		}
	}
}

// TestTopKParity: the device top-k (values, ids, ties to the lower id) and
// log-sum-exp against the host's selection, on rows with many ties, with
// NaN, with a short last chunk, with vocabularies long enough to lengthen
// the chunks, and under masks (a grammar's: refused ids count as −Inf; one
// allowing 5 % of the ids, one allowing 3 with K = 40); and a row's result
// bit for bit the same alone and between two other rows (the chunking
// depends on V only).
func TestTopKParity(t *testing.T) {
	h := newOpHarness(t)
	r := rand.New(rand.NewPCG(5, uint64(os.Getpid())))
	fill := func(x []float32, kind string) {
		for i := range x {
			switch kind {
			case "normal":
				x[i] = float32(r.NormFloat64() * 3)
			case "ties":
				x[i] = float32(r.IntN(9)) - 4
			case "nan":
				x[i] = float32(r.NormFloat64())
				if i%97 == 0 {
					x[i] = float32(math.NaN())
				}
			}
		}
	}
	for _, c := range []struct {
		V, K       int
		kind, mask string
	}{
		{151936, 1, "normal", ""}, {151936, 40, "normal", ""}, {151936, 256, "normal", ""}, {32064, 256, "ties", ""},
		{1000, 7, "ties", ""}, {5000, 20, "nan", ""}, {3*4096 + 5, 256, "ties", ""}, {300000, 50, "normal", ""}, {256, 256, "normal", ""},
		{256, 256, "nan", ""}, {151936, 40, "normal", "sparse"}, {151936, 1, "ties", "sparse"}, {151936, 40, "normal", "three"},
	} {
		// Three rows: the case's row between two others.
		x := make([]float32, 3*c.V)
		fill(x, c.kind)
		row := x[c.V : 2*c.V]
		xb := h.uploadF32(x)
		rec := 2*c.K + 1 // floats a row's result takes
		scratch := h.poisoned(int(3 * topkScratchBytes(c.V) / 4))
		words := allowWords(c.V)
		var allow devicePtr
		if c.mask != "" {
			bits := make([]uint64, 3*words)
			for rr := range 3 {
				for n := 0; n < 3; n++ {
					if c.mask == "three" {
						id := r.IntN(c.V)
						bits[rr*words+id/64] |= 1 << (id % 64)
					}
				}
				for id := 0; c.mask == "sparse" && id < c.V; id++ {
					if r.IntN(20) == 0 {
						bits[rr*words+id/64] |= 1 << (id % 64)
					}
				}
			}
			for id := range c.V { // the host's reference: refused ids at −Inf
				if bits[words+id/64]>>(id%64)&1 == 0 {
					row[id] = float32(math.Inf(-1))
				}
			}
			allow = h.upload(unsafe.Slice((*byte)(unsafe.Pointer(&bits[0])), 8*len(bits))).Ptr
		}
		run := func(first, rows int) []float32 {
			out := h.poisoned(rows * rec)
			err := h.d.do(func() error {
				a := allow
				if a != 0 {
					a += devicePtr(8 * first * words)
				}
				return h.d.topK(xb.Ptr+devicePtr(4*first*c.V), rows, c.V, c.K, out.Ptr, out.Ptr+devicePtr(4*c.K), out.Ptr+devicePtr(8*c.K),
					int64(c.V), int64(4*rec), scratch.Ptr, a, int64(words))
			})
			if err != nil {
				t.Fatal(err)
			}
			return h.download(out, rows*rec)
		}
		// The candidates come in no order: sorted as the host sorts them.
		sorted := func(res []float32) []sample.Candidate {
			cands := make([]sample.Candidate, c.K)
			for i := range cands {
				cands[i] = sample.Candidate{ID: int32(math.Float32bits(res[i])), Logprob: res[c.K+i]}
			}
			sample.SortCandidates(cands)
			return cands
		}
		alone := run(1, 1)
		among := run(0, 3)[rec : 2*rec]
		cands, other := sorted(alone), sorted(among)
		for i := range cands {
			if cands[i].ID != other[i].ID || math.Float32bits(cands[i].Logprob) != math.Float32bits(other[i].Logprob) {
				t.Fatalf("V=%d K=%d %s: candidate %d is %+v alone, %+v between two rows", c.V, c.K, c.kind, i, cands[i], other[i])
			}
		}
		if a, b := math.Float32bits(alone[2*c.K]), math.Float32bits(among[2*c.K]); a != b {
			t.Fatalf("V=%d K=%d %s: log-sum-exp %#x alone, %#x between two rows", c.V, c.K, c.kind, a, b)
		}
		want := sample.TopOf(row, c.K)
		for i := range want {
			if cands[i].ID != want[i].ID || cands[i].Logprob != want[i].Logprob {
				t.Fatalf("V=%d K=%d %s: candidate %d is %+v, host %+v", c.V, c.K, c.kind, i, cands[i], want[i])
			}
		}
		clean := make([]float32, 0, len(row))
		for _, v := range row {
			if v == v && !math.IsInf(float64(v), -1) {
				clean = append(clean, v)
			}
		}
		lse := sample.LogSumExp(clean)
		if d := math.Abs(float64(alone[2*c.K]) - lse); d > 1e-4 {
			t.Errorf("V=%d %s mask %q: log-sum-exp %.6f, host %.6f", c.V, c.kind, c.mask, alone[2*c.K], lse)
		}
	}
}

// TestDecodeKernelTiming (WORKER_TEST_TIMING=1) times the decode matrix
// kernels on real-shape matrices filled with random bytes: the float32 unit
// kernel mmu_ (4 tokens a block), the integer mmq_ (quantized types) and
// the tensor-core mmt_ (64 tokens a block) at 1, 2, 4, 8, 16 and 64 decode rows, median of 20 launches by device events
// (WORKER_TEST_TIMING=ncu: one launch of each, for the profiler),
// and the weight bytes over that time.
func TestDecodeKernelTiming(t *testing.T) {
	reps, warm := 20, 3
	switch os.Getenv("WORKER_TEST_TIMING") {
	case "1":
	case "ncu": // one launch of each under the profiler
		reps, warm = 1, 0
	default:
		t.Skip("set WORKER_TEST_TIMING=1 (or ncu)")
	}
	h := newOpHarness(t)
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		name       string
		typ        quant.Type
		rows, cols int
	}{
		{"qwen ffn_gate", quant.Q5_0, 4864, 896}, {"qwen ffn_down", quant.Q4_K, 896, 4864}, {"qwen output", quant.Q8_0, 151936, 896},
		{"phi3 ffn_up", quant.Q4_K, 8192, 3072}, {"phi3 ffn_down", quant.Q6_K, 3072, 8192}, {"f16 3072²", quant.F16, 3072, 3072},
	} {
		rb, err := quant.RowBytes(c.typ, c.cols)
		if err != nil {
			t.Fatal(err)
		}
		w := make([]byte, rb*c.rows)
		for i := range w {
			w[i] = byte(r.Uint32())
		}
		sfx := kernelSuffix[c.typ]
		wb, xb, ob := h.upload(w), h.uploadF32(randRow(r, 64*c.cols)), h.poisoned(64*c.rows)
		var x16 devicePtr
		if err := h.d.do(func() (err error) { x16, err = h.b.toF16(xb.Ptr, 64*c.cols); return err }); err != nil {
			t.Fatal(err)
		}
		for _, T := range []int{1, 2, 4, 8, 16, 64} {
			a := &mmArgs{NJobs: 1, X: xb.Ptr, Cols: int32(c.cols), T: int32(T)}
			a.Job[0] = mmJob{W: wb.Ptr, RowBytes: int64(rb), Out: ob.Ptr, Rows: int32(c.rows)}
			m := dmat{ptr: wb.Ptr, rows: c.rows, cols: c.cols, rowBytes: int64(rb), suffix: sfx}
			// Variants: the unit kernel, mmt_ with the split chosen by shape,
			// the same with twice the launcher's tokens a block (where
			// allowed), and mmt_ with each split forced.
			parts := mmtPartsFor(int(blocks(c.rows, 16)))
			autoTok := mmtTokensFor(int(blocks(int(blocks(c.rows, 16)), mmtWarps/parts)), parts, T)
			names := []string{"mmu_", "mmq", "mmt", "2tok", "P=1", "P=2", "P=4", "P=8"}
			res := make([]float64, len(names))
			for k, name := range names {
				h.b.int8 = name == "mmq" // every other variant is mmt_ (or mmu_)
				if name == "mmq" && !h.b.int8Decode(sfx) {
					continue
				}
				h.b.mmtParts = []int{0, 0, 0, 0, 1, 2, 4, 8}[k]
				if name == "2tok" {
					h.b.mmtTok = min(2*autoTok, mmtTokens, 256/(mmtStages*parts), (T+7)/8*8)
				}
				err := h.d.do(func() error {
					h.b.segs = []segment{{0, T, false}}
					defer func() { h.b.segs, h.b.mmtParts, h.b.mmtTok = nil, 0, 0 }()
					var start, end cuEvent
					drv.cuEventCreate(&start, 0)
					drv.cuEventCreate(&end, 0)
					defer drv.cuEventDestroy_v2(start)
					defer drv.cuEventDestroy_v2(end)
					var ms []float64
					for i := range reps + warm {
						drv.cuEventRecord(start, h.d.stream)
						var err error
						if name == "mmu_" {
							err = h.d.mmu(sfx, a, c.rows)
						} else {
							err = h.b.mmLaunch16(xb.Ptr, x16, T, false, mmOut{m: &m, out: ob.Ptr})
						}
						if err != nil {
							return err
						}
						drv.cuEventRecord(end, h.d.stream)
						if err := check("cuEventSynchronize", drv.cuEventSynchronize(end)); err != nil {
							return err
						}
						var v float32
						drv.cuEventElapsedTime(&v, start, end)
						if i >= warm {
							ms = append(ms, float64(v))
						}
					}
					slices.Sort(ms)
					res[k] = ms[len(ms)/2]
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			line := fmt.Sprintf("timing stages %d prefetch %d %-14s %-5s T=%-2d (auto P=%d tok %d)", mmtStages, mmtPrefetch, c.name, sfx, T, parts, autoTok)
			for k, name := range names {
				if res[k] > 0 {
					line += fmt.Sprintf("  %s %.1f µs %.0f GB/s", name, 1000*res[k], float64(len(w))/res[k]/1e6)
				}
			}
			t.Log(line)
		}
	}
}

// halfToFloat decodes an IEEE F16 value.
func halfToFloat(h uint16) float32 {
	sign := float32(1)
	if h&0x8000 != 0 {
		sign = -1
	}
	e, f := int(h>>10&31), float64(h&1023)
	switch e {
	case 0:
		return sign * float32(math.Ldexp(f, -24))
	case 31:
		if f == 0 {
			return sign * float32(math.Inf(1))
		}
		return float32(math.NaN())
	}
	return sign * float32(math.Ldexp(1+f/1024, e-15))
}
