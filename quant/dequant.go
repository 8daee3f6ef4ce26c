package quant

import (
	"encoding/binary"
	"fmt"
	"math"
)

// ErrUnsupported reports a type this package cannot convert (yet).
var ErrUnsupported = fmt.Errorf("type not supported")

// Dequantize converts len(dst) elements of type t stored in src to float32.
// src must hold exactly RowBytes(t, len(dst)) bytes; dst may cover several
// rows (blocks never straddle rows, so a whole tensor can be converted in
// one call). The results are bit-identical to ggml's dequantize_row_* (which
// compute every product in float32, unfused).
//
// Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K,
// Q4_K, Q5_K, Q6_K, Q8_K.
func Dequantize(t Type, src []byte, dst []float32) error {
	f := dequantFuncs[t]
	if f == nil {
		return fmt.Errorf("quant: dequantize %s: %w", t, ErrUnsupported)
	}
	if err := checkSize(t, len(dst), len(src)); err != nil {
		return fmt.Errorf("quant: dequantize: %w", err)
	}
	f(src, dst)
	return nil
}

// DequantizeRow is Dequantize without the checks, for hot loops that have
// validated the tensor once: src must hold RowBytes(t, len(dst)) bytes and t
// must be supported, or it panics.
func DequantizeRow(t Type, src []byte, dst []float32) {
	dequantFuncs[t](src, dst)
}

// CanDequantize reports whether Dequantize supports t.
func CanDequantize(t Type) bool { return dequantFuncs[t] != nil }

// checkSize verifies that nbytes is the size of a row of n elements of t.
func checkSize(t Type, n, nbytes int) error {
	want, err := RowBytes(t, n)
	if err != nil {
		return err
	}
	if want != nbytes {
		return fmt.Errorf("%s row of %d elements needs %d bytes, found %d: %w", t, n, want, nbytes, ErrBufferSize)
	}
	return nil
}

// ErrBufferSize reports a byte buffer whose length does not match the element
// count (a truncated tensor or a wrong type).
var ErrBufferSize = fmt.Errorf("buffer size does not match the row length")

var dequantFuncs map[Type]func([]byte, []float32)

func init() {
	dequantFuncs = map[Type]func([]byte, []float32){
		F32:  dequantF32,
		F16:  dequantF16,
		BF16: dequantBF16,
		Q4_0: dequantQ4_0,
		Q4_1: dequantQ4_1,
		Q5_0: dequantQ5_0,
		Q5_1: dequantQ5_1,
		Q8_0: dequantQ8_0,
		Q8_1: dequantQ8_1,
		Q2_K: dequantQ2_K,
		Q3_K: dequantQ3_K,
		Q4_K: dequantQ4_K,
		Q5_K: dequantQ5_K,
		Q6_K: dequantQ6_K,
		Q8_K: dequantQ8_K,
	}
}

// f16 reads a little-endian binary16 at b[0:2] as float32.
func f16(b []byte) float32 { return F16ToF32(binary.LittleEndian.Uint16(b)) }

// F32: 4 bytes per element, little-endian IEEE 754 binary32.
func dequantF32(src []byte, dst []float32) {
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// F16: 2 bytes per element, little-endian binary16.
func dequantF16(src []byte, dst []float32) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = f16Table[binary.LittleEndian.Uint16(src[2*i:])]
	}
}

// BF16: 2 bytes per element, little-endian bfloat16.
func dequantBF16(src []byte, dst []float32) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// Q4_0: 32 elements in 18 bytes.
//
//	d  f16      scale                      bytes 0-1
//	qs [16]u8   4-bit quants               bytes 2-17
//
// Element j (j < 16) is the low nibble of qs[j], element j+16 the high nibble:
// x = (q - 8) * d.
func dequantQ4_0(src []byte, dst []float32) {
	for b := 0; b < len(dst)/QK; b++ {
		blk := (*[18]byte)(src[b*18:])
		y := (*[32]float32)(dst[b*32:])
		d := f16(blk[0:])
		qs := (*[16]byte)(blk[2:])
		for j := 0; j < 16; j++ {
			y[j] = float32(int32(qs[j]&0xf)-8) * d
			y[j+16] = float32(int32(qs[j]>>4)-8) * d
		}
	}
}

// Q4_1: 32 elements in 20 bytes.
//
//	d  f16      scale                      bytes 0-1
//	m  f16      minimum                    bytes 2-3
//	qs [16]u8   4-bit quants               bytes 4-19
//
// Same nibble order as Q4_0: x = q*d + m.
func dequantQ4_1(src []byte, dst []float32) {
	for b := 0; b < len(dst)/QK; b++ {
		blk := (*[20]byte)(src[b*20:])
		y := (*[32]float32)(dst[b*32:])
		d, m := f16(blk[0:]), f16(blk[2:])
		qs := (*[16]byte)(blk[4:])
		for j := 0; j < 16; j++ {
			y[j] = float32(float32(qs[j]&0xf)*d) + m
			y[j+16] = float32(float32(qs[j]>>4)*d) + m
		}
	}
}

// Q5_0: 32 elements in 22 bytes.
//
//	d  f16      scale                      bytes 0-1
//	qh u32 LE   5th bit of each quant      bytes 2-5
//	qs [16]u8   low 4 bits                 bytes 6-21
//
// Element j (j < 16): q = low nibble of qs[j] | bit j of qh << 4; element
// j+16: q = high nibble of qs[j] | bit j+16 of qh << 4. x = (q - 16) * d.
func dequantQ5_0(src []byte, dst []float32) {
	for b := 0; b < len(dst)/QK; b++ {
		blk := (*[22]byte)(src[b*22:])
		y := (*[32]float32)(dst[b*32:])
		d := f16(blk[0:])
		qh := binary.LittleEndian.Uint32(blk[2:])
		qs := (*[16]byte)(blk[6:])
		for j := 0; j < 16; j++ {
			h0 := (qh >> j << 4) & 0x10
			h1 := (qh >> (j + 12)) & 0x10
			y[j] = float32(int32(uint32(qs[j]&0xf)|h0)-16) * d
			y[j+16] = float32(int32(uint32(qs[j]>>4)|h1)-16) * d
		}
	}
}

// Q5_1: 32 elements in 24 bytes.
//
//	d  f16      scale                      bytes 0-1
//	m  f16      minimum                    bytes 2-3
//	qh u32 LE   5th bit of each quant      bytes 4-7
//	qs [16]u8   low 4 bits                 bytes 8-23
//
// Quants as in Q5_0 (unsigned 0..31): x = q*d + m.
func dequantQ5_1(src []byte, dst []float32) {
	for b := 0; b < len(dst)/QK; b++ {
		blk := (*[24]byte)(src[b*24:])
		y := (*[32]float32)(dst[b*32:])
		d, m := f16(blk[0:]), f16(blk[2:])
		qh := binary.LittleEndian.Uint32(blk[4:])
		qs := (*[16]byte)(blk[8:])
		for j := 0; j < 16; j++ {
			h0 := (qh >> j << 4) & 0x10
			h1 := (qh >> (j + 12)) & 0x10
			y[j] = float32(float32(uint32(qs[j]&0xf)|h0)*d) + m
			y[j+16] = float32(float32(uint32(qs[j]>>4)|h1)*d) + m
		}
	}
}

// Q8_0: 32 elements in 34 bytes.
//
//	d  f16      scale                      bytes 0-1
//	qs [32]i8   quants                     bytes 2-33
//
// x = q * d.
func dequantQ8_0(src []byte, dst []float32) {
	for b := 0; b < len(dst)/QK; b++ {
		blk := (*[34]byte)(src[b*34:])
		y := (*[32]float32)(dst[b*32:])
		d := f16(blk[0:])
		qs := (*[32]byte)(blk[2:])
		for j := 0; j < 32; j++ {
			y[j] = float32(int8(qs[j])) * d
		}
	}
}

// Q8_1: 32 elements in 36 bytes (ggml's activation format for Q4_1/Q5_1).
//
//	d  f16      scale                      bytes 0-1
//	s  f16      d * sum(qs)                bytes 2-3
//	qs [32]i8   quants                     bytes 4-35
//
// x = q * d.
func dequantQ8_1(src []byte, dst []float32) {
	for b := 0; b < len(dst)/QK; b++ {
		blk := (*[36]byte)(src[b*36:])
		y := (*[32]float32)(dst[b*32:])
		d := f16(blk[0:])
		qs := (*[32]byte)(blk[4:])
		for j := 0; j < 32; j++ {
			y[j] = float32(int8(qs[j])) * d
		}
	}
}

// Q2_K: 256 elements in 84 bytes; 16 sub-blocks of 16.
//
//	scales [16]u8  low nibble: scale, high nibble: min of sub-block i   bytes 0-15
//	qs     [64]u8  2-bit quants                                          bytes 16-79
//	d      f16     super-block scale for the scales                      bytes 80-81
//	dmin   f16     super-block scale for the mins                        bytes 82-83
//
// For half h (128 elements) and shift s = 0,2,4,6: elements 128h+32(s/2)+l,
// l < 32, are (qs[32h+l] >> s) & 3; sub-block 8h+2(s/2)+l/16.
// x = d*sc*q - dmin*m.
func dequantQ2_K(src []byte, dst []float32) {
	for b := 0; b < len(dst)/QKK; b++ {
		blk := (*[84]byte)(src[b*84:])
		y := (*[256]float32)(dst[b*256:])
		sc := (*[16]byte)(blk[0:])
		d, dmin := f16(blk[80:]), f16(blk[82:])
		is := 0
		for h := 0; h < 2; h++ {
			q := (*[32]byte)(blk[16+32*h:])
			for s := uint(0); s < 8; s += 2 {
				base := 128*h + 16*int(s)
				dl, ml := d*float32(sc[is]&0xf), dmin*float32(sc[is]>>4)
				for l := 0; l < 16; l++ {
					y[base+l] = float32(dl*float32((q[l]>>s)&3)) - ml
				}
				dl, ml = d*float32(sc[is+1]&0xf), dmin*float32(sc[is+1]>>4)
				for l := 16; l < 32; l++ {
					y[base+l] = float32(dl*float32((q[l]>>s)&3)) - ml
				}
				is += 2
			}
		}
	}
}

// q3kScales unpacks Q3_K's 12 bytes of 6-bit scales into 16 signed values
// (already minus 32). Scale i < 8 has its low 4 bits in the low nibble of
// byte i, 8 <= i < 16 in the high nibble of byte i-8; the top 2 bits of
// scale i are bits 2(i/4)..2(i/4)+1 of byte 8 + i%4.
func q3kScales(p *[12]byte, out *[16]int32) {
	for i := 0; i < 16; i++ {
		var lo byte
		if i < 8 {
			lo = p[i] & 0xf
		} else {
			lo = p[i-8] >> 4
		}
		hi := (p[8+i%4] >> (2 * uint(i/4))) & 3
		out[i] = int32(lo|hi<<4) - 32
	}
}

// Q3_K: 256 elements in 110 bytes; 16 sub-blocks of 16.
//
//	hmask  [32]u8  high bit of each quant                 bytes 0-31
//	qs     [64]u8  low 2 bits of each quant               bytes 32-95
//	scales [12]u8  16 6-bit scales (see q3kScales)        bytes 96-107
//	d      f16     super-block scale                      bytes 108-109
//
// Low bits are arranged as in Q2_K; element 128h+32k+l takes its high bit
// from bit 4h+k of hmask[l]. q = low - (high bit set ? 0 : 4), in -4..3;
// x = d*(sc-32)*q.
func dequantQ3_K(src []byte, dst []float32) {
	var sc [16]int32
	for b := 0; b < len(dst)/QKK; b++ {
		blk := (*[110]byte)(src[b*110:])
		y := (*[256]float32)(dst[b*256:])
		hm := (*[32]byte)(blk[0:])
		q3kScales((*[12]byte)(blk[96:]), &sc)
		d := f16(blk[108:])
		is := 0
		m := byte(1)
		for h := 0; h < 2; h++ {
			q := (*[32]byte)(blk[32+32*h:])
			for s := uint(0); s < 8; s += 2 {
				base := 128*h + 16*int(s)
				dl := d * float32(sc[is])
				for l := 0; l < 16; l++ {
					v := int32((q[l]>>s)&3) - 4
					if hm[l]&m != 0 {
						v += 4
					}
					y[base+l] = dl * float32(v)
				}
				dl = d * float32(sc[is+1])
				for l := 16; l < 32; l++ {
					v := int32((q[l]>>s)&3) - 4
					if hm[l]&m != 0 {
						v += 4
					}
					y[base+l] = dl * float32(v)
				}
				is += 2
				m <<= 1
			}
		}
	}
}

// scaleMinK4 returns the 6-bit scale and min of sub-block j (0..7) from the
// 12-byte Q4_K/Q5_K scales field: for j < 4 they are the low 6 bits of bytes
// j and j+4; for j >= 4 the low 4 bits come from the nibbles of byte j+4
// (scale low, min high) and the top 2 bits from bits 6-7 of bytes j-4
// (scale) and j (min).
func scaleMinK4(j int, q *[12]byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xf | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// Q4_K: 256 elements in 144 bytes; 8 sub-blocks of 32.
//
//	d      f16      super-block scale for the scales     bytes 0-1
//	dmin   f16      super-block scale for the mins       bytes 2-3
//	scales [12]u8   8 6-bit scales + 8 6-bit mins        bytes 4-15 (see scaleMinK4)
//	qs     [128]u8  4-bit quants                         bytes 16-143
//
// Chunk c (0..3) of 64 elements uses qs[32c:32c+32]: its first 32 elements
// are the low nibbles (sub-block 2c), the next 32 the high nibbles
// (sub-block 2c+1). x = d*sc*q - dmin*m.
func dequantQ4_K(src []byte, dst []float32) {
	for b := 0; b < len(dst)/QKK; b++ {
		blk := (*[144]byte)(src[b*144:])
		y := (*[256]float32)(dst[b*256:])
		d, dmin := f16(blk[0:]), f16(blk[2:])
		scales := (*[12]byte)(blk[4:])
		for c := 0; c < 4; c++ {
			q := (*[32]byte)(blk[16+32*c:])
			s1, m1 := scaleMinK4(2*c, scales)
			s2, m2 := scaleMinK4(2*c+1, scales)
			d1, mn1 := d*float32(s1), dmin*float32(m1)
			d2, mn2 := d*float32(s2), dmin*float32(m2)
			o := (*[64]float32)(y[64*c:])
			for l := 0; l < 32; l++ {
				o[l] = float32(d1*float32(q[l]&0xf)) - mn1
				o[l+32] = float32(d2*float32(q[l]>>4)) - mn2
			}
		}
	}
}

// Q5_K: 256 elements in 176 bytes; 8 sub-blocks of 32.
//
//	d      f16      super-block scale for the scales     bytes 0-1
//	dmin   f16      super-block scale for the mins       bytes 2-3
//	scales [12]u8   as Q4_K                              bytes 4-15
//	qh     [32]u8   5th bit of each quant                bytes 16-47
//	qs     [128]u8  low 4 bits, arranged as Q4_K         bytes 48-175
//
// Element 32k+l (sub-block k) takes its 5th bit from bit k of qh[l].
// x = d*sc*q - dmin*m, q in 0..31.
func dequantQ5_K(src []byte, dst []float32) {
	for b := 0; b < len(dst)/QKK; b++ {
		blk := (*[176]byte)(src[b*176:])
		y := (*[256]float32)(dst[b*256:])
		d, dmin := f16(blk[0:]), f16(blk[2:])
		scales := (*[12]byte)(blk[4:])
		qh := (*[32]byte)(blk[16:])
		for c := 0; c < 4; c++ {
			q := (*[32]byte)(blk[48+32*c:])
			s1, m1 := scaleMinK4(2*c, scales)
			s2, m2 := scaleMinK4(2*c+1, scales)
			d1, mn1 := d*float32(s1), dmin*float32(m1)
			d2, mn2 := d*float32(s2), dmin*float32(m2)
			u1, u2 := uint(2*c), uint(2*c+1)
			o := (*[64]float32)(y[64*c:])
			for l := 0; l < 32; l++ {
				q1 := q[l]&0xf | ((qh[l]>>u1)&1)<<4
				q2 := q[l]>>4 | ((qh[l]>>u2)&1)<<4
				o[l] = float32(d1*float32(q1)) - mn1
				o[l+32] = float32(d2*float32(q2)) - mn2
			}
		}
	}
}

// Q6_K: 256 elements in 210 bytes; 16 sub-blocks of 16.
//
//	ql     [128]u8  low 4 bits of each quant             bytes 0-127
//	qh     [64]u8   high 2 bits of each quant            bytes 128-191
//	scales [16]i8   8-bit signed sub-block scales        bytes 192-207
//	d      f16      super-block scale                    bytes 208-209
//
// Half h (128 elements) uses ql[64h:64h+64], qh[32h:32h+32], scales[8h:8h+8].
// For l < 32 within half h:
//
//	element l      low: ql[l]&0xf     high: qh[l]>>0 &3
//	element l+32   low: ql[l+32]&0xf  high: qh[l]>>2 &3
//	element l+64   low: ql[l]>>4      high: qh[l]>>4 &3
//	element l+96   low: ql[l+32]>>4   high: qh[l]>>6 &3
//
// q = low | high<<4 - 32 (in -32..31); element e of the half uses scale
// e/16. x = d*sc*q.
func dequantQ6_K(src []byte, dst []float32) {
	for b := 0; b < len(dst)/QKK; b++ {
		blk := (*[210]byte)(src[b*210:])
		y := (*[256]float32)(dst[b*256:])
		d := f16(blk[208:])
		for h := 0; h < 2; h++ {
			ql := (*[64]byte)(blk[64*h:])
			qh := (*[32]byte)(blk[128+32*h:])
			sc := (*[8]byte)(blk[192+8*h:])
			o := (*[128]float32)(y[128*h:])
			for l := 0; l < 32; l++ {
				is := l / 16
				q1 := int32(ql[l]&0xf|(qh[l]&3)<<4) - 32
				q2 := int32(ql[l+32]&0xf|((qh[l]>>2)&3)<<4) - 32
				q3 := int32(ql[l]>>4|((qh[l]>>4)&3)<<4) - 32
				q4 := int32(ql[l+32]>>4|((qh[l]>>6)&3)<<4) - 32
				o[l] = d * float32(int8(sc[is])) * float32(q1)
				o[l+32] = d * float32(int8(sc[is+2])) * float32(q2)
				o[l+64] = d * float32(int8(sc[is+4])) * float32(q3)
				o[l+96] = d * float32(int8(sc[is+6])) * float32(q4)
			}
		}
	}
}

// Q8_K: 256 elements in 292 bytes (ggml's activation format for K-quants).
//
//	d     f32 LE    scale                                bytes 0-3
//	qs    [256]i8   quants                               bytes 4-259
//	bsums [16]i16   sums of qs over groups of 16         bytes 260-291
//
// x = q * d.
func dequantQ8_K(src []byte, dst []float32) {
	for b := 0; b < len(dst)/QKK; b++ {
		blk := (*[292]byte)(src[b*292:])
		y := (*[256]float32)(dst[b*256:])
		d := math.Float32frombits(binary.LittleEndian.Uint32(blk[0:]))
		qs := (*[256]byte)(blk[4:])
		for j := 0; j < 256; j++ {
			y[j] = d * float32(int8(qs[j]))
		}
	}
}
