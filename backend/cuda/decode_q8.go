package cuda

import "fmt"

// mmqSuffix lists the weight types whose decode rows are 8-bit integer dot
// products (mmq_<suffix>, kernels/decode_q8.cu): the activations rounded to
// int8 a 32-element unit, the weights' own integers, dp4a. F16 weights keep
// the tensor-core kernel (mmt_), F32 and BF16 the float32 one (mmu_).
var mmqSuffix = map[string]bool{"q4_0": true, "q4_1": true, "q5_0": true, "q5_1": true,
	"q8_0": true, "q4_k": true, "q5_k": true, "q6_k": true}

// mmqWarps, mmqTokens and mmqtTokens are MMQ_WARPS, MMQ_TOK and MMQT_TOK
// of decode_q8.cu: the warps of an mmq_ or mmqt_ block, the tokens an mmq_
// block takes (mmq1_ takes one) and those an mmqt_ block takes (a multiple
// of 8).
const (
	mmqWarps   = 8
	mmqTokens  = 8
	mmqtTokens = 32
)

// mmqtMin is the fewest decode rows a product sends to mmqt_ (the tensor
// cores) rather than mmq_: the two give the same bits, so this is a speed
// choice alone (WORKER_CUDA_MMQT_MIN overrides it, to measure).
var mmqtMin = envChoice("WORKER_CUDA_MMQT_MIN", 16, 2, 4, 8, 16, 32, 64, 1<<30)

// int8Wanted decides, once for a backend, whether decode rows of quantized
// types are 8-bit integer products: WORKER_CUDA_INT8_DECODE=1 or 0 if set,
// else only when a step holds at most one decode row. Measured on an H200
// (docs/perf.md step 24): for one row mmq1_ is 1.0–2.0× as fast as mmt_
// (batch-1 decode +20 % on the Qwen2.5-0.5B shape, +50 % on Phi-3-mini);
// for 2 to 64 rows mmq_ and mmqt_ are mostly slower (64 streams −35 %).
// The choice is fixed for the backend's life, never made per batch: a
// row's result must not depend on what else is in the batch.
func int8Wanted(maxDecodeRows int) bool {
	switch envChoice("WORKER_CUDA_INT8_DECODE", -1, 0, 1) {
	case 0:
		return false
	case 1:
		return true
	}
	return maxDecodeRows == 1
}

// int8Decode reports whether decode rows of this weight type use the mmq_
// family: the backend chose 8-bit products (int8Wanted), the type is
// listed and the card has dp4a (sm_61+). It depends on the backend's
// settings, the type and the card, never on the batch.
func (b *Backend) int8Decode(suffix string) bool {
	return b.int8 && mmqSuffix[suffix] && b.dev.Arch() >= 61
}

// DecodeKernels names how decode rows of quantized weights are computed,
// for logs: "int8" (8-bit integer products) or "tensor cores" (F16).
func (b *Backend) DecodeKernels() string {
	if b.int8 && b.dev.Arch() >= 61 {
		return "int8"
	}
	return "tensor cores"
}

// mmqShared is the dynamic shared memory of an mmq1_ block: the token's
// int8 units (32 bytes) and their scale and sum (8 bytes).
func mmqShared(cols int) int { return 40 * (cols / 32) }

// mmqMaxShared is the most dynamic shared memory an mmq1_ block may use:
// 100 KiB where the card allows more than the default 48 (sm_80+:
// prepareMMT raises the limit), else 48 KiB.
func (d *Device) mmqMaxShared() int {
	if d.Arch() >= 80 {
		return 100 << 10
	}
	return 48 << 10
}

// mmq1 launches mmq1_<suffix>: one decode row, its activations quantized by
// each block into shared memory. rows is the output rows of all jobs (with
// glu, the gate's).
//
//	grid (ceil(rows/16), 1), with glu (ceil(rows/8), 1), block 256, dynamic shared mmqShared(cols)
func (d *Device) mmq1(suffix string, a *mmArgs, rows int) error {
	if err := a.check("mmq"); err != nil {
		return err
	}
	if !mmqSuffix[suffix] || a.T != 1 {
		return fmt.Errorf("%w: mmq1: %d rows of %s weights (want one row of a quantized type)", ErrLaunch, a.T, suffix)
	}
	shared := mmqShared(int(a.Cols))
	if shared > d.mmqMaxShared() {
		return fmt.Errorf("%w: mmq1: rows of %d columns need %d bytes of shared memory, more than the %d a block may use", ErrLaunch, a.Cols, shared, d.mmqMaxShared())
	}
	return d.launch("mmq1_"+suffix, dims(blocks(rows, mmqRowsPerBlock(a)), 1, 1), dims(32*mmqWarps, 1, 1), shared, newArgs().mmArg(a))
}

// mmq1p launches mmq1p_<suffix>: one decode row whose activations are
// already rounded to 8 bits in q8_rows' layout (xq, xs), as rms_norm_f32
// writes them for normQ8.
//
//	grid (ceil(rows/16), 1), with glu (ceil(rows/8), 1), block 256
func (d *Device) mmq1p(suffix string, a *mmArgs, rows int, xq, xs devicePtr) error {
	if err := a.check("mmq"); err != nil {
		return err
	}
	if !mmqSuffix[suffix] || a.T != 1 || xq == 0 || xs == 0 {
		return fmt.Errorf("%w: mmq1p: %d rows of %s weights, activations %#x/%#x (want one row of a quantized type, quantized)", ErrLaunch, a.T, suffix, xq, xs)
	}
	return d.launch("mmq1p_"+suffix, dims(blocks(rows, mmqRowsPerBlock(a)), 1, 1), dims(32*mmqWarps, 1, 1), 0,
		newArgs().mmArg(a).dev("xq", xq).dev("xs", xs))
}

// normQ8Env is WORKER_CUDA_NORM_Q8 (default 1): a lone decode row's norms
// also write its 8-bit form, and its products on the 8-bit kernels read
// that instead of rounding it again in every block (normQ8); 0 turns it
// off. The same results bit for bit; decode 4–9 % faster on an H200
// (docs/perf.md step 25).
var normQ8Env = envChoice("WORKER_CUDA_NORM_Q8", 1, 0, 1) == 1

// normQ8 reports whether this step's norm before the products of ms writes
// their 8-bit input (rmsNormPre): turned on (b.normQ8On), a single decode
// row, every matrix on the 8-bit kernels, room in the q8 scratch. The 8-bit values are the ones mmq1_ would make from the norm's
// output, so results do not change.
func (b *Backend) normQ8(T int, ms ...*dmat) bool {
	if !b.normQ8On || T != 1 || len(b.segs) != 1 || b.segs[0].prefill || b.xq == 0 {
		return false
	}
	for _, m := range ms {
		if !b.int8Decode(m.suffix) || int64(m.cols/32)*40 > b.xqBytes {
			return false
		}
	}
	return true
}

// rmsNormPre is rmsNorm of x into out that also writes out's 8-bit form
// into the q8 scratch for the products that read out next (mmqLaunch:
// mmq1p_); clearPre ends that.
func (b *Backend) rmsNormPre(x, w, out, out16 devicePtr, T, n int) error {
	xs := b.xq + devicePtr(T*(n/32)*32)
	if err := b.dev.rmsNormQ8(x, w, out, out16, b.xq, xs, T, n, b.c.RMSEps); err != nil {
		return err
	}
	b.preq, b.preqScale, b.preqX = b.xq, xs, out
	return nil
}

// clearPre forgets the 8-bit form rmsNormPre wrote.
func (b *Backend) clearPre() { b.preq, b.preqScale, b.preqX = 0, 0, 0 }

// mmqRowsPerBlock is the output rows an mmq_ or mmq1_ block covers: 2 a
// warp, with glu one (a gate row and its up row).
func mmqRowsPerBlock(a *mmArgs) int {
	if a.GLU != 0 {
		return mmqWarps
	}
	return 2 * mmqWarps
}

// mmq launches mmq_<suffix>: mmqTokens decode rows a block, xq and xs from
// q8_rows.
//
//	grid (ceil(rows/16), ceil(T/8)), with glu (ceil(rows/8), …), block 256
func (d *Device) mmq(suffix string, a *mmArgs, rows int, xq, xs devicePtr) error {
	if err := a.check("mmq"); err != nil {
		return err
	}
	if !mmqSuffix[suffix] {
		return fmt.Errorf("%w: mmq: no integer decode kernel for %s weights", ErrLaunch, suffix)
	}
	if xq == 0 || xs == 0 {
		return fmt.Errorf("%w: mmq: no quantized activations", ErrLaunch)
	}
	return d.launch("mmq_"+suffix, dims(blocks(rows, mmqRowsPerBlock(a)), blocks(int(a.T), mmqTokens), 1), dims(32*mmqWarps, 1, 1), 0,
		newArgs().mmArg(a).dev("xq", xq).dev("xs", xs))
}

// mmqLaunch runs decode rows of a quantized type: mmq1_ for one row
// (mmq1p_ when the norm before wrote its 8-bit form: normQ8); for more,
// q8_rows into the q8 scratch, then mmq_, or mmqt_ (the tensor cores,
// sm_80+) from mmqtMin rows on.
func (b *Backend) mmqLaunch(suffix string, a *mmArgs, rows int) error {
	if a.T == 1 {
		if b.preq != 0 && a.X == b.preqX {
			return b.dev.mmq1p(suffix, a, rows, b.preq, b.preqScale)
		}
		return b.dev.mmq1(suffix, a, rows)
	}
	units := int(a.Cols) / 32
	xq, err := b.q8Scratch(int64(a.T) * int64(units) * 40)
	if err != nil {
		return err
	}
	xs := xq + devicePtr(int64(a.T)*int64(units)*32)
	if err := b.dev.q8Rows(a.X, int(a.T), int(a.Cols), xq, xs); err != nil {
		return err
	}
	if int(a.T) < mmqtMin || b.dev.Arch() < 80 {
		return b.dev.mmq(suffix, a, rows, xq, xs)
	}
	return b.dev.mmqt(suffix, a, rows, xq, xs)
}

// q8Elements is the float32 elements of scratch that q8_rows needs for T
// rows of up to cols columns: 40 bytes a 32-element unit.
func q8Elements(T, cols int) int64 { return int64(T) * int64(cols/32) * 10 }

// q8Scratch is where q8_rows writes: the scratch's region when it is large
// enough (its pointer fixed while graphs use it), else a workspace (kernel
// tests, which have no scratch).
func (b *Backend) q8Scratch(n int64) (devicePtr, error) {
	if b.xq != 0 && n <= b.xqBytes {
		return b.xq, nil
	}
	return b.need(&b.gemm.xq, n)
}

// q8Rows launches q8_rows: x [T, cols] → int8 units in xq (32 bytes each)
// and their scales and sums in xs (8 bytes each, [unit][T]).
//
//	grid ceil(T·cols/32/256), block 256
func (d *Device) q8Rows(x devicePtr, T, cols int, xq, xs devicePtr) error {
	if x == 0 || xq == 0 || xs == 0 || T < 1 || cols < 32 || cols%32 != 0 {
		return fmt.Errorf("%w: q8_rows: x %#x, xq %#x, xs %#x, T %d, cols %d (want pointers, T ≥ 1, cols a positive multiple of 32)", ErrLaunch, x, xq, xs, T, cols)
	}
	return d.launch("q8_rows", dims(blocks(T*(cols/32), 256), 1, 1), dims(256, 1, 1), 0,
		newArgs().dev("x", x).i32("T", T).i32("cols", cols).dev("xq", xq).dev("xs", xs))
}

// mmqt launches mmqt_<suffix>: a block a 16-row tile (with glu 8 gate rows
// and their up rows) × mmqtTokens tokens, xq and xs from q8_rows.
//
//	grid (ceil(rows/16), ceil(T/32)), with glu (ceil(rows/8), …), block 256
func (d *Device) mmqt(suffix string, a *mmArgs, rows int, xq, xs devicePtr) error {
	if err := a.check("mmqt"); err != nil {
		return err
	}
	if !mmqSuffix[suffix] || d.Arch() < 80 {
		return fmt.Errorf("%w: mmqt: no int8 tensor-core kernel for %s weights on sm_%d", ErrLaunch, suffix, d.Arch())
	}
	if xq == 0 || xs == 0 {
		return fmt.Errorf("%w: mmqt: no quantized activations", ErrLaunch)
	}
	perBlock := 16
	if a.GLU != 0 {
		perBlock = 8
	}
	return d.launch("mmqt_"+suffix, dims(blocks(rows, perBlock), blocks(int(a.T), mmqtTokens), 1), dims(32*mmqWarps, 1, 1), 0,
		newArgs().mmArg(a).dev("xq", xq).dev("xs", xs))
}
