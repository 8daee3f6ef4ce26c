package cuda

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
)

// mmJob and mmArgs mirror MMJob and MMArgs of kernels/matrix.cu (same
// layout: TestMMArgsLayout checks it against the source).
type mmJob struct {
	W          devicePtr
	RowBytes   int64
	Out        devicePtr
	Bias       devicePtr
	Rows       int32
	Accumulate int32
}

type mmArgs struct {
	Job   [3]mmJob
	NJobs int32
	_     int32
	X     devicePtr
	X16   devicePtr // mmt_ only: X rounded to F16
	Out16 devicePtr // mmt_ only, with glu: F16 copy of the output (0: none)
	Cols  int32
	T     int32
	GLU   int32
	Parts int32 // mmt_ only
	Tok   int32 // mmt_ only
	_     int32
}

// mmOut is one matrix of a fused product: where its rows go.
type mmOut struct {
	m          *dmat
	out, bias  devicePtr
	accumulate bool
	out16      devicePtr // with glu, decode rows on the tensor cores: also an F16 copy of out (0: none)
}

// segment is a run of consecutive batch rows of one kind: decode rows (one
// token of a decoding sequence) or prefill rows (prompt or scored text).
type segment struct {
	start, n int
	prefill  bool
}

// mmLaunch runs out = x·mᵀ for one to three matrices of the same type and
// width over the same activations (with glu, two: gate, up →
// silu(gate)·up), for the T rows of x. Rows are computed by kind (b.segs):
// decode rows with the unit kernel, prefill rows with the element-wise one,
// so that a row's result never depends on what else is in the batch. With
// no segments set (kernel tests), T ≤ 8 counts as decode.
func (b *Backend) mmLaunch(x devicePtr, T int, glu bool, outs ...mmOut) error {
	return b.mmLaunch16(x, 0, T, glu, outs...)
}

// mmLaunch16 is mmLaunch with x16, an F16 copy of x (0: none; decode rows on
// the tensor cores then convert x first).
func (b *Backend) mmLaunch16(x, x16 devicePtr, T int, glu bool, outs ...mmOut) error {
	segs := b.segs
	if segs == nil {
		segs = []segment{{0, T, T > 8}}
	}
	for _, sg := range segs {
		shifted := make([]mmOut, len(outs))
		for i, o := range outs {
			shifted[i] = o
			shifted[i].out = o.out + devicePtr(4*sg.start*o.m.rows)
			if o.out16 != 0 {
				shifted[i].out16 = o.out16 + devicePtr(2*sg.start*o.m.rows)
			}
		}
		sx16 := x16
		if x16 != 0 {
			sx16 = x16 + devicePtr(2*sg.start*outs[0].m.cols)
		}
		if err := b.mmSegment(x+devicePtr(4*sg.start*outs[0].m.cols), sx16, sg.n, sg.prefill, glu, shifted...); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) mmSegment(x, x16 devicePtr, T int, prefill, glu bool, outs ...mmOut) error {
	same := true
	for _, o := range outs[1:] {
		same = same && o.m.suffix == outs[0].m.suffix && o.m.cols == outs[0].m.cols
	}
	if !same {
		if glu {
			return fmt.Errorf("cuda: gate and up have different types (%s, %s): a bug in the caller", outs[0].m.suffix, outs[1].m.suffix)
		}
		for _, o := range outs {
			if err := b.mmSegment(x, x16, T, prefill, false, o); err != nil {
				return err
			}
		}
		return nil
	}
	a, rows, err := newMMArgs(x, T, glu, outs)
	if err != nil {
		return err
	}
	if prefill && b.blas != 0 {
		return b.gemmSegment(x, T, glu, outs...)
	}
	sfx := outs[0].m.suffix
	if prefill {
		return b.dev.mme(sfx, a, rows)
	}
	if b.int8Decode(sfx) {
		if glu {
			a.Out16 = outs[0].out16
		}
		return b.mmqLaunch(sfx, a, rows)
	}
	if b.tensorCoreDecode(sfx) {
		// Tiles of 16 weight rows (glu: 8 gate + 8 up), 8/parts tiles a block.
		tiles := blocks(rows, 16)
		if glu {
			tiles = blocks(rows, 8)
		}
		parts := b.mmtParts
		if parts == 0 {
			parts = mmtPartsFor(tiles)
		}
		rowBlocks := blocks(tiles, mmtWarps/parts)
		tok := mmtTokensFor(rowBlocks, parts, T)
		if b.mmtTok != 0 {
			tok = b.mmtTok
		}
		a.Parts, a.Tok = int32(parts), int32(tok)
		if x16 == 0 {
			var err error
			if x16, err = b.toF16(x, T*outs[0].m.cols); err != nil {
				return err
			}
		}
		a.X16 = x16
		if glu {
			a.Out16 = outs[0].out16
		}
		return b.dev.mmt(sfx, a, rowBlocks)
	}
	return b.dev.mmu(sfx, a, rows)
}

// newMMArgs fills the MMArgs of a product of x (T rows) by outs' matrices
// and returns the output rows a launch covers (with glu: the gate's).
func newMMArgs(x devicePtr, T int, glu bool, outs []mmOut) (*mmArgs, int, error) {
	if len(outs) < 1 || len(outs) > len(mmArgs{}.Job) || glu && len(outs) != 2 {
		return nil, 0, fmt.Errorf("%w: a product of %d matrices (glu %v): want 1 to 3, 2 with glu", ErrLaunch, len(outs), glu)
	}
	a := new(mmArgs)
	rows := 0
	for i, o := range outs {
		acc := int32(0)
		if o.accumulate {
			acc = 1
		}
		r, err := cInt("rows", o.m.rows)
		if err != nil {
			return nil, 0, err
		}
		a.Job[i] = mmJob{W: o.m.ptr, RowBytes: o.m.rowBytes, Out: o.out, Bias: o.bias, Rows: r, Accumulate: acc}
		rows += o.m.rows
	}
	cols, err := cInt("cols", outs[0].m.cols)
	if err != nil {
		return nil, 0, err
	}
	t, err := cInt("T", T)
	if err != nil {
		return nil, 0, err
	}
	a.NJobs, a.X, a.Cols, a.T = int32(len(outs)), x, cols, t
	if glu {
		a.GLU, rows = 1, outs[0].m.rows
	}
	if _, err := cInt("rows of all jobs", rows); err != nil {
		return nil, 0, err
	}
	return a, rows, nil
}

// check refuses MMArgs a kernel of the given kind ("mmu", "mme", "mmt")
// would compute garbage from: a missing pointer, jobs that do not fit the
// struct, glu jobs of different heights, a width that is not a whole number
// of 32-element units (the unit kernels), a split or token count the
// tensor-core kernel does not handle.
func (a *mmArgs) check(kind string) error {
	bad := func(format string, v ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrLaunch, kind, fmt.Sprintf(format, v...))
	}
	if a.NJobs < 1 || int(a.NJobs) > len(a.Job) {
		return bad("%d jobs (want 1 to %d)", a.NJobs, len(a.Job))
	}
	for i := range int(a.NJobs) {
		j := &a.Job[i]
		if j.W == 0 || j.Out == 0 || j.Rows < 1 || j.RowBytes < 1 {
			return bad("job %d: weights %#x, output %#x, %d rows of %d bytes", i, j.W, j.Out, j.Rows, j.RowBytes)
		}
	}
	if a.GLU != 0 && (a.NJobs != 2 || a.Job[0].Rows != a.Job[1].Rows) {
		return bad("glu needs 2 jobs of equal rows, got %d jobs (%d, %d rows)", a.NJobs, a.Job[0].Rows, a.Job[1].Rows)
	}
	if a.X == 0 || a.T < 1 || a.Cols < 1 {
		return bad("activations %#x, T %d, cols %d", a.X, a.T, a.Cols)
	}
	if kind != "mme" && a.Cols%32 != 0 {
		return bad("cols %d is not a multiple of 32 (the unit kernels take 32-element units)", a.Cols)
	}
	if kind == "mmt" {
		if a.X16 == 0 {
			return bad("no F16 activations")
		}
		if p := a.Parts; p != 1 && p != 2 && p != 4 && p != 8 {
			return bad("parts %d (want 1, 2, 4 or 8)", p)
		}
		if a.Tok < 8 || a.Tok%8 != 0 || a.Tok > mmtTokens || a.Tok*a.Parts*int32(mmtStages) > 256 {
			return bad("tok %d with parts %d (want a multiple of 8, at most %d and 256/(%d·parts))", a.Tok, a.Parts, mmtTokens, mmtStages)
		}
	}
	return nil
}

// mmeWarps is the warps of an mme_ or mmu_ block (256 threads).
const mmeWarps = 8

// mme launches mme_<suffix>, the element-wise kernel (prefill rows without
// cuBLAS): a warp a row, elemTile tokens a block.
//
//	grid (ceil(rows/8), ceil(T/elemTile)), block 256
func (d *Device) mme(suffix string, a *mmArgs, rows int) error {
	if err := a.check("mme"); err != nil {
		return err
	}
	return d.launch("mme_"+suffix, dims(blocks(rows, mmeWarps), blocks(int(a.T), elemTile), 1), dims(32*mmeWarps, 1, 1), 0,
		newArgs().mmArg(a))
}

// mmu launches mmu_<suffix>, the float32 unit kernel (decode rows of types
// without a tensor-core kernel, or cards before sm_80): two rows a warp
// (with glu: a gate row and its up row), unitTile tokens a block.
//
//	grid (ceil(rows/16), ceil(T/unitTile)), with glu (ceil(rows/8), …), block 256
func (d *Device) mmu(suffix string, a *mmArgs, rows int) error {
	if err := a.check("mmu"); err != nil {
		return err
	}
	perWarp := 2
	if a.GLU != 0 {
		perWarp = 1
	}
	return d.launch("mmu_"+suffix, dims(blocks(rows, mmeWarps*perWarp), blocks(int(a.T), unitTile), 1), dims(32*mmeWarps, 1, 1), 0,
		newArgs().mmArg(a))
}

// mmt launches mmt_<suffix> (mmt1_<suffix> for fewer than 8 tokens), decode
// rows on the tensor cores, a.Parts warps a row tile and a.Tok tokens a block.
//
//	grid (rowBlocks, ceil(T/a.Tok)), block 256, dynamic shared mmtShared(a.Parts, a.Tok)
func (d *Device) mmt(suffix string, a *mmArgs, rowBlocks int) error {
	if err := a.check("mmt"); err != nil {
		return err
	}
	kernel := "mmt_" + suffix
	if a.T < 8 {
		kernel = "mmt1_" + suffix // the same mma for each output, fewer registers
	}
	return d.launch(kernel, dims(rowBlocks, blocks(int(a.T), int(a.Tok)), 1), dims(32*mmtWarps, 1, 1),
		mmtShared(int(a.Parts), int(a.Tok)), newArgs().mmArg(a))
}

// embed launches embed_<suffix>: x[t, :] = row ids[t] of m, dequantized.
//
//	grid T, block 256
func (d *Device) embed(m *dmat, ids, x devicePtr, T int) error {
	return d.launch("embed_"+m.suffix, dims(T, 1, 1), dims(256, 1, 1), 0,
		newArgs().dev("W", m.ptr).i64("row_bytes", m.rowBytes).dev("ids", ids).dev("x", x).i32("cols", m.cols))
}

// toF16Rows launches to_f16_rows: out[i] = F16(x[i]) for n elements (n a
// multiple of 4: each thread converts 4).
//
//	grid ceil(n/1024), block 256
func (d *Device) toF16Rows(x, out devicePtr, n int) error {
	if n < 4 || n%4 != 0 {
		return fmt.Errorf("%w: to_f16_rows: n = %d is not a positive multiple of 4", ErrLaunch, n)
	}
	return d.launch("to_f16_rows", dims(blocks(n/4, 256), 1, 1), dims(256, 1, 1), 0,
		newArgs().dev("x", x).dev("out", out).i64("n", int64(n)))
}

// kernelDefines are the -D options every compilation of the kernels gets:
// the launch constants that Go and the kernels must agree on, defined here
// once (the sources refuse to compile without them).
func kernelDefines() []string {
	return []string{
		fmt.Sprintf("--define-macro=TILE_U=%d", unitTile), fmt.Sprintf("--define-macro=TILE_T=%d", elemTile),
		fmt.Sprintf("--define-macro=MMT_WARPS=%d", mmtWarps), fmt.Sprintf("--define-macro=MMT_TOK=%d", mmtTokens),
		fmt.Sprintf("--define-macro=MMT_STAGES=%d", mmtStages), fmt.Sprintf("--define-macro=MMT_PREFETCH=%d", mmtPrefetch),
		fmt.Sprintf("--define-macro=ATT_WARPS=%d", attWarps), fmt.Sprintf("--define-macro=MAX_HD=%d", maxHeadDim), fmt.Sprintf("--define-macro=MAX_SPLITS=%d", maxMergeSplits),
		fmt.Sprintf("--define-macro=FA_WARPS=%d", faWarps),
		fmt.Sprintf("--define-macro=MMQ_WARPS=%d", mmqWarps), fmt.Sprintf("--define-macro=MMQ_TOK=%d", mmqTokens),
		fmt.Sprintf("--define-macro=MMQT_TOK=%d", mmqtTokens),
	}
}

// unitTile (TILE_U in matrix.cu) is the tokens a block of the unit kernel
// takes, and elemTile (TILE_T) those of the element-wise kernel: passed to
// NVRTC as -D options (kernelDefines), so the two sides cannot disagree.
const (
	unitTile = 4
	elemTile = 8
)

// mmtTokens and mmtWarps are MMT_TOK and MMT_WARPS of matrix.cu: the most
// tokens a block of the tensor-core decode kernel takes, and its warps.
const (
	mmtTokens = 64
	mmtWarps  = 8
)

// mmtStages (MMT_STAGES) is how many buffers of staged activations an mmt_
// block cycles through: with 2 the next iteration's columns are copied while
// the warps multiply the current ones; 1 waits for each copy. mmtPrefetch
// (MMT_PREFETCH, 0 or 1) says whether the staged kernel asks L2 for the
// next iteration's weights ahead. Neither changes a result (the same values
// reach the same instructions); WORKER_CUDA_MMT_STAGES and
// WORKER_CUDA_MMT_PREFETCH override them to measure the difference. Both
// default off: on an H200 (docs/perf.md step 16) two stages, which halve the
// tokens a block for 4 and 8 parts, and the prefetch were each slower.
var mmtStages, mmtPrefetch = envChoice("WORKER_CUDA_MMT_STAGES", 1, 1, 2), envChoice("WORKER_CUDA_MMT_PREFETCH", 0, 0, 1)

// envChoice is the integer in the environment variable when it is one of
// the allowed values, else def.
func envChoice(name string, def int, allowed ...int) int {
	v, err := strconv.Atoi(os.Getenv(name))
	if err == nil && slices.Contains(allowed, v) {
		return v
	}
	return def
}

// mmtPartsFor is how many warps split each row tile of a matrix with this
// many 16-row tiles (1, 2, 4 or 8): a function of the shape alone, since it
// sets the order of the row's sums. As few as still give a single decode
// row 2048 warps (measured on an H200: fewer parts are faster per warp, but
// a small matrix needs the split to fill the card).
func mmtPartsFor(tiles int) int {
	for _, p := range []int{1, 2, 4} {
		if tiles*p >= 2048 {
			return p
		}
	}
	return 8
}

// mmtTokensFor is how many tokens a block of the tensor-core kernel takes (a
// multiple of 8): at most mmtTokens and 256/(mmtStages·parts) (the staged
// activations must fit in shared memory), no more than the batch needs, and fewer when
// the matrix has few row blocks, so that a batch still fills the card. It
// changes no result.
func mmtTokensFor(rowBlocks, parts, T int) int {
	tok := min(mmtTokens, 256/(mmtStages*parts), (T+7)/8*8)
	for tok > 16 && rowBlocks*((T+tok-1)/tok) < mmtFillBlocks {
		tok = (tok/2 + 7) / 8 * 8
	}
	return tok
}

// mmtFillBlocks is how many blocks a launch needs before mmtTokensFor
// stops halving the tokens a block: about two blocks per SM of an H100/H200
// (132 SMs; two 256-thread blocks of 128 registers fit an SM). 240 rather
// than 264: a 256-block launch (Phi-3's gate/up) ran 15 % faster with 64
// tokens a block than split into 512 blocks of 32 (docs/perf.md step 16).
const mmtFillBlocks = 240

// mmtShared is the dynamic shared memory of an mmt_ block: the staged F16
// activations (mmtStages buffers of 16-byte pieces, 4·parts units of 4·tok+1
// pieces), at least the 32 KiB of partial sums that reuse it.
func mmtShared(parts, tok int) int {
	return max(mmtStages*64*parts*(4*tok+1), 32768)
}

// toF16 writes x's n float32 values (n a multiple of 4) as F16 into a
// workspace and returns it.
func (b *Backend) toF16(x devicePtr, n int) (devicePtr, error) {
	ptr, err := b.need(&b.gemm.x16, int64(2*n))
	if err != nil {
		return 0, err
	}
	return ptr, b.dev.toF16Rows(x, ptr, n)
}

// mmtMaxShared is the most mmtShared can ask for (stages·parts·tok ≤ 256).
const mmtMaxShared = 80 << 10

// prepareMMT lets each loaded mmt_ kernel use mmtMaxShared bytes of dynamic
// shared memory (above the default 48 KiB), and each mmq_ kernel
// mmqMaxShared; call inside do, after loadModule.
func (d *Device) prepareMMT() error {
	const attrMaxDynamicShared = 8
	if d.Arch() < 80 {
		return nil
	}
	raise := func(name string, bytes int) error {
		f, ok := d.funcs[name]
		if !ok {
			return nil
		}
		return check("cuFuncSetAttribute("+name+")", drv.cuFuncSetAttribute(f, attrMaxDynamicShared, int32(bytes)))
	}
	for s := range mmtSuffix {
		if err := errors.Join(raise("mmt_"+s, mmtMaxShared), raise("mmt1_"+s, mmtMaxShared)); err != nil {
			return err
		}
	}
	for s := range mmqSuffix {
		if err := errors.Join(raise("mmq_"+s, d.mmqMaxShared()), raise("mmq1_"+s, d.mmqMaxShared())); err != nil {
			return err
		}
	}
	return nil
}

// mmtSuffix lists the weight types whose decode rows run on the tensor
// cores (mmt_<suffix>): their dequantized values and the activations are
// rounded to F16, float32 accumulation. F32 and BF16 weights keep the
// float32 unit kernel (F16 would round or overflow them).
var mmtSuffix = map[string]bool{"f16": true, "q4_0": true, "q4_1": true, "q5_0": true, "q5_1": true,
	"q8_0": true, "q4_k": true, "q5_k": true, "q6_k": true}

// tensorCoreDecode reports whether decode rows of this weight type use
// mmt_<suffix>: the type is listed and the card has mma.m16n8k16 (sm_80+).
// The choice depends on the type and the card only, never on the batch.
func (b *Backend) tensorCoreDecode(suffix string) bool {
	return mmtSuffix[suffix] && b.dev.Arch() >= 80
}

// mm launches out[T, m.rows] = x[T, m.cols] · mᵀ.
func (b *Backend) mm(m *dmat, x, out devicePtr, T int) error {
	return b.mmLaunch(x, T, false, mmOut{m: m, out: out})
}
