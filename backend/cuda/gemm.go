package cuda

import (
	"errors"
	"fmt"
	"unsafe"
)

// gemmBuffers are the workspaces of the cuBLAS path, grown on demand.
type gemmBuffers struct {
	wh, wh2 *Buffer // F16 weights (gate and up for SwiGLU)
	xh      *Buffer // F16 activations, one tile
	c, c2   *Buffer // float32 results of one tile
	x16     *Buffer // F16 activations for decode rows on the tensor cores, when no producer wrote them
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

// gemmSegment computes prompt rows with cuBLAS: each matrix is dequantized
// to F16 once, then every tile of gemmTile rows (zero padded, so every call
// has one shape and a row's result does not depend on its neighbours) is
// multiplied on the tensor cores with float32 accumulation, and the
// epilogue applies bias, accumulation into the residual, or SwiGLU.
func (b *Backend) gemmSegment(x devicePtr, T int, glu bool, outs ...mmOut) error {
	if glu {
		gate, up := outs[0], outs[1]
		wg, err := b.dequantF16(gate.m, &b.gemm.wh)
		if err != nil {
			return err
		}
		wu, err := b.dequantF16(up.m, &b.gemm.wh2)
		if err != nil {
			return err
		}
		return b.gemmTiles(x, T, gate.m.rows, gate.m.cols, func(xh devicePtr, t0, n int) error {
			cg, err := b.gemmTile(wg, xh, gate.m.rows, gate.m.cols, &b.gemm.c)
			if err != nil {
				return err
			}
			cu, err := b.gemmTile(wu, xh, up.m.rows, up.m.cols, &b.gemm.c2)
			if err != nil {
				return err
			}
			return b.epilogue(cg, cu, n, gate.m.rows, gate.out+devicePtr(4*t0*gate.m.rows), 0, false)
		})
	}
	for _, o := range outs {
		w, err := b.dequantF16(o.m, &b.gemm.wh)
		if err != nil {
			return err
		}
		err = b.gemmTiles(x, T, o.m.rows, o.m.cols, func(xh devicePtr, t0, n int) error {
			c, err := b.gemmTile(w, xh, o.m.rows, o.m.cols, &b.gemm.c)
			if err != nil {
				return err
			}
			return b.epilogue(c, 0, n, o.m.rows, o.out+devicePtr(4*t0*o.m.rows), o.bias, o.accumulate)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// gemmTiles converts x's rows to F16 a tile at a time and calls f for each.
func (b *Backend) gemmTiles(x devicePtr, T, rows, cols int, f func(xh devicePtr, t0, n int) error) error {
	xh, err := b.need(&b.gemm.xh, int64(gemmTile*cols*2))
	if err != nil {
		return err
	}
	for t0 := 0; t0 < T; t0 += gemmTile {
		n := min(gemmTile, T-t0)
		// x's rows t0 … t0+n as F16, zero rows up to gemmTile.   grid ceil(gemmTile·cols/256), block 256
		if err := b.dev.launch("to_f16_pad", dims(blocks(gemmTile*cols, 256), 1, 1), dims(256, 1, 1), 0,
			newArgs().dev("x", x+devicePtr(4*t0*cols)).i32("T", n).i32("cols", cols).dev("out", xh).i32("tile", gemmTile)); err != nil {
			return err
		}
		if err := f(xh, t0, n); err != nil {
			return err
		}
	}
	return nil
}

// gemmTile computes C[gemmTile, rows] = Xh[gemmTile, cols] · Whᵀ (row-major;
// in cuBLAS's column-major terms Cᵀ = W · Xᵀ).
func (b *Backend) gemmTile(w, xh devicePtr, rows, cols int, cbuf **Buffer) (devicePtr, error) {
	c, err := b.need(cbuf, int64(gemmTile*rows*4))
	if err != nil {
		return 0, err
	}
	alpha, beta := float32(1), float32(0)
	if b.dev.prof != nil {
		if err := b.dev.prof.begin(b.dev.stream); err != nil {
			return 0, err
		}
	}
	if r := cublas.cublasGemmEx(b.blas, cublasOpT, cublasOpN, int32(rows), gemmTile, int32(cols),
		unsafe.Pointer(&alpha), w, cudaR16F, int32(cols), xh, cudaR16F, int32(cols),
		unsafe.Pointer(&beta), c, cudaR32F, int32(rows), cublasCompute32F, cublasGemmDefault); r != 0 {
		return 0, cublasError(fmt.Sprintf("cublasGemmEx (%d×%d·%d)", rows, cols, gemmTile), r)
	}
	if b.dev.prof != nil {
		if err := b.dev.prof.finish(b.dev.stream, fmt.Sprintf("cublasGemmEx %d×%d·%d", rows, cols, gemmTile)); err != nil {
			return 0, err
		}
	}
	if b.dev.syncEach {
		if err := check("cublasGemmEx (WORKER_CUDA_SYNC=1)", drv.cuStreamSynchronize(b.dev.stream)); err != nil {
			return 0, err
		}
	}
	return c, nil
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
	for _, buf := range []**Buffer{&b.gemm.wh, &b.gemm.wh2, &b.gemm.xh, &b.gemm.c, &b.gemm.c2, &b.gemm.x16} {
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
