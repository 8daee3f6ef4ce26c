package cuda

import (
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"unsafe"

	"worker-orcd/quant"
)

// q8Activations is x (rows of cols) as mmq_ sees it: each 32-element unit
// rounded to int8 by the kernel's rule (q = rn(x·(127/amax)) in float32,
// scale amax/127) and expanded back, scale·q, in float32.
func q8Activations(x []float32, cols int) []float32 {
	out := make([]float32, len(x))
	for u := 0; u+32 <= len(x); u += 32 {
		var amax float32
		for _, v := range x[u : u+32] {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		if amax == 0 {
			continue
		}
		inv, dx := float32(127)/amax, amax/float32(127)
		for i, v := range x[u : u+32] {
			p := v * inv
			out[u+i] = dx * float32(math.RoundToEven(float64(p)))
		}
	}
	return out
}

// randQuantMatrix is a rows×cols matrix of random normal values quantized
// to typ: its bytes, the CPU's dequantization of them, and the bytes a row.
func randQuantMatrix(t *testing.T, r *rand.Rand, typ quant.Type, rows, cols int) (w []byte, deq []float32, rb int) {
	t.Helper()
	rb, err := quant.RowBytes(typ, cols)
	if err != nil {
		t.Fatal(err)
	}
	w, deq = make([]byte, rb*rows), make([]float32, rows*cols)
	for row := range rows {
		if err := quant.Quantize(typ, randRow(r, cols), w[row*rb:(row+1)*rb]); err != nil {
			t.Fatal(err)
		}
		if err := quant.Dequantize(typ, w[row*rb:(row+1)*rb], deq[row*cols:(row+1)*cols]); err != nil {
			t.Fatal(err)
		}
	}
	return w, deq, rb
}

// matVec64 is out[t, r] = Σ_i w[r, i]·x[t, i] in float64.
func matVec64(w, x []float32, rows, cols, T int) []float64 {
	out := make([]float64, T*rows)
	for t := range T {
		for r := range rows {
			var s float64
			for i := range cols {
				s += float64(w[r*cols+i]) * float64(x[t*cols+i])
			}
			out[t*rows+r] = s
		}
	}
	return out
}

// TestQ8Activations: the host model of mmq_'s activations keeps every value
// within half a step (amax/254) of its unit's original, maps a unit's
// largest magnitude to ±127 steps exactly, and leaves zero units zero.
func TestQ8Activations(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x := randRow(r, 256)
	for i := 64; i < 96; i++ {
		x[i] = 0
	}
	q := q8Activations(x, 256)
	for u := 0; u < 256; u += 32 {
		var amax float32
		for _, v := range x[u : u+32] {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		for i := u; i < u+32; i++ {
			if d := math.Abs(float64(q[i] - x[i])); d > float64(amax)/254*1.0001 {
				t.Errorf("x[%d] = %g became %g: off by %g, more than half a step of %g", i, x[i], q[i], d, amax/127)
			}
			if top := amax / 127 * 127; float32(math.Abs(float64(x[i]))) == amax && float32(math.Abs(float64(q[i]))) != top {
				t.Errorf("unit %d's largest value %g became %g, want ±127 steps (%g)", u/32, x[i], q[i], top)
			}
		}
	}
	for i := 64; i < 96; i++ {
		if q[i] != 0 {
			t.Fatalf("a zero unit became %g at %d", q[i], i)
		}
	}
}

// TestInt8Decode: the mmq_ and mmqt_ kernels (decode rows of quantized
// weights as 8-bit integer dot products) for every type that has them,
// over widths that leave lanes or warps idle or give them unequal units,
// 70 decode rows (mmqt_ on sm_80+: two blocks of 32 and a partial one;
// else mmq_), plain, glu and three jobs with a bias and accumulation:
// within 1e-5 of the float64 reference on the same 8-bit activations
// (q8Activations), every output written, and each row bit for bit the same
// computed alone (mmq1_), in a batch of 9 (mmq_), or at another place among
// the 70.
func TestInt8Decode(t *testing.T) {
	h := newOpHarness(t)
	if h.d.Arch() < 61 {
		t.Skipf("sm_%d has no dp4a: decode rows use the float32 kernels", h.d.Arch())
	}
	h.b.int8 = true
	r := rand.New(rand.NewPCG(13, uint64(os.Getpid())))
	const T = 70
	for _, typ := range sortedTypes() {
		sfx := kernelSuffix[typ]
		if !h.b.int8Decode(sfx) {
			continue
		}
		for _, shape := range []struct{ rows, cols int }{{40, 352}, {24, 1024}, {19, 2816}, {5, 10752}} {
			if shape.cols%typ.BlockSize() != 0 {
				continue
			}
			w, deq, rb := randQuantMatrix(t, r, typ, shape.rows, shape.cols)
			x := randRow(r, T*shape.cols)
			for i := 3 * 32; i < 4*32; i++ { // a zero unit in token 0
				x[i] = 0
			}
			want := matVec64(deq, q8Activations(x, shape.cols), shape.rows, shape.cols, T)
			bias, init := randRow(r, shape.rows), randRow(r, T*shape.rows)
			wb, xb, bb := h.upload(w), h.uploadF32(x), h.uploadF32(bias)
			sr := min(7, shape.rows) // the second job's rows
			m := dmat{ptr: wb.Ptr, rows: shape.rows, cols: shape.cols, rowBytes: int64(rb), suffix: sfx}
			// run computes n decode rows from x row `from`: plain, glu, or
			// three jobs (the matrix, then its first sr rows with a bias, then
			// the matrix added into init), their outputs one after the other.
			run := func(from, n int, kind string) []float32 {
				ob := h.poisoned(3 * n * shape.rows)
				o16 := h.poisoned((n*shape.rows + 1) / 2)
				jobs := ob.Ptr
				err := h.d.do(func() error {
					h.b.segs = []segment{{0, n, false}}
					defer func() { h.b.segs = nil }()
					xp := xb.Ptr + devicePtr(4*from*shape.cols)
					switch kind {
					case "glu":
						return h.b.mmLaunch(xp, n, true, mmOut{m: &m, out: jobs, out16: o16.Ptr}, mmOut{m: &m, out: jobs})
					case "jobs":
						small := m
						small.rows = sr
						third := jobs + devicePtr(4*2*n*shape.rows)
						if err := h.d.copyToDevice(third, unsafe.Pointer(&init[from*shape.rows]), int64(4*n*shape.rows)); err != nil {
							return err
						}
						return h.b.mmLaunch(xp, n, false, mmOut{m: &m, out: jobs}, mmOut{m: &small, out: jobs + devicePtr(4*n*shape.rows), bias: bb.Ptr},
							mmOut{m: &m, out: third, accumulate: true})
					}
					return h.b.mmLaunch(xp, n, false, mmOut{m: &m, out: jobs})
				})
				if err != nil {
					t.Fatal(err)
				}
				got := h.download(ob, 3*n*shape.rows)
				if kind == "glu" {
					// The F16 copy of a glu output: within half an F16 ulp.
					raw := h.download(o16, (n*shape.rows+1)/2)
					h16 := unsafe.Slice((*uint16)(unsafe.Pointer(&raw[0])), n*shape.rows)
					for i, v := range got[:n*shape.rows] {
						if math.Abs(float64(v)) > 65504 && math.IsInf(float64(halfToFloat(h16[i])), 0) {
							continue // beyond F16's range
						}
						if d := math.Abs(float64(halfToFloat(h16[i]) - v)); d > math.Abs(float64(v))/2048+1e-7 {
							t.Fatalf("mmq_%s glu F16 copy [%d] = %g, output %g", sfx, i, halfToFloat(h16[i]), v)
						}
					}
				}
				if kind != "jobs" {
					return got[:n*shape.rows]
				}
				// The second job's sr-row outputs sit at the start of their area.
				return slices.Concat(got[:n*shape.rows], got[n*shape.rows:n*shape.rows+sr*n], got[2*n*shape.rows:3*n*shape.rows])
			}
			// rowOut is decode row i's outputs of every job in out (n rows).
			rowOut := func(out []float32, n, i int, kind string) []float32 {
				rows := shape.rows
				if kind != "jobs" {
					return out[i*rows : (i+1)*rows]
				}
				return slices.Concat(out[i*rows:(i+1)*rows], out[n*rows+sr*i:n*rows+sr*(i+1)], out[n*rows+sr*n+i*rows:n*rows+sr*n+(i+1)*rows])
			}
			ref := func(from, n int, kind string) []float64 {
				y := want[from*shape.rows : (from+n)*shape.rows]
				switch kind {
				case "glu":
					g := make([]float64, len(y))
					for i, v := range y {
						g[i] = v / (1 + math.Exp(-v)) * v
					}
					return g
				case "jobs":
					second := make([]float64, 0, sr*n)
					third := make([]float64, len(y))
					for tt := range n {
						for row := range sr {
							second = append(second, y[tt*shape.rows+row]+float64(bias[row]))
						}
						for row := range shape.rows {
							third[tt*shape.rows+row] = y[tt*shape.rows+row] + float64(init[(from+tt)*shape.rows+row])
						}
					}
					return slices.Concat(y, second, third)
				}
				return y
			}
			for _, kind := range []string{"plain", "glu", "jobs"} {
				full := run(0, T, kind)
				if e := relErr(full, ref(0, T, kind)); e > 1e-5 {
					t.Errorf("mmq_%s %dx%d T=%d %s: relative error %.3g > 1e-5", sfx, shape.rows, shape.cols, T, kind, e)
				}
				for _, from := range []int{0, 5, 61, 64, 69} {
					alone := run(from, 1, kind)
					if !slices.Equal(rowOut(alone, 1, 0, kind), rowOut(full, T, from, kind)) {
						t.Errorf("mmq_%s %dx%d %s: row %d alone differs from the same row among %d", sfx, shape.rows, shape.cols, kind, from, T)
					}
				}
				nine := run(3, 9, kind)
				for i := range 9 {
					if !slices.Equal(rowOut(nine, 9, i, kind), rowOut(full, T, 3+i, kind)) {
						t.Errorf("mmq_%s %dx%d %s: row %d in a batch of 9 differs from the same row among %d", sfx, shape.rows, shape.cols, kind, 3+i, T)
						break
					}
				}
			}
		}
		h.d.do(func() error {
			for _, k := range []string{"mmq_" + sfx, "mmq1_" + sfx, "mmqt_" + sfx} {
				regs, local, shared, err := h.d.kernelResources(k)
				if err == nil {
					t.Logf("%s: %d registers, %d local bytes a thread, %d shared bytes a block", k, regs, local, shared)
				}
			}
			return nil
		})
	}
}

// TestInt8Wanted: the 8-bit decode kernels are chosen for a backend whose
// steps hold at most one decode row, unless WORKER_CUDA_INT8_DECODE says
// otherwise (any other value of it is ignored).
func TestInt8Wanted(t *testing.T) {
	for _, c := range []struct {
		env  string
		rows int
		want bool
	}{
		{"", 1, true}, {"", 0, false}, {"", 4, false}, {"", 64, false},
		{"1", 4, true}, {"1", 1, true}, {"0", 1, false}, {"0", 64, false},
		{"yes", 1, true}, {"yes", 2, false},
	} {
		t.Setenv("WORKER_CUDA_INT8_DECODE", c.env)
		if got := int8Wanted(c.rows); got != c.want {
			t.Errorf("WORKER_CUDA_INT8_DECODE=%q, %d decode rows a step: int8Wanted %v, want %v", c.env, c.rows, got, c.want)
		}
	}
}

// sameBits reports whether a and b hold the same bits (NaNs included).
func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// TestNormQ8: rms_norm_f32's 8-bit output (WORKER_CUDA_NORM_Q8=1) is byte
// for byte what q8_rows makes of its float output, and a lone decode row's
// products that read it (mmq1p_) give the bits mmq1_ gives from the float
// output, plain and glu, for every type with the 8-bit kernels.
func TestNormQ8(t *testing.T) {
	h := newOpHarness(t)
	if h.d.Arch() < 61 {
		t.Skipf("sm_%d has no dp4a", h.d.Arch())
	}
	h.b.int8 = true
	r := rand.New(rand.NewPCG(23, uint64(os.Getpid())))
	const eps = 1e-6
	for _, cols := range []int{896, 3072, 8192} {
		const T = 3
		units := cols / 32
		x := randRow(r, T*cols)
		for i := range x {
			x[i] *= 30
		}
		nw := randRow(r, cols)
		xb, nb := h.uploadF32(x), h.uploadF32(nw)
		out := h.poisoned(T * cols)
		q8a, q8b := h.poisoned(T*units*10), h.poisoned(T*units*10) // 40 bytes a unit
		err := h.d.do(func() error {
			xsA := q8a.Ptr + devicePtr(T*units*32)
			if err := h.d.rmsNormQ8(xb.Ptr, nb.Ptr, out.Ptr, 0, q8a.Ptr, xsA, T, cols, eps); err != nil {
				return err
			}
			return h.d.q8Rows(out.Ptr, T, cols, q8b.Ptr, q8b.Ptr+devicePtr(T*units*32))
		})
		if err != nil {
			t.Fatal(err)
		}
		if a, b := h.download(q8a, T*units*10), h.download(q8b, T*units*10); !sameBits(a, b) {
			t.Fatalf("%d columns: rms_norm_f32's 8-bit output differs from q8_rows of its float output", cols)
		}
		// A lone decode row's norm, as normFor runs it: its scales are
		// [unit][1].
		one := h.poisoned(units * 10)
		if err := h.d.do(func() error {
			return h.d.rmsNormQ8(xb.Ptr, nb.Ptr, out.Ptr, 0, one.Ptr, one.Ptr+devicePtr(units*32), 1, cols, eps)
		}); err != nil {
			t.Fatal(err)
		}
		for _, typ := range sortedTypes() {
			sfx := kernelSuffix[typ]
			if !h.b.int8Decode(sfx) || cols%typ.BlockSize() != 0 {
				continue
			}
			w, _, rb := randQuantMatrix(t, r, typ, 37, cols)
			wb := h.upload(w)
			m := dmat{ptr: wb.Ptr, rows: 37, cols: cols, rowBytes: int64(rb), suffix: sfx}
			for _, glu := range []bool{false, true} {
				outs := func(o devicePtr) []mmOut {
					if glu {
						return []mmOut{{m: &m, out: o}, {m: &m, out: o}}
					}
					return []mmOut{{m: &m, out: o}}
				}
				plain, pre := h.poisoned(37), h.poisoned(37)
				err := h.d.do(func() error {
					h.b.segs = []segment{{0, 1, false}}
					defer func() { h.b.segs = nil }()
					if err := h.b.mmLaunch(out.Ptr, 1, glu, outs(plain.Ptr)...); err != nil {
						return err
					}
					h.b.preq, h.b.preqScale, h.b.preqX = one.Ptr, one.Ptr+devicePtr(units*32), out.Ptr
					defer h.b.clearPre()
					return h.b.mmLaunch(out.Ptr, 1, glu, outs(pre.Ptr)...)
				})
				if err != nil {
					t.Fatal(err)
				}
				if a, b := h.download(plain, 37), h.download(pre, 37); !sameBits(a, b) || math.IsNaN(float64(b[0])) {
					t.Errorf("mmq1p_%s %d columns glu=%v: the products of the norm's 8-bit output differ from mmq1_'s", sfx, cols, glu)
				}
			}
		}
	}
}

// TestDecodeKernelRouting: which kernels a decode product launches, by the
// backend's choice and the rows (no GPU: the driver's launch is stubbed):
// the 8-bit family — mmq1_ for one row, mmq1p_ when the norm wrote its
// 8-bit form, q8_rows then mmq_ from 2 rows and mmqt_ from mmqtMin —, the
// tensor-core kernel otherwise, and F16 weights always on the tensor cores.
func TestDecodeKernelRouting(t *testing.T) {
	d, got, names := recordLaunches(t)
	const X, W, O, Q = devicePtr(0x10000), devicePtr(0x20000), devicePtr(0x30000), devicePtr(0x40000)
	q4k := dmat{ptr: W, rows: 48, cols: 256, rowBytes: 144, suffix: "q4_k"}
	f16 := dmat{ptr: W, rows: 48, cols: 256, rowBytes: 512, suffix: "f16"}
	for _, c := range []struct {
		name string
		int8 bool
		pre  bool
		m    *dmat
		T    int
		want []string
	}{
		{"one row", true, false, &q4k, 1, []string{"mmq1_q4_k"}},
		{"one row, the norm's 8-bit form", true, true, &q4k, 1, []string{"mmq1p_q4_k"}},
		{"5 rows", true, false, &q4k, 5, []string{"q8_rows", "mmq_q4_k"}},
		{"mmqtMin rows", true, false, &q4k, mmqtMin, []string{"q8_rows", "mmqt_q4_k"}},
		{"one row, tensor cores chosen", false, false, &q4k, 1, []string{"mmt1_q4_k"}},
		{"F16 weights", true, false, &f16, 1, []string{"mmt1_f16"}},
	} {
		b := &Backend{dev: d, int8: c.int8, xq: Q, xqBytes: 1 << 20, segs: []segment{{0, c.T, false}}}
		if c.pre {
			b.preq, b.preqScale, b.preqX = Q, Q+0x1000, X
		}
		*got = (*got)[:0]
		var x16 devicePtr
		if !c.int8 || c.m == &f16 {
			x16 = X // the norm's F16 copy, as for the tensor cores
		}
		if err := b.mmLaunch16(X, x16, c.T, false, mmOut{m: c.m, out: O}); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var launched []string
		for _, l := range *got {
			launched = append(launched, names[l.kernel-1])
		}
		if !slices.Equal(launched, c.want) {
			t.Errorf("%s: launched %v, want %v", c.name, launched, c.want)
		}
	}
}
