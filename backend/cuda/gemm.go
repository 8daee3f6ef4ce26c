package cuda

import (
	"errors"
	"fmt"
	"unsafe"
)

// gemmBuffers are the workspaces of the cuBLAS path, grown on demand.
type gemmBuffers struct {
	wh, wh2 *Buffer // F16 weights (gate and up for SwiGLU)
	xh      *Buffer // F16 activations of a prompt chunk, in whole tiles
	c, c2   *Buffer // float32 results of a group of tiles (gemmGroup)
	x16     *Buffer // F16 activations for decode rows on the tensor cores, when no producer wrote them
	xq      *Buffer // 8-bit activations of mmqt_ where there is no scratch (kernel tests)
}

// need grows buf to n bytes (tagged workspace); call on the device thread.
func (b *Backend) need(buf **Buffer, n int64) (devicePtr, error) {
	if *buf != nil && (*buf).Bytes >= n {
		return (*buf).Ptr, nil
	}
	if *buf != nil {
		err := b.dev.free(*buf)
		*buf = nil
		if err != nil {
			return 0, err
		}
	}
	nb, err := b.dev.alloc(n, PurposeWorkspace)
	if err != nil {
		return 0, err
	}
	*buf = nb
	return nb.Ptr, nil
}

// dequantF16 writes m as an F16 [rows, cols] matrix into *buf.
func (b *Backend) dequantF16(m *dmat, buf **Buffer) (devicePtr, error) {
	ptr, err := b.need(buf, int64(m.rows)*int64(m.cols)*2)
	if err != nil {
		return 0, err
	}
	units := m.rows * (m.cols / 32)
	if m.cols%32 != 0 {
		return 0, fmt.Errorf("%w: dequant_f16_%s: cols %d is not a multiple of 32", ErrLaunch, m.suffix, m.cols)
	}
	// One thread a 32-element unit.          grid ceil(rows·cols/32 / 256), block 256
	return ptr, b.dev.launch("dequant_f16_"+m.suffix, dims(blocks(units, 256), 1, 1), dims(256, 1, 1), 0,
		newArgs().dev("W", m.ptr).i64("row_bytes", m.rowBytes).i32("rows", m.rows).i32("cols", m.cols).dev("out", ptr))
}

// gemmGroupBytes bounds a GEMM group's float32 result buffer: prompt rows
// are multiplied in groups of tiles, up to this many bytes of output (and
// at least one tile) a group. A variable for tests (groups of one tile).
var gemmGroupBytes = 32 << 20

// gemmQOn is WORKER_CUDA_GEMMQ=1: prompt rows of quantized weights through
// gemmq_ (their blocks dequantized tile by tile in shared memory) instead
// of cuBLAS on an F16 copy. Experimental and off by default: written
// without a GPU at hand (docs/perf.md step 24), its tests ready.
var gemmQOn = envChoice("WORKER_CUDA_GEMMQ", 0, 0, 1) == 1

// gemmQuant reports whether prompt rows of m go through gemmq_: turned on
// (gemmQOn, or b.gemmQ in tests), a quantized type, sm_80+. It depends on
// the settings, the type and the card, never on the rows.
func (b *Backend) gemmQuant(m *dmat) bool {
	return (gemmQOn || b.gemmQ) && mmqSuffix[m.suffix] && b.dev.Arch() >= 80
}

// gemmq launches gemmq_<m.suffix>: c[t, r] = xh[t, :]·F16(m[r, :]) for
// the T rows of the F16 tile xh (row-major c [·, m.rows]).
//
//	grid (ceil(rows/64), ceil(T/64)), block 128
func (d *Device) gemmq(m *dmat, xh devicePtr, T int, c devicePtr) error {
	if !mmqSuffix[m.suffix] || d.Arch() < 80 {
		return fmt.Errorf("%w: gemmq: no kernel for %s weights on sm_%d", ErrLaunch, m.suffix, d.Arch())
	}
	if xh == 0 || c == 0 || m.ptr == 0 || T < 1 || m.rows < 1 || m.cols < 32 || m.cols%32 != 0 {
		return fmt.Errorf("%w: gemmq_%s: xh %#x, c %#x, weights %#x, T %d, %d×%d (want pointers, T ≥ 1, cols a positive multiple of 32)",
			ErrLaunch, m.suffix, xh, c, m.ptr, T, m.rows, m.cols)
	}
	return d.launch("gemmq_"+m.suffix, dims(blocks(m.rows, 64), blocks(T, 64), 1), dims(128, 1, 1), 0,
		newArgs().dev("xh", xh).dev("W", m.ptr).i64("row_bytes", m.rowBytes).i32("rows", m.rows).i32("cols", m.cols).i32("T", T).dev("c", c))
}

// gemmTileFor is the prompt rows a cuBLAS call takes: gemmTile, but 64 for
// the LM head, whose prompt rows are mostly one a sequence, so that they are
// not padded to 256 (a function of the matrix, never of the batch).
func gemmTileFor(head bool) int {
	if head {
		return min(64, gemmTile)
	}
	return gemmTile
}

// gemmGroup is the tiles of tile rows a group takes for T prompt rows whose
// widest product has rows output rows.
func gemmGroup(T, rows, tile int) int {
	return max(1, min(blocks(T, tile), gemmGroupBytes/(tile*rows*4)))
}

// gemmWeights returns m as an F16 [rows, cols] matrix: F16 weights as they
// are, others from their resident F16 copy (WORKER_CUDA_F16_WEIGHTS) or
// dequantized into *buf; m's own blocks when gemmq_ reads them (promptTile).
func (b *Backend) gemmWeights(m *dmat, buf **Buffer) (devicePtr, error) {
	if !needsF16Copy(m) || b.gemmQuant(m) {
		return m.ptr, nil
	}
	if c := b.f16w[m]; c != nil {
		return c.Ptr, nil
	}
	return b.dequantF16(m, buf)
}

// gemmSegment computes prompt rows with cuBLAS: the activations converted
// to F16 once for all the call's matrices (zero rows up to whole tiles of
// gemmTileFor), each matrix as F16 (F16 weights in place, others dequantized
// once), every tile multiplied on the tensor cores with float32
// accumulation — one cuBLAS call a tile, so every call has one shape and a
// row's result does not depend on its neighbours — and one epilogue a
// group of tiles for bias, accumulation into the residual, or SwiGLU.
func (b *Backend) gemmSegment(x devicePtr, T int, glu bool, outs ...mmOut) error {
	cols, widest := outs[0].m.cols, 0
	for _, o := range outs {
		widest = max(widest, o.m.rows)
	}
	tile := gemmTileFor(outs[0].m == &b.out)
	tiles := blocks(T, tile)
	xh, err := b.need(&b.gemm.xh, int64(tiles*tile*cols*2))
	if err != nil {
		return err
	}
	// x's T rows as F16, zero rows up to whole tiles.   grid ceil(tiles·tile·cols/256), block 256
	if err := b.dev.launch("to_f16_pad", dims(blocks(tiles*tile*cols, 256), 1, 1), dims(256, 1, 1), 0,
		newArgs().dev("x", x).i32("T", T).i32("cols", cols).dev("out", xh).i32("tile", tiles*tile)); err != nil {
		return err
	}
	group := gemmGroup(T, widest, tile)
	cBytes := int64(group * tile * widest * 4)
	c, err := b.need(&b.gemm.c, cBytes)
	if err != nil {
		return err
	}
	// products runs one matrix (and with glu the up matrix beside it) over
	// every tile, a group at a time.
	products := func(w, wu devicePtr, o mmOut, up *mmOut) error {
		var cu devicePtr
		if up != nil {
			if cu, err = b.need(&b.gemm.c2, cBytes); err != nil {
				return err
			}
		}
		for g0 := 0; g0 < tiles; g0 += group {
			ng := min(group, tiles-g0)
			for i := range ng {
				xt := xh + devicePtr(2*(g0+i)*tile*cols)
				valid := min(tile, T-(g0+i)*tile) // rows of the tile that are prompt rows
				if err := b.promptTile(o.m, w, xt, valid, tile, c+devicePtr(4*i*tile*o.m.rows)); err != nil {
					return err
				}
				if up != nil {
					if err := b.promptTile(up.m, wu, xt, valid, tile, cu+devicePtr(4*i*tile*up.m.rows)); err != nil {
						return err
					}
				}
			}
			t0 := g0 * tile
			n := min(ng*tile, T-t0)
			if err := b.epilogue(c, cu, n, o.m.rows, o.out+devicePtr(4*t0*o.m.rows), o.bias, o.accumulate && up == nil); err != nil {
				return err
			}
		}
		return nil
	}
	if glu {
		wg, err := b.gemmWeights(outs[0].m, &b.gemm.wh)
		if err != nil {
			return err
		}
		wu, err := b.gemmWeights(outs[1].m, &b.gemm.wh2)
		if err != nil {
			return err
		}
		return products(wg, wu, outs[0], &outs[1])
	}
	for _, o := range outs {
		w, err := b.gemmWeights(o.m, &b.gemm.wh)
		if err != nil {
			return err
		}
		if err := products(w, 0, o, nil); err != nil {
			return err
		}
	}
	return nil
}

// promptTile computes one tile of prompt rows of m: cuBLAS on w (m as F16,
// gemmWeights), or with WORKER_CUDA_GEMMQ=1 gemmq_ on m's own blocks (its
// valid rows only: the rest of c is never read).
func (b *Backend) promptTile(m *dmat, w, xt devicePtr, valid, tile int, c devicePtr) error {
	if b.gemmQuant(m) {
		return b.dev.gemmq(m, xt, valid, c)
	}
	return b.gemmTile(w, xt, m.rows, m.cols, tile, c)
}

// gemmTile computes C[tile, rows] = Xh[tile, cols] · Whᵀ into c (row-major;
// in cuBLAS's column-major terms Cᵀ = W · Xᵀ).
func (b *Backend) gemmTile(w, xh devicePtr, rows, cols, tile int, c devicePtr) error {
	alpha, beta := float32(1), float32(0)
	if b.dev.prof != nil {
		if err := b.dev.prof.begin(b.dev.stream); err != nil {
			return err
		}
	}
	if r := cublas.cublasGemmEx(b.blas, cublasOpT, cublasOpN, int32(rows), int32(tile), int32(cols),
		unsafe.Pointer(&alpha), w, cudaR16F, int32(cols), xh, cudaR16F, int32(cols),
		unsafe.Pointer(&beta), c, cudaR32F, int32(rows), cublasCompute32F, cublasGemmDefault); r != 0 {
		return cublasError(fmt.Sprintf("cublasGemmEx (%d×%d·%d)", rows, cols, tile), r)
	}
	if b.dev.prof != nil {
		if err := b.dev.prof.finish(b.dev.stream, fmt.Sprintf("cublasGemmEx %d×%d·%d", rows, cols, tile)); err != nil {
			return err
		}
	}
	if b.dev.syncEach {
		if err := check("cublasGemmEx (WORKER_CUDA_SYNC=1)", drv.cuStreamSynchronize(b.dev.stream)); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) epilogue(c, up devicePtr, T, rows int, out, bias devicePtr, accumulate bool) error {
	acc := 0
	if accumulate {
		acc = 1
	}
	// out (+)= c (+ bias), or silu(c)·up.   grid ceil(T·rows/256), block 256
	return b.dev.launch("gemm_epilogue", dims(blocks(T*rows, 256), 1, 1), dims(256, 1, 1), 0,
		newArgs().dev("c", c).ptr("up", up).i32("T", T).i32("rows", rows).dev("out", out).ptr("bias", bias).i32("accumulate", acc))
}

func (b *Backend) freeGemm() error {
	var errs []error
	for _, buf := range []**Buffer{&b.gemm.wh, &b.gemm.wh2, &b.gemm.xh, &b.gemm.c, &b.gemm.c2, &b.gemm.x16, &b.gemm.xq} {
		errs = append(errs, b.dev.free(*buf))
		*buf = nil
	}
	if b.blas != 0 {
		if r := cublas.cublasDestroy_v2(b.blas); r != 0 {
			errs = append(errs, cublasError("cublasDestroy", r))
		}
		b.blas = 0
	}
	return errors.Join(errs...)
}
