package quant

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// checkQuantAsm compares the assembly quantizers with the Go ones on x (its
// length a multiple of 256 for Q8_K, of 32 for Q8_0).
func checkQuantAsm(t *testing.T, name string, x []float32) {
	t.Helper()
	if !hasQuantAsm {
		t.Skip("no AVX-512 F/BW/VL on this CPU")
	}
	if len(x)%QK == 0 {
		nb := len(x) / QK
		want, got := make([]byte, nb*34), make([]byte, nb*34)
		for i := range got {
			got[i] = 0xa5 // every byte must be written
		}
		quantActQ8_0(x, want)
		quantActQ8_0AVX512(x, got)
		if !bytes.Equal(got, want) {
			for i := range got {
				if got[i] != want[i] {
					b := i / 34
					t.Fatalf("%s: Q8_0 byte %d (block %d, offset %d): asm %#x, Go %#x; block %v",
						name, i, b, i%34, got[i], want[i], x[b*32:b*32+32])
				}
			}
		}
	}
	if len(x)%QKK == 0 {
		nb := len(x) / QKK
		want, got := make([]byte, nb*292), make([]byte, nb*292)
		for i := range got {
			got[i] = 0xa5
		}
		quantQ8_K(x, want)
		quantQ8_KAVX512(x, got)
		if !bytes.Equal(got, want) {
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s: Q8_K byte %d (block %d, offset %d): asm %#x, Go %#x",
						name, i, i/292, i%292, got[i], want[i])
				}
			}
		}
	}
}

func f32s(bits ...uint32) []float32 {
	x := make([]float32, len(bits))
	for i, b := range bits {
		x[i] = math.Float32frombits(b)
	}
	return x
}

// TestQuantizeActivationsAsm: the AVX-512 quantizers against the Go ones on
// hand-picked blocks (zeros, denormals, ±Inf, NaN, ties of |x| with either
// sign first, halfway products, scales that overflow) and random rows.
func TestQuantizeActivationsAsm(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	fill := func(n int, f func(i int) float32) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = f(i)
		}
		return x
	}
	const n = 512 // two Q8_K blocks, sixteen Q8_0 blocks
	cases := []struct {
		name string
		x    []float32
	}{
		{"zeros", make([]float32, n)},
		{"negative zeros", fill(n, func(int) float32 { return float32(math.Copysign(0, -1)) })},
		{"smallest denormal", fill(n, func(i int) float32 { return math.Float32frombits(uint32(i % 3)) })},
		{"denormals", fill(n, func(i int) float32 { return math.Float32frombits(uint32(i*7919)&0x7fffff | uint32(i&1)<<31) })},
		{"tiny normals (127/amax overflows)", fill(n, func(i int) float32 { return float32(i%5-2) * 1e-37 })},
		{"at the overflow edge", fill(n, func(i int) float32 { return float32(i%9-4) / 4 * 127 / math.MaxFloat32 })},
		{"huge", fill(n, func(i int) float32 { return float32(i%7-3) * 1e38 })},
		{"max float", fill(n, func(i int) float32 { return float32(1-2*(i&1)) * math.MaxFloat32 })},
		{"+inf", fill(n, func(i int) float32 { return []float32{1, inf, -2, 0}[i%4] })},
		{"-inf", fill(n, func(i int) float32 { return []float32{1, -inf, -2, 0}[i%4] })},
		{"all nan", fill(n, func(int) float32 { return nan })},
		{"nan and zeros", fill(n, func(i int) float32 { return []float32{0, nan}[i%2] })},
		{"nan and values", fill(n, func(i int) float32 { return []float32{nan, 3, -5, nan, 1}[i%5] })},
		{"nan bits", f32s(func() []uint32 {
			b := make([]uint32, n)
			for i := range b {
				b[i] = 0x7f800001 + uint32(i)*0x1001 | uint32(i&2)<<30
				if i%3 == 0 {
					b[i] = uint32(i) << 20
				}
			}
			return b
		}()...)},
		{"ties, + first", fill(n, func(i int) float32 { return []float32{0, 4, -4, 1}[i%4] })},
		{"ties, - first", fill(n, func(i int) float32 { return []float32{0, -4, 4, 1}[i%4] })},
		{"one extreme per block", fill(n, func(i int) float32 {
			if i%37 == 0 {
				return -7
			}
			if i%41 == 0 {
				return 7
			}
			return float32(i%13) / 3
		})},
		{"halfway products", fill(n, func(i int) float32 {
			if i%32 == 5 {
				return 254 // id = 0.5: odd values land on .5
			}
			return float32(i%64 - 32)
		})},
		{"integers", fill(n, func(i int) float32 { return float32(i%255 - 127) })},
		{"last element is the max", fill(n, func(i int) float32 {
			if i%256 == 255 {
				return -1000
			}
			return float32(i % 11)
		})},
	}
	rng := rand.New(rand.NewPCG(13, 1))
	for k := range 20 {
		s := float32(math.Ldexp(1, rng.IntN(250)-125))
		cases = append(cases, struct {
			name string
			x    []float32
		}{"gauss", fill(n, func(int) float32 { return float32(rng.NormFloat64()) * s })})
		_ = k
	}
	for _, c := range cases {
		checkQuantAsm(t, c.name, c.x)
		// Each block also alone, at every offset a row could start.
		checkQuantAsm(t, c.name+" (first block)", c.x[:256])
		checkQuantAsm(t, c.name+" (one Q8_0 block)", c.x[32:64])
	}
	// QuantizeActivations goes through the kernels selected for this CPU.
	x := cases[len(cases)-1].x
	for _, typ := range []Type{Q8_0, Q8_K} {
		got := make([]byte, ActivationBytes(VecDotType(typ), n))
		want := make([]byte, len(got))
		if err := QuantizeActivations(typ, x, got); err != nil {
			t.Fatal(err)
		}
		if typ == Q8_0 {
			quantActQ8_0(x, want)
		} else {
			quantQ8_K(x, want)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("QuantizeActivations(%s) differs from the Go quantizer", typ)
		}
	}
}

// TestF16ConvertAsm: VCVTPS2PH rounds as F32ToF16 for every non-negative
// float32 that is not a NaN (Q8_0's d = amax/127 is one), every 61st bit
// pattern and the ones near the f16 range's edges; all of them with
// WORKER_EXHAUSTIVE=1.
func TestF16ConvertAsm(t *testing.T) {
	if !hasQuantAsm {
		t.Skip("no AVX-512 F/BW/VL on this CPU")
	}
	step := uint32(61)
	if os.Getenv("WORKER_EXHAUSTIVE") == "1" {
		step = 1
	}
	check := func(b uint32) {
		f := math.Float32frombits(b)
		if got, want := f16ConvertAsm(f), F32ToF16(f); got != want {
			t.Fatalf("%#x (%g): VCVTPS2PH %#x, F32ToF16 %#x", b, f, got, want)
		}
	}
	for b := uint32(0); b <= 0x7f800000; b += step {
		check(b)
	}
	for _, e := range []uint32{0x33000000, 0x387fc000, 0x38800000, 0x477fe000, 0x477ff000, 0x47800000, 0x7f800000} {
		for d := uint32(0); d < 0x4000; d++ {
			check(e - 0x2000 + d)
		}
	}
}

// FuzzQuantizeActivations: arbitrary float32 bit patterns (mode 0) or small
// integers times a power of two (mode 1: ties, halfway products, overflowing
// scales), the AVX-512 quantizers against the Go ones.
func FuzzQuantizeActivations(f *testing.F) {
	f.Add(uint8(0), int8(0), make([]byte, 1024))
	f.Add(uint8(1), int8(-126), []byte{1, 0, 255, 255, 0x80, 0})
	f.Add(uint8(1), int8(0), []byte{254, 0, 1, 0, 3, 0, 5, 0})
	f.Add(uint8(0), int8(0), []byte{0, 0, 0xc0, 0x7f, 0, 0, 0x80, 0x7f, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, mode uint8, exp int8, data []byte) {
		x := make([]float32, 256*(1+len(data)/1024))
		switch mode % 2 {
		case 0:
			for i := 0; i+4 <= len(data) && i/4 < len(x); i += 4 {
				x[i/4] = math.Float32frombits(binary.LittleEndian.Uint32(data[i:]))
			}
		case 1:
			for i := 0; i+2 <= len(data) && i/2 < len(x); i += 2 {
				v := int16(binary.LittleEndian.Uint16(data[i:]))
				x[i/2] = float32(math.Ldexp(float64(v), int(exp)))
			}
		}
		checkQuantAsm(t, "fuzz", x)
	})
}

// TestPackK16Asm: packK16Asm packs the same bytes as packK16, for several
// block counts and token strides (padded ones included).
func TestPackK16Asm(t *testing.T) {
	if !hasQuantAsm {
		t.Skip("no AVX-512 F/BW/VL on this CPU")
	}
	rng := rand.New(rand.NewPCG(16, 4))
	for _, nb := range []int{1, 2, 3, 19} {
		for _, pad := range []int{0, 1, 7, 64} {
			ab := nb*292 + pad
			xq := make([]byte, 16*ab+3)
			for i := range xq {
				xq[i] = byte(rng.Uint32())
			}
			want, got := make([]byte, nb*k16Block), make([]byte, nb*k16Block)
			for i := range got {
				got[i] = 0xa5
			}
			packK16(xq[3:], ab, nb, want)
			off := k16Offsets(ab)
			packK16Fast(xq[3:], ab, nb, got, &off)
			if !bytes.Equal(got, want) {
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("nb %d, ab %d: byte %d (block %d, offset %d): asm %#x, Go %#x",
							nb, ab, i, i/k16Block, i%k16Block, got[i], want[i])
					}
				}
			}
		}
	}
}

// BenchmarkPackK16: sixteen tokens of 3 blocks (in the core's L1) and of 19
// (n = 4864, Qwen2.5-0.5B's ffn_down input), packed by Go and by packK16Asm.
func BenchmarkPackK16(b *testing.B) {
	for _, nb := range []int{3, 19} {
		ab := nb * 292
		xq := make([]byte, 16*ab)
		dst := make([]byte, nb*k16Block)
		off := k16Offsets(ab)
		b.Run(fmt.Sprintf("go/nb=%d", nb), func(b *testing.B) {
			b.SetBytes(int64(len(dst)))
			for b.Loop() {
				packK16(xq, ab, nb, dst)
			}
		})
		if hasQuantAsm {
			b.Run(fmt.Sprintf("asm/nb=%d", nb), func(b *testing.B) {
				b.SetBytes(int64(len(dst)))
				for b.Loop() {
					packK16Fast(xq, ab, nb, dst, &off)
				}
			})
		}
	}
}
