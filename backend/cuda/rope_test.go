package cuda

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"
	"unsafe"
)

// TestRopeStoreAndSwigluParity checks rope_store_f32 (the rotation of q
// and k for both pairings, partial rotation, the store of k and v at each
// row's position) and swiglu_f32 against float64 computed from the math
// (issue 17: these had no independent check).
func TestRopeStoreAndSwigluParity(t *testing.T) {
	h := newOpHarness(t)
	r := rand.New(rand.NewPCG(17, uint64(os.Getpid())))

	// SwiGLU: g = silu(g)·u.
	n := 1000
	g, u := randRow(r, n), randRow(r, n)
	want := make([]float64, n)
	for i := range n {
		x := float64(g[i])
		want[i] = x / (1 + math.Exp(-x)) * float64(u[i])
	}
	gb, ub := h.uploadF32(g), h.uploadF32(u)
	if err := h.d.do(func() error { return h.d.swiglu(gb.Ptr, ub.Ptr, 0, n) }); err != nil {
		t.Fatal(err)
	}
	if e := relErr(h.download(gb, n), want); e > 1e-6 {
		t.Errorf("swiglu: relative error %.3g", e)
	}

	// RoPE and the KV store, for NeoX and interleaved pairs, full and
	// partial rotation.
	for _, c := range []struct {
		neox bool
		rot  int
	}{{true, 64}, {false, 64}, {true, 32}, {false, 16}} {
		nh, nkv, hd, capacity := 4, 2, 64, 40
		T := 3
		pos := []int32{0, 17, 39}
		kvd := nkv * hd
		q, k, v := randRow(r, T*nh*hd), randRow(r, T*kvd), randRow(r, T*kvd)
		invFreq := make([]float64, c.rot/2)
		for i := range invFreq {
			invFreq[i] = math.Pow(1e4, -2*float64(i)/float64(c.rot))
		}
		rotate := func(x []float32, heads, p int) []float64 {
			out := make([]float64, len(x))
			for i := range x {
				out[i] = float64(x[i])
			}
			for hh := range heads {
				for i := range c.rot / 2 {
					a, b := hh*hd+2*i, hh*hd+2*i+1
					if c.neox {
						a, b = hh*hd+i, hh*hd+i+c.rot/2
					}
					s, co := math.Sincos(float64(p) * invFreq[i])
					x0, x1 := float64(x[a]), float64(x[b])
					out[a], out[b] = x0*co-x1*s, x0*s+x1*co
				}
			}
			return out
		}
		qb, kb, vb := h.uploadF32(q), h.uploadF32(k), h.uploadF32(v)
		// The cache: poison everywhere, in scrambled blocks.
		fill := make([]float32, capacity*kvd)
		for i := range fill {
			fill[i] = poison
		}
		cache := h.pagedKV(bytesOf(fill), bytesOf(fill), capacity, 4*kvd)
		tabs := make([]uint64, T)
		for i := range T {
			tabs[i] = cache.entries()
		}
		pb := h.upload(bytesOf(tabs))
		posb := h.upload(bytesOf(pos))
		fb := h.upload(bytesOf(invFreq))
		err := h.d.do(func() error {
			return h.d.ropeStore("f32", qb.Ptr, kb.Ptr, vb.Ptr, pb.Ptr, posb.Ptr, fb.Ptr, 0, T,
				headShape{nHead: nh, nKV: nkv, headDim: hd}, c.rot, c.neox)
		})
		if err != nil {
			t.Fatal(err)
		}
		gotQ := h.download(qb, T*nh*hd)
		kBytes, vBytes := cache.download(h)
		gotK := unsafe.Slice((*float32)(unsafe.Pointer(&kBytes[0])), capacity*kvd)
		gotV := unsafe.Slice((*float32)(unsafe.Pointer(&vBytes[0])), capacity*kvd)
		var wantQ, wantK, wantV []float64
		var gotKr, gotVr []float32
		for tt := range T {
			p := int(pos[tt])
			wantQ = append(wantQ, rotate(q[tt*nh*hd:(tt+1)*nh*hd], nh, p)...)
			wantK = append(wantK, rotate(k[tt*kvd:(tt+1)*kvd], nkv, p)...)
			for _, x := range v[tt*kvd : (tt+1)*kvd] {
				wantV = append(wantV, float64(x))
			}
			gotKr = append(gotKr, gotK[p*kvd:(p+1)*kvd]...)
			gotVr = append(gotVr, gotV[p*kvd:(p+1)*kvd]...)
		}
		if e := relErr(gotQ, wantQ); e > 1e-6 {
			t.Errorf("rope (neox %v, rot %d): q relative error %.3g", c.neox, c.rot, e)
		}
		if e := relErr(gotKr, wantK); e > 1e-6 {
			t.Errorf("rope (neox %v, rot %d): stored k relative error %.3g", c.neox, c.rot, e)
		}
		if e := relErr(gotVr, wantV); e != 0 {
			t.Errorf("rope (neox %v, rot %d): stored v differs (relative %.3g)", c.neox, c.rot, e)
		}
		// Positions no row wrote keep the poison: nothing else was touched.
		for p := range capacity {
			if p == 0 || p == 17 || p == 39 {
				continue
			}
			if math.Float32bits(gotK[p*kvd]) != math.Float32bits(poison) || math.Float32bits(gotV[p*kvd]) != math.Float32bits(poison) {
				t.Errorf("rope (neox %v, rot %d): cache position %d written", c.neox, c.rot, p)
				break
			}
		}
	}
}
