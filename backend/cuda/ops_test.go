package cuda

import (
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
// cleanly where there is no NVIDIA driver.
func testDevice(t testing.TB) *Device {
	t.Helper()
	if os.Getenv("WORKER_TEST_NO_GPU") == "1" {
		t.Skip("WORKER_TEST_NO_GPU=1")
	}
	d, err := OpenDevice(0, "")
	if err != nil {
		t.Skipf("no GPU: %v", err)
	}
	t.Cleanup(d.Close)
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
	if err := d.do(func() error { return d.loadModule("decoder", kernelsDecoder(), kernelNames()) }); err != nil {
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

// TestMatMulAndEmbedParity: every weight type's mm_ and embed_ kernels
// against the CPU's dequantization in float64, on fresh random data, with
// the outputs poisoned first. Bounds: embed is exact up to float rounding
// (1e-6 relative); mm sums float32 products (1e-5 relative).
func TestMatMulAndEmbedParity(t *testing.T) {
	h := newOpHarness(t)
	r := rand.New(rand.NewPCG(7, uint64(os.Getpid())))
	for _, typ := range sortedTypes() {
		for _, shape := range []struct{ rows, cols, T int }{{37, 256, 1}, {70, 512, 3}, {5, 768, 9}, {130, 256, 17}} {
			rb, err := quant.RowBytes(typ, shape.cols)
			if err != nil {
				t.Fatal(err)
			}
			w := make([]byte, rb*shape.rows)
			deq := make([]float32, shape.rows*shape.cols)
			for row := range shape.rows {
				if err := quant.Quantize(typ, randRow(r, shape.cols), w[row*rb:(row+1)*rb]); err != nil {
					t.Fatal(err)
				}
				if err := quant.Dequantize(typ, w[row*rb:(row+1)*rb], deq[row*shape.cols:(row+1)*shape.cols]); err != nil {
					t.Fatal(err)
				}
			}
			x := randRow(r, shape.T*shape.cols)
			want := make([]float64, shape.T*shape.rows)
			for tt := range shape.T {
				for row := range shape.rows {
					var s float64
					for i := range shape.cols {
						s += float64(deq[row*shape.cols+i]) * float64(x[tt*shape.cols+i])
					}
					want[tt*shape.rows+row] = s
				}
			}
			wb, xb, ob := h.upload(w), h.uploadF32(x), h.poisoned(shape.T*shape.rows)
			m := dmat{ptr: wb.Ptr, rows: shape.rows, cols: shape.cols, rowBytes: int64(rb), suffix: kernelSuffix[typ]}
			if err := h.d.do(func() error { return h.b.mm(&m, xb.Ptr, ob.Ptr, shape.T) }); err != nil {
				t.Fatal(err)
			}
			if e := relErr(h.download(ob, shape.T*shape.rows), want); e > 1e-5 {
				t.Errorf("mm_%s %dx%d T=%d: relative error %.3g > 1e-5", kernelSuffix[typ], shape.rows, shape.cols, shape.T, e)
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
			err = h.d.do(func() error {
				if err := h.b.mmLaunch(xb.Ptr, shape.T, false, mmOut{m: &m, out: accb.Ptr, bias: bb.Ptr, accumulate: true}); err != nil {
					return err
				}
				return h.b.mmLaunch(xb.Ptr, shape.T, true, mmOut{m: &m, out: glub.Ptr}, mmOut{m: &m, out: glub.Ptr})
			})
			if err != nil {
				t.Fatal(err)
			}
			wantAcc, wantGLU := make([]float64, len(want)), make([]float64, len(want))
			for i, y := range want {
				wantAcc[i] = float64(init[i]) + y + float64(bias[i%shape.rows])
				wantGLU[i] = y / (1 + math.Exp(-y)) * y
			}
			if e := relErr(h.download(accb, len(want)), wantAcc); e > 1e-5 {
				t.Errorf("mm_%s bias+accumulate T=%d: relative error %.3g", kernelSuffix[typ], shape.T, e)
			}
			if e := relErr(h.download(glub, len(want)), wantGLU); e > 1e-5 {
				t.Errorf("mm_%s glu T=%d: relative error %.3g", kernelSuffix[typ], shape.T, e)
			}
			// Embedding: gather rows 3, 0, last.
			ids := []int32{3 % int32(shape.rows), 0, int32(shape.rows - 1)}
			idb := h.upload(unsafe.Slice((*byte)(unsafe.Pointer(&ids[0])), 12))
			eb := h.poisoned(3 * shape.cols)
			err = h.d.do(func() error {
				return h.d.launch("embed_"+kernelSuffix[typ], dims(3, 1, 1), dims(256, 1, 1), 0,
					p(wb.Ptr), p(int64(rb)), p(idb.Ptr), p(eb.Ptr), p(shape.cols))
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
	if err := h.d.do(func() error { return h.b.rmsNorm(xb.Ptr, wb.Ptr, ob.Ptr, T, n) }); err != nil {
		t.Fatal(err)
	}
	if e := relErr(h.download(ob, T*n), want); e > 1e-6 {
		t.Errorf("rms_norm: relative error %.3g", e)
	}
	// Attention with GQA and a sliding window, through kv_store, against a
	// float64 softmax.
	for _, window := range []int{0, 7, 2} {
		nh, nkv, hd, L := 4, 2, 64, 1500 // L > one 1024-position chunk
		kvd := nkv * hd
		K, V := randRow(r, L*kvd), randRow(r, L*kvd)
		Tq := 3
		q := randRow(r, Tq*nh*hd)
		pos := []int32{0, 700, int32(L - 1)}
		kb, vb := h.uploadF32(K), h.uploadF32(V)
		qb, ob := h.uploadF32(q), h.poisoned(Tq*nh*hd)
		ptrs := make([]uint64, 2*Tq)
		for i := range Tq {
			ptrs[i], ptrs[Tq+i] = uint64(kb.Ptr), uint64(vb.Ptr)
		}
		pb := h.upload(unsafe.Slice((*byte)(unsafe.Pointer(&ptrs[0])), 16*Tq))
		posb := h.upload(unsafe.Slice((*byte)(unsafe.Pointer(&pos[0])), 4*Tq))
		scale := float32(1 / math.Sqrt(float64(hd)))
		// 16 splits leave most empty for the row at position 0; 1 split
		// is the plain online softmax.
		splits := map[int]int{0: 16, 7: 3, 2: 1}[window]
		part := h.poisoned(Tq * nh * splits * (hd + 2))
		err := h.d.do(func() error {
			if err := h.d.launch("attention_split_f32", dims(uint32(Tq), uint32(nh), uint32(splits)), dims(128, 1, 1), 0,
				p(qb.Ptr), p(part.Ptr), p(pb.Ptr), p(pb.Ptr+devicePtr(8*Tq)), p(posb.Ptr), p(nh), p(nkv), p(hd), p(window), p(scale), p(splits)); err != nil {
				return err
			}
			return h.d.launch("attention_merge_f32", dims(uint32(Tq), uint32(nh), 1), dims(128, 1, 1), 0,
				p(part.Ptr), p(ob.Ptr), p(nh), p(hd), p(splits))
		})
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float64, Tq*nh*hd)
		for tt := range Tq {
			for hh := range nh {
				kh := hh / (nh / nkv)
				first := 0
				if window > 0 {
					first = max(0, int(pos[tt])-window+1)
				}
				var sc []float64
				mx := math.Inf(-1)
				for pp := first; pp <= int(pos[tt]); pp++ {
					var s float64
					for i := range hd {
						s += float64(q[(tt*nh+hh)*hd+i]) * float64(K[pp*kvd+kh*hd+i])
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
					for j, pp := 0, first; pp <= int(pos[tt]); j, pp = j+1, pp+1 {
						a += sc[j] * float64(V[pp*kvd+kh*hd+i])
					}
					want[(tt*nh+hh)*hd+i] = a / sum
				}
			}
		}
		if e := relErr(h.download(ob, Tq*nh*hd), want); e > 1e-5 {
			t.Errorf("attention window %d: relative error %.3g", window, e)
		}
	}
}

// TestTopKParity: the device top-k (values, ids, tie order) and log-sum-exp
// against the host's selection, on rows with many ties and with NaN.
func TestTopKParity(t *testing.T) {
	h := newOpHarness(t)
	r := rand.New(rand.NewPCG(5, uint64(os.Getpid())))
	for _, c := range []struct {
		V, K int
		kind string
	}{{151936, 1, "normal"}, {151936, 40, "normal"}, {32064, 256, "ties"}, {1000, 7, "ties"}, {5000, 20, "nan"}} {
		x := make([]float32, c.V)
		for i := range x {
			switch c.kind {
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
		xb := h.uploadF32(x)
		out := h.poisoned(2*c.K + 1)
		err := h.d.do(func() error {
			return h.d.launch("topk_f32", dims(1, 1, 1), dims(1024, 1, 1), 0, p(xb.Ptr), p(c.V), p(c.K),
				p(out.Ptr), p(out.Ptr+devicePtr(4*c.K)), p(out.Ptr+devicePtr(8*c.K)))
		})
		if err != nil {
			t.Fatal(err)
		}
		got := h.download(out, 2*c.K+1)
		cands := make([]sample.Candidate, c.K)
		for i := range cands {
			cands[i] = sample.Candidate{ID: int32(math.Float32bits(got[i])), Logprob: got[c.K+i]}
		}
		slices.SortFunc(cands, func(a, b sample.Candidate) int {
			av, bv := a.Logprob, b.Logprob
			if av != av {
				av = float32(math.Inf(-1))
			}
			if bv != bv {
				bv = float32(math.Inf(-1))
			}
			switch {
			case av > bv:
				return -1
			case av < bv:
				return 1
			}
			return int(a.ID - b.ID)
		})
		want := sample.TopOf(x, c.K)
		for i := range want {
			if cands[i].ID != want[i].ID || cands[i].Logprob != want[i].Logprob {
				t.Fatalf("V=%d K=%d %s: candidate %d is %+v, host %+v", c.V, c.K, c.kind, i, cands[i], want[i])
			}
		}
		lse := sample.LogSumExp(x)
		if c.kind == "nan" {
			clean := make([]float32, 0, len(x))
			for _, v := range x {
				if v == v {
					clean = append(clean, v)
				}
			}
			lse = sample.LogSumExp(clean)
		}
		if d := math.Abs(float64(got[2*c.K]) - lse); d > 1e-4 {
			t.Errorf("V=%d %s: log-sum-exp %.6f, host %.6f", c.V, c.kind, got[2*c.K], lse)
		}
	}
}
