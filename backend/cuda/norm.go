package cuda

import "fmt"

// Launchers of kernels/norm.cu: RMS norm, RoPE with the KV cache store,
// SwiGLU. Each computes its grid and checks what the kernel assumes.

// rmsNorm launches rms_norm_f32: out[t] = x[t] / sqrt(mean(x[t]²) + eps) ⊙ w
// for T rows of n (a multiple of 4: the kernel reads 16-byte pieces), and an
// F16 copy of out when out16 is set.
//
//	grid T, block 1024
func (d *Device) rmsNorm(x, w, out, out16 devicePtr, T, n int, eps float32) error {
	return d.rmsNormQ8(x, w, out, out16, 0, 0, T, n, eps)
}

// rmsNormQ8 is rmsNorm that also writes out rounded to 8 bits as q8_rows
// would (xq, xs) when xq is set; n is then a multiple of 32.
//
//	grid T, block 1024
func (d *Device) rmsNormQ8(x, w, out, out16, xq, xs devicePtr, T, n int, eps float32) error {
	if n < 4 || n%4 != 0 {
		return fmt.Errorf("%w: rms_norm_f32: row width %d is not a positive multiple of 4", ErrLaunch, n)
	}
	if xq != 0 && (xs == 0 || n%32 != 0) {
		return fmt.Errorf("%w: rms_norm_f32: 8-bit output of rows of %d (xs %#x): want a multiple of 32 and both pointers", ErrLaunch, n, xs)
	}
	return d.launch("rms_norm_f32", dims(T, 1, 1), dims(1024, 1, 1), 0,
		newArgs().dev("x", x).dev("w", w).dev("out", out).i32("n", n).f32("eps", eps).ptr("out16", out16).ptr("xq", xq).ptr("xs", xs))
}

// swiglu launches swiglu_f32: g[i] = silu(g[i])·u[i] for n elements (and an
// F16 copy into g16 when set); used when gate and up differ in type.
//
//	grid ceil(n/256), block 256
func (d *Device) swiglu(g, u, g16 devicePtr, n int) error {
	return d.launch("swiglu_f32", dims(blocks(n, 256), 1, 1), dims(256, 1, 1), 0,
		newArgs().dev("g", g).dev("u", u).i32("total", n).ptr("g16", g16))
}

// headShape is the attention shape rope_store_<kv> and attention_split_<kv> take.
type headShape struct {
	nHead, nKV, headDim int
}

func (s headShape) check(kernel string) error {
	if s.nHead < 1 || s.nKV < 1 || s.nHead%s.nKV != 0 || s.headDim < 1 || s.headDim > maxHeadDim {
		return fmt.Errorf("%w: %s: %d heads, %d KV heads, head dimension %d (want KV heads dividing heads, head dimension 1 … %d)",
			ErrLaunch, kernel, s.nHead, s.nKV, s.headDim, maxHeadDim)
	}
	return nil
}

// ropeStore launches rope_store_<kvType>: rotates q in place and k by each
// row's position (the first rot elements of each head: NeoX pairs (i,
// i+rot/2), else (2i, 2i+1)) and stores k and v at that position of
// layer's keys and values in each row's cache (tabs: a device pointer to
// the row's block table a row; see kvcache.go).
//
//	grid T, block 1024
func (d *Device) ropeStore(kvType string, q, k, v, tabs, pos, invFreq devicePtr, layer, T int, s headShape, rot int, neox bool) error {
	kernel := "rope_store_" + kvType
	if err := s.check(kernel); err != nil {
		return err
	}
	if err := checkLayer(kernel, layer); err != nil {
		return err
	}
	if rot < 2 || rot%2 != 0 || rot > s.headDim {
		return fmt.Errorf("%w: %s: %d rotated elements of a %d-element head (want an even count ≤ the head)", ErrLaunch, kernel, rot, s.headDim)
	}
	nx := 0
	if neox {
		nx = 1
	}
	return d.launch(kernel, dims(T, 1, 1), dims(1024, 1, 1), 0,
		newArgs().dev("q", q).dev("k", k).dev("v", v).dev("tabs", tabs).i32("layer", layer).dev("pos", pos).dev("inv_freq", invFreq).
			i32("n_head", s.nHead).i32("n_kv", s.nKV).i32("hd", s.headDim).i32("rot", rot).i32("neox", nx))
}
