package quant

import (
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
)

// pattern fills b with a fixed byte pattern that exercises every bit.
func pattern(b []byte, seed int) {
	for i := range b {
		b[i] = byte(i*37 + seed*101 + 11)
	}
}

// Known f16 bit patterns with exact binary values.
const (
	h1     = 0x3c00 // 1
	hHalf  = 0x3800 // 0.5
	hQuart = 0x3400 // 0.25
	h8th   = 0x3000 // 0.125
	hM2    = 0xc000 // -2
)

func put16(b []byte, v uint16) { binary.LittleEndian.PutUint16(b, v) }

// packK4 stores 6-bit scales and mins in the 12-byte K-quant layout, written
// out bit by bit from the documented rule.
func packK4(sc, m [8]uint8) [12]byte {
	var p [12]byte
	for j := 0; j < 4; j++ {
		p[j] |= sc[j] & 63
		p[j+4] |= m[j] & 63
	}
	for j := 4; j < 8; j++ {
		p[j+4] = sc[j]&15 | (m[j]&15)<<4
		p[j-4] |= (sc[j] >> 4) << 6
		p[j] |= (m[j] >> 4) << 6
	}
	return p
}

// dequantCase is one hand-built block and the per-element specification of
// its values, written from the layout description (element by element,
// independent of the loop structure of the implementation). All scales are
// powers of two so the expected values are exact whatever the evaluation
// order.
type dequantCase struct {
	name  string
	t     Type
	block func() []byte
	want  func(blk []byte, e int) float32
}

var k4sc = [8]uint8{1, 2, 3, 15, 16, 33, 50, 63}
var k4m = [8]uint8{0, 5, 10, 15, 20, 40, 60, 63}

func dequantCases() []dequantCase {
	return []dequantCase{
		{"F32", F32, func() []byte {
			b := make([]byte, 16)
			for i, v := range []float32{1.5, -2, float32(math.Inf(1)), 3e-40} {
				binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
			}
			return b
		}, func(b []byte, e int) float32 { return []float32{1.5, -2, float32(math.Inf(1)), 3e-40}[e] }},
		{"F16", F16, func() []byte {
			b := make([]byte, 8)
			for i, v := range []uint16{h1, hM2, 0x0001, 0x7bff} {
				put16(b[2*i:], v)
			}
			return b
		}, func(b []byte, e int) float32 { return []float32{1, -2, 1.0 / (1 << 24), 65504}[e] }},
		{"BF16", BF16, func() []byte {
			b := make([]byte, 6)
			for i, v := range []uint16{0x3f80, 0xc040, 0x4049} {
				put16(b[2*i:], v)
			}
			return b
		}, func(b []byte, e int) float32 { return []float32{1, -3, 3.140625}[e] }},
		{"Q4_0", Q4_0, func() []byte {
			b := make([]byte, 18)
			put16(b, hHalf)
			pattern(b[2:], 1)
			return b
		}, func(b []byte, e int) float32 {
			q := b[2+e%16]
			if e >= 16 {
				q >>= 4
			}
			return float32(int(q&15)-8) * 0.5
		}},
		{"Q4_1", Q4_1, func() []byte {
			b := make([]byte, 20)
			put16(b, hQuart)
			put16(b[2:], hM2)
			pattern(b[4:], 2)
			return b
		}, func(b []byte, e int) float32 {
			q := b[4+e%16]
			if e >= 16 {
				q >>= 4
			}
			return float32(q&15)*0.25 - 2
		}},
		{"Q5_0", Q5_0, func() []byte {
			b := make([]byte, 22)
			put16(b, h8th)
			pattern(b[2:], 3)
			return b
		}, func(b []byte, e int) float32 {
			q := b[6+e%16]
			if e >= 16 {
				q >>= 4
			}
			hi := binary.LittleEndian.Uint32(b[2:]) >> e & 1
			return float32(int(q&15)+int(hi)*16-16) * 0.125
		}},
		{"Q5_1", Q5_1, func() []byte {
			b := make([]byte, 24)
			put16(b, hQuart)
			put16(b[2:], h1)
			pattern(b[4:], 4)
			return b
		}, func(b []byte, e int) float32 {
			q := b[8+e%16]
			if e >= 16 {
				q >>= 4
			}
			hi := binary.LittleEndian.Uint32(b[4:]) >> e & 1
			return float32(int(q&15)+int(hi)*16)*0.25 + 1
		}},
		{"Q8_0", Q8_0, func() []byte {
			b := make([]byte, 34)
			put16(b, hM2)
			pattern(b[2:], 5)
			return b
		}, func(b []byte, e int) float32 { return float32(int8(b[2+e])) * -2 }},
		{"Q8_1", Q8_1, func() []byte {
			b := make([]byte, 36)
			put16(b, hHalf)
			put16(b[2:], 0x7bff) // s is not used by dequantization
			pattern(b[4:], 6)
			return b
		}, func(b []byte, e int) float32 { return float32(int8(b[4+e])) * 0.5 }},
		{"Q2_K", Q2_K, func() []byte {
			b := make([]byte, 84)
			pattern(b, 7)
			put16(b[80:], hHalf)
			put16(b[82:], h8th)
			return b
		}, func(b []byte, e int) float32 {
			h, r := e/128, e%128
			k, l := r/32, r%32
			q := (b[16+32*h+l] >> (2 * k)) & 3
			sc := b[e/16]
			return 0.5*float32(sc&15)*float32(q) - 0.125*float32(sc>>4)
		}},
		{"Q3_K", Q3_K, func() []byte {
			b := make([]byte, 110)
			pattern(b, 8)
			// 16 6-bit scales 0, 4, 8, ... 60 plus a few extremes.
			var s [16]uint8
			for i := range s {
				s[i] = uint8(i * 4)
			}
			s[15] = 63
			for i := 96; i < 108; i++ {
				b[i] = 0
			}
			for i, v := range s {
				if i < 8 {
					b[96+i] |= v & 15
				} else {
					b[96+i-8] |= (v & 15) << 4
				}
				b[96+8+i%4] |= (v >> 4) << (2 * (i / 4))
			}
			put16(b[108:], hQuart)
			return b
		}, func(b []byte, e int) float32 {
			h, r := e/128, e%128
			k, l := r/32, r%32
			lo := int((b[32+32*h+l] >> (2 * k)) & 3)
			hb := int(b[l]>>(4*h+k)) & 1
			q := lo - 4 + 4*hb
			s := []int{0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 63}[e/16]
			return 0.25 * float32(s-32) * float32(q)
		}},
		{"Q4_K", Q4_K, func() []byte {
			b := make([]byte, 144)
			put16(b, hHalf)
			put16(b[2:], h8th)
			p := packK4(k4sc, k4m)
			copy(b[4:], p[:])
			pattern(b[16:], 9)
			return b
		}, func(b []byte, e int) float32 {
			c, r := e/64, e%64
			q := b[16+32*c+r%32]
			if r >= 32 {
				q >>= 4
			}
			sub := e / 32
			return 0.5*float32(k4sc[sub])*float32(q&15) - 0.125*float32(k4m[sub])
		}},
		{"Q5_K", Q5_K, func() []byte {
			b := make([]byte, 176)
			put16(b, hQuart)
			put16(b[2:], hHalf)
			p := packK4(k4m, k4sc) // swap roles for variety
			copy(b[4:], p[:])
			pattern(b[16:], 10)
			return b
		}, func(b []byte, e int) float32 {
			c, r := e/64, e%64
			q := b[48+32*c+r%32]
			if r >= 32 {
				q >>= 4
			}
			hb := (b[16+e%32] >> (e / 32)) & 1
			sub := e / 32
			return 0.25*float32(k4m[sub])*float32(int(q&15)+16*int(hb)) - 0.5*float32(k4sc[sub])
		}},
		{"Q6_K", Q6_K, func() []byte {
			b := make([]byte, 210)
			pattern(b, 11)
			sc := []int8{-128, -77, -1, 0, 1, 2, 3, 127, 100, -100, 64, -64, 5, 6, 7, 8}
			for i, v := range sc {
				b[192+i] = byte(v)
			}
			put16(b[208:], h8th)
			return b
		}, func(b []byte, e int) float32 {
			h, r := e/128, e%128
			k, l := r/32, r%32
			var lo byte
			switch k {
			case 0:
				lo = b[64*h+l] & 15
			case 1:
				lo = b[64*h+l+32] & 15
			case 2:
				lo = b[64*h+l] >> 4
			case 3:
				lo = b[64*h+l+32] >> 4
			}
			hi := (b[128+32*h+l] >> (2 * k)) & 3
			q := int(lo|hi<<4) - 32
			sc := int8(b[192+e/16])
			return 0.125 * float32(sc) * float32(q)
		}},
		{"Q8_K", Q8_K, func() []byte {
			b := make([]byte, 292)
			pattern(b, 12)
			binary.LittleEndian.PutUint32(b, math.Float32bits(0.375))
			return b
		}, func(b []byte, e int) float32 { return 0.375 * float32(int8(b[4+e])) }},
	}
}

func TestDequantizeHandBuilt(t *testing.T) {
	for _, tc := range dequantCases() {
		t.Run(tc.name, func(t *testing.T) {
			blk := tc.block()
			if tc.t.BlockSize() > 1 && len(blk) != tc.t.TypeSize() {
				t.Fatalf("test block has %d bytes, type size %d", len(blk), tc.t.TypeSize())
			}
			n := len(blk) / tc.t.TypeSize() * tc.t.BlockSize()
			// Two copies of the block: checks the block stride too.
			src := append(append([]byte{}, blk...), blk...)
			dst := make([]float32, 2*n)
			if err := Dequantize(tc.t, src, dst); err != nil {
				t.Fatal(err)
			}
			for e := 0; e < 2*n; e++ {
				want := tc.want(blk, e%n)
				if math.Float32bits(dst[e]) != math.Float32bits(want) {
					t.Fatalf("element %d = %g, want %g", e, dst[e], want)
				}
			}
		})
	}
}

func TestDequantizeZeroBlock(t *testing.T) {
	for _, tc := range dequantCases() {
		bs := tc.t.BlockSize()
		n := 256 / bs * bs
		if bs == 1 {
			n = 256
		}
		nb, _ := RowBytes(tc.t, n)
		dst := make([]float32, n)
		for i := range dst {
			dst[i] = 7
		}
		if err := Dequantize(tc.t, make([]byte, nb), dst); err != nil {
			t.Fatal(err)
		}
		for i, v := range dst {
			if v != 0 {
				t.Fatalf("%s: zero bytes gave element %d = %g", tc.name, i, v)
			}
		}
	}
}

func TestDequantizeErrors(t *testing.T) {
	tests := []struct {
		t      Type
		n      int
		nbytes int
		target error
	}{
		{Q4_0, 33, 18, ErrRowSize},
		{Q4_K, 128, 72, ErrRowSize},
		{Q6_K, 300, 210, ErrRowSize},
		{Q8_0, 32, 33, ErrBufferSize},
		{Q4_K, 256, 143, ErrBufferSize},
		{F16, 3, 5, ErrBufferSize},
		{IQ2_XXS, 256, 66, ErrUnsupported},
		{Type(99), 32, 32, ErrUnsupported},
	}
	for _, tc := range tests {
		err := Dequantize(tc.t, make([]byte, tc.nbytes), make([]float32, tc.n))
		if !errors.Is(err, tc.target) {
			t.Errorf("Dequantize(%s, %d bytes, %d elements) = %v, want %v", tc.t, tc.nbytes, tc.n, err, tc.target)
		}
	}
	err := Dequantize(Q4_K, make([]byte, 143), make([]float32, 256))
	for _, s := range []string{"Q4_K", "256", "144", "143"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestQ3KScalesAgreeWithMaskDecode(t *testing.T) {
	// ggml decodes Q3_K scales with 32-bit masks; check our per-scale decode
	// against that formulation for many byte patterns.
	for seed := 0; seed < 64; seed++ {
		var p [12]byte
		pattern(p[:], seed)
		var got [16]int32
		q3kScales(&p, &got)
		a0 := binary.LittleEndian.Uint32(p[0:])
		a1 := binary.LittleEndian.Uint32(p[4:])
		tmp := binary.LittleEndian.Uint32(p[8:])
		const k1, k2 = 0x03030303, 0x0f0f0f0f
		aux := [4]uint32{
			a0&k2 | (tmp>>0&k1)<<4,
			a1&k2 | (tmp>>2&k1)<<4,
			a0>>4&k2 | (tmp>>4&k1)<<4,
			a1>>4&k2 | (tmp>>6&k1)<<4,
		}
		for i := 0; i < 16; i++ {
			want := int32(int8(aux[i/4]>>(8*(i%4)))) - 32
			if got[i] != want {
				t.Fatalf("seed %d scale %d = %d, want %d", seed, i, got[i], want)
			}
		}
	}
}
