package quant

import (
	"encoding/binary"
	"math"
	"sync"
)

// Sixteen-token Q4_K/Q6_K kernels (dotk16_amd64.s, AVX-512 BW + VNNI): one
// row against sixteen packed tokens; lane L of out is token kperm[L]'s
// result, bit-identical to dotQ4_K/dotQ6_K.
//
//go:noescape
func tile16Q4_KAsm(x, p *byte, nb int, tab *[1 << 16]float32, out *[16]float32)

//go:noescape
func tile16Q6_KAsm(x, p *byte, nb int, tab *[1 << 16]float32, out *[16]float32)

// kperm is the token order the kernels' lane sums come out in (their
// reduction tree's): lane L holds token kperm[L].
var kperm = [16]int{0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15}

// k16Block is the packed size of one block of sixteen tokens.
const k16Block = 16*256 + 64 + 8*64

// packK16 packs sixteen Q8_K activation rows (ab bytes apart, nb blocks) for
// the kernels: per block the tokens' quants (256 bytes each, in token
// order), their d in lane order, and their bsum pairs in lane order.
func packK16(xq []byte, ab, nb int, dst []byte) {
	_ = dst[nb*k16Block-1]
	_ = xq[15*ab+nb*292-1]
	for b := range nb {
		p := dst[b*k16Block : (b+1)*k16Block]
		for t := range 16 {
			copy(p[256*t:256*t+256], xq[t*ab+292*b+4:t*ab+292*b+260])
		}
		for l, t := range kperm {
			y := xq[t*ab+292*b : t*ab+292*b+292]
			copy(p[4096+4*l:4096+4*l+4], y[0:4])
			for i := range 8 {
				binary.LittleEndian.PutUint32(p[4160+64*i+4*l:], binary.LittleEndian.Uint32(y[260+4*i:]))
			}
		}
	}
}

// packK16Asm is packK16 in AVX-512 (quantact_amd64.s), off[l] =
// kperm[l]*ab; the kernels that read its output need AVX-512 too.
//
//go:noescape
func packK16Asm(xq *byte, ab int, nb int, dst *byte, off *[16]int32)

// packK16Fast is packK16 through packK16Asm (same bytes) where the tokens'
// offsets fit the gathers' int32 indices.
func packK16Fast(xq []byte, ab, nb int, dst []byte, off *[16]int32) {
	_ = dst[nb*k16Block-1]
	_ = xq[15*ab+nb*292-1]
	if 15*ab+nb*292 > math.MaxInt32 {
		packK16(xq, ab, nb, dst)
		return
	}
	packK16Asm(&xq[0], ab, nb, &dst[0], off)
}

// k16Offsets returns kperm[l]*ab for packK16Asm.
func k16Offsets(ab int) (off [16]int32) {
	for l, t := range kperm {
		off[l] = int32(t * ab)
	}
	return off
}

// k16Bufs holds packed-token scratch (*[]byte).
var k16Bufs sync.Pool

// kTok16 returns the MatMul body for rows × tokens [0, T16) (T16 a multiple
// of 16) of a K-quant type with block size bs through kernel k.
func kTok16(k func(x, p *byte, nb int, tab *[1 << 16]float32, out *[16]float32), bs int) kTok16Func {
	return func(w []byte, rowBytes, rows int, xq []byte, ab, T16, n int, out []float32, outStride int) {
		nb := n / QKK
		if nb <= 0 || rows <= 0 || T16 <= 0 {
			return
		}
		_ = w[(rows-1)*rowBytes+nb*bs-1]
		_ = xq[(T16-1)*ab+nb*292-1]
		bp, _ := k16Bufs.Get().(*[]byte)
		if bp == nil {
			bp = new([]byte)
		}
		if cap(*bp) < nb*k16Block {
			*bp = make([]byte, nb*k16Block)
		}
		buf := (*bp)[:nb*k16Block]
		var res [16]float32
		off := k16Offsets(ab)
		for tok := 0; tok+16 <= T16; tok += 16 {
			packK16Fast(xq[tok*ab:], ab, nb, buf, &off)
			for r := range rows {
				k(&w[r*rowBytes], &buf[0], nb, f16Table, &res)
				for l, t := range kperm {
					out[(tok+t)*outStride+r] = res[l]
				}
			}
		}
		k16Bufs.Put(bp)
	}
}

func init() {
	if hasVNNI && hasAVX2 && !portable {
		tok16Funcs[Q4_K] = kTok16(tile16Q4_KAsm, 144)
		tok16Funcs[Q6_K] = kTok16(tile16Q6_KAsm, 210)
	}
}
