package quant

import (
	"math"
	"sync"

	"golang.org/x/sys/cpu"
)

// Q8_0-activation dot products (dotq8_amd64.s) in AVX2 and in AVX-512 VNNI:
// both bit-identical to dotQ8_0, dotQ4_0 and dotQ5_0 (the "eight lanes"
// order, vecdot.go). The single-row kernels take nb > 0 blocks.

//go:noescape
func dotQ8_0AVX2Asm(x, y *byte, nb int, tab *[1 << 16]float32) float32

//go:noescape
func dotQ4_0AVX2Asm(x, y *byte, nb int, tab *[1 << 16]float32) float32

//go:noescape
func dotQ5_0AVX2Asm(x, y *byte, nb int, tab *[1 << 16]float32) float32

//go:noescape
func dotQ8_0VNNIAsm(x, y *byte, nb int, tab *[1 << 16]float32) float32

//go:noescape
func dotQ4_0VNNIAsm(x, y *byte, nb int, tab *[1 << 16]float32) float32

//go:noescape
func dotQ5_0VNNIAsm(x, y *byte, nb int, tab *[1 << 16]float32) float32

// The x4 kernels compute four rows, stride bytes apart, against the same
// activations: out[r] is bit-identical to the single-row result.
//
//go:noescape
func dotQ8_0x4AVX2Asm(x *byte, stride int, y *byte, nb int, tab *[1 << 16]float32, out *[4]float32)

//go:noescape
func dotQ4_0x4AVX2Asm(x *byte, stride int, y *byte, nb int, tab *[1 << 16]float32, out *[4]float32)

//go:noescape
func dotQ5_0x4AVX2Asm(x *byte, stride int, y *byte, nb int, tab *[1 << 16]float32, out *[4]float32)

//go:noescape
func dotQ8_0x4VNNIAsm(x *byte, stride int, y *byte, nb int, tab *[1 << 16]float32, out *[4]float32)

//go:noescape
func dotQ4_0x4VNNIAsm(x *byte, stride int, y *byte, nb int, tab *[1 << 16]float32, out *[4]float32)

//go:noescape
func dotQ5_0x4VNNIAsm(x *byte, stride int, y *byte, nb int, tab *[1 << 16]float32, out *[4]float32)

// Tiles of 4 rows × 4 tokens (VNNI): out[4*t+r] is row r with token t.
//
//go:noescape
func tileQ8_0VNNIAsm(x *byte, stride int, y *byte, ystride int, nb int, tab *[1 << 16]float32, out *[16]float32)

//go:noescape
func tileQ4_0VNNIAsm(x *byte, stride int, y *byte, ystride int, nb int, tab *[1 << 16]float32, out *[16]float32)

//go:noescape
func tileQ5_0VNNIAsm(x *byte, stride int, y *byte, ystride int, nb int, tab *[1 << 16]float32, out *[16]float32)

// packQ8PairsAsm prepares eight tokens (ystride bytes apart) for the tileP
// kernels: nb blocks × 768 bytes at dst (off: the weight type's offset,
// 8, 16 or 128).
//
//go:noescape
func packQ8PairsAsm(y *byte, ystride int, nb int, tab *[1 << 16]float32, off int, dst *byte)

// 4 rows × 8 packed tokens: out in z8Lanes' order.
//
//go:noescape
func tilePQ8_0VNNIAsm(x *byte, stride int, p *byte, nb int, tab *[1 << 16]float32, out *[32]float32)

//go:noescape
func tilePQ4_0VNNIAsm(x *byte, stride int, p *byte, nb int, tab *[1 << 16]float32, out *[32]float32)

//go:noescape
func tilePQ5_0VNNIAsm(x *byte, stride int, p *byte, nb int, tab *[1 << 16]float32, out *[32]float32)

// 2 rows × 16 tokens, packed as two groups of eight (p: tokens 0–7, q:
// 8–15): the result of lane l (z16Lanes' order) stored at out[at[l]]
// (VSCATTERDPS: the caller checks every out[at[l]] lies in its slice).
//
//go:noescape
func tile16Q8_0VNNIAsm(x *byte, stride int, p, q *byte, nb int, tab *[1 << 16]float32, out *float32, at *[32]int32)

//go:noescape
func tile16Q4_0VNNIAsm(x *byte, stride int, p, q *byte, nb int, tab *[1 << 16]float32, out *float32, at *[32]int32)

//go:noescape
func tile16Q5_0VNNIAsm(x *byte, stride int, p, q *byte, nb int, tab *[1 << 16]float32, out *float32, at *[32]int32)

// The packed tiles' results come out in their reduction tree's order: lane
// l of out is row z8Lanes[l].r (z16Lanes) of the tile, token .t.
var z8Lanes, z16Lanes = tileLanes(4), tileLanes(2)

type tileLane struct{ r, t uint8 }

// tileLanes returns the lane order of the packed tiles of rows rows (4: 4 ×
// 8, 2: 2 × 16): out index rows*t+r per lane, as the tree in ZHSUM32 leaves
// them (accumulator i holds row i/(16/rows), pair i%(16/rows)).
func tileLanes(rows int) [32]tileLane {
	var idx [32]int
	if rows == 4 {
		idx = [32]int{0, 1, 8, 9, 16, 17, 24, 25, 2, 3, 10, 11, 18, 19, 26, 27, 4, 5, 12, 13, 20, 21, 28, 29, 6, 7, 14, 15, 22, 23, 30, 31}
	} else {
		idx = [32]int{0, 16, 4, 20, 8, 24, 12, 28, 1, 17, 5, 21, 9, 25, 13, 29, 2, 18, 6, 22, 10, 26, 14, 30, 3, 19, 7, 23, 11, 27, 15, 31}
	}
	var l [32]tileLane
	for i, x := range idx {
		l[i] = tileLane{r: uint8(x % rows), t: uint8(x / rows)}
	}
	return l
}

// packBufs holds the packed-token scratch of MatMul calls (*[]byte).
var packBufs sync.Pool

type (
	tile8Kernel  = func(x *byte, stride int, p *byte, nb int, tab *[1 << 16]float32, out *[32]float32)
	tile16Kernel = func(x *byte, stride int, p, q *byte, nb int, tab *[1 << 16]float32, out *float32, at *[32]int32)
)

// packedTiles returns the MatMul body for packed tiles of a type with block
// size bs and offset off: rows [0, rows4) × tokens [0, T8). Tokens go by
// sixteen through k16 (2 rows × 16 tokens: each weight block unpacked once
// for sixteen tokens), a last group of eight through k8 (4 rows × 8).
func packedTiles(k8 tile8Kernel, k16 tile16Kernel, bs, off int) packedFunc {
	return func(w []byte, rowBytes, rows4 int, xq []byte, ab, T8, n int, out []float32, outStride int) {
		nb := n / QK
		if nb <= 0 || rows4 <= 0 || T8 <= 0 {
			return
		}
		_ = w[(rows4-1)*rowBytes+nb*bs-1]
		_ = xq[(T8-1)*ab+nb*34-1]
		bp, _ := packBufs.Get().(*[]byte)
		if bp == nil {
			bp = new([]byte)
		}
		if cap(*bp) < 2*nb*768 {
			*bp = make([]byte, 2*nb*768)
		}
		buf := (*bp)[:2*nb*768]
		p, q := buf[:nb*768], buf[nb*768:]
		var tile [32]float32
		// Where each lane goes in out, from the tile's origin: the kernels
		// scatter their results there (rows4 is a multiple of four, so
		// out[tok*outStride+r+at[l]] lies in o below for every r < rows4).
		// Offsets past int32 (never with real shapes) go through tile.
		var at, id [32]int32
		direct := 15*outStride+rows4 <= scatterLimit
		for l, x := range z16Lanes {
			at[l] = int32(int(x.t)*outStride + int(x.r))
			id[l] = int32(l)
		}
		tok := 0
		for ; tok+16 <= T8; tok += 16 {
			packQ8PairsAsm(&xq[tok*ab], ab, nb, f16Table, off, &p[0])
			packQ8PairsAsm(&xq[(tok+8)*ab], ab, nb, f16Table, off, &q[0])
			o := out[tok*outStride : tok*outStride+15*outStride+rows4]
			for r := 0; r < rows4; r += 2 {
				if direct {
					k16(&w[r*rowBytes], rowBytes, &p[0], &q[0], nb, f16Table, &o[r], &at)
					continue
				}
				k16(&w[r*rowBytes], rowBytes, &p[0], &q[0], nb, f16Table, &tile[0], &id)
				or := o[r:]
				for l, v := range tile {
					or[int(z16Lanes[l].t)*outStride+int(z16Lanes[l].r)] = v
				}
			}
		}
		if tok < T8 {
			packQ8PairsAsm(&xq[tok*ab], ab, nb, f16Table, off, &p[0])
			o := out[tok*outStride:]
			for r := 0; r < rows4; r += 4 {
				k8(&w[r*rowBytes], rowBytes, &p[0], nb, f16Table, &tile)
				for l, v := range tile {
					o[int(z8Lanes[l].t)*outStride+r+int(z8Lanes[l].r)] = v
				}
			}
		}
		packBufs.Put(bp)
	}
}

// scatterLimit bounds the output offsets the 2 × 16 tiles scatter to (their
// indices are int32); tests lower it to run the other path.
var scatterLimit = math.MaxInt32

// hasQ8Asm: AVX2 and FMA (the blocks' float sums are fused multiply-adds).
// hasVNNI: also AVX-512 F, BW, VL and VNNI (256-bit EVEX forms, K masks),
// which the OS must also save (x/sys/cpu checks the OS support of the
// AVX-512 state).
var (
	hasQ8Asm = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	hasVNNI  = hasQ8Asm && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512VNNI
)

type (
	q8Kernel1 = func(x, y *byte, nb int, tab *[1 << 16]float32) float32
	q8Kernel4 = func(x *byte, stride int, y *byte, nb int, tab *[1 << 16]float32, out *[4]float32)
	q8Tile    = func(x *byte, stride int, y *byte, ystride int, nb int, tab *[1 << 16]float32, out *[16]float32)
)

func init() { setQ8Kernels(hasQ8Asm && !portable, hasVNNI && !portable) }

// setQ8Kernels installs the AVX2 kernels (avx2) or the VNNI ones (vnni, which
// wins), or the portable Go ones if neither. Tests call it to run each level.
func setQ8Kernels(avx2, vnni bool) {
	type set struct {
		t  Type
		bs int
		k1 q8Kernel1
		k4 q8Kernel4
		kt q8Tile
	}
	var sets []set
	switch {
	case vnni:
		q8Level = "avx512vnni"
		sets = []set{{Q8_0, 34, dotQ8_0VNNIAsm, dotQ8_0x4VNNIAsm, tileQ8_0VNNIAsm},
			{Q4_0, 18, dotQ4_0VNNIAsm, dotQ4_0x4VNNIAsm, tileQ4_0VNNIAsm},
			{Q5_0, 22, dotQ5_0VNNIAsm, dotQ5_0x4VNNIAsm, tileQ5_0VNNIAsm}}
	case avx2:
		q8Level = "avx2"
		sets = []set{{Q8_0, 34, dotQ8_0AVX2Asm, dotQ8_0x4AVX2Asm, nil},
			{Q4_0, 18, dotQ4_0AVX2Asm, dotQ4_0x4AVX2Asm, nil},
			{Q5_0, 22, dotQ5_0AVX2Asm, dotQ5_0x4AVX2Asm, nil}}
	default:
		q8Level = "go"
		for _, t := range []Type{Q8_0, Q4_0, Q5_0} {
			vecDotFuncs[t] = genericDotFuncs[t]
			delete(multiRowFuncs, t)
			delete(tileFuncs, t)
			delete(packedFuncs, t)
		}
		return
	}
	for _, s := range sets {
		k1, k4, bs := s.k1, s.k4, s.bs
		vecDotFuncs[s.t] = func(row, xq []byte, n int) float32 { return single(k1, bs, row, xq, n) }
		multiRowFuncs[s.t] = func(w []byte, stride int, xq []byte, n int, out []float32) int {
			return rows4(k4, bs, w, stride, xq, n, out)
		}
		if kt := s.kt; kt != nil {
			tileFuncs[s.t] = func(w []byte, stride int, xq []byte, ab, n int, tile *[16]float32) {
				nb := n / QK
				if nb <= 0 {
					clear(tile[:])
					return
				}
				_ = w[3*stride+nb*bs-1]
				_ = xq[3*ab+nb*34-1]
				kt(&w[0], stride, &xq[0], ab, nb, f16Table, tile)
			}
		} else {
			delete(tileFuncs, s.t)
		}
		if s.t == Q8_0 && vnni {
			packedFuncs[Q8_0] = packedTiles(tilePQ8_0VNNIAsm, tile16Q8_0VNNIAsm, 34, 128)
		} else if s.t == Q4_0 && vnni {
			packedFuncs[Q4_0] = packedTiles(tilePQ4_0VNNIAsm, tile16Q4_0VNNIAsm, 18, 8)
		} else if s.t == Q5_0 && vnni {
			packedFuncs[Q5_0] = packedTiles(tilePQ5_0VNNIAsm, tile16Q5_0VNNIAsm, 22, 16)
		} else {
			delete(packedFuncs, s.t)
		}
	}
}

// single checks the buffers' sizes (the assembly must not read past them)
// and calls k.
func single(k q8Kernel1, bs int, row, xq []byte, n int) float32 {
	nb := n / QK
	if nb <= 0 {
		return 0
	}
	_ = row[nb*bs-1]
	_ = xq[nb*34-1]
	return k(&row[0], &xq[0], nb, f16Table)
}

// rows4 runs k over groups of four rows and returns how many rows it did.
func rows4(k q8Kernel4, bs int, w []byte, stride int, xq []byte, n int, out []float32) int {
	nb := n / QK
	if nb <= 0 {
		return 0
	}
	_ = xq[nb*34-1]
	r := 0
	for ; r+4 <= len(out); r += 4 {
		_ = w[(r+3)*stride+nb*bs-1]
		k(&w[r*stride], stride, &xq[0], nb, f16Table, (*[4]float32)(out[r:]))
	}
	return r
}
