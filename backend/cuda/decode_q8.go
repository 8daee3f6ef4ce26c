package cuda

import "fmt"

// mmqSuffix lists the weight types whose decode rows are 8-bit integer dot
// products (mmq_<suffix>, kernels/decode_q8.cu): the activations rounded to
// int8 a 32-element unit, the weights' own integers, dp4a. F16 weights keep
// the tensor-core kernel (mmt_), F32 and BF16 the float32 one (mmu_).
var mmqSuffix = map[string]bool{"q4_0": true, "q4_1": true, "q5_0": true, "q5_1": true,
	"q8_0": true, "q4_k": true, "q5_k": true, "q6_k": true}

// mmqWarps and mmqTokens are MMQ_WARPS and MMQ_TOK of decode_q8.cu: the
// warps of an mmq_ block (2 rows each, with glu a gate row and its up row)
// and the tokens an mmq_ block takes (mmq1_ takes one).
const (
	mmqWarps  = 8
	mmqTokens = 8
)

// int8DecodeOn is WORKER_CUDA_INT8_DECODE (default 1): 0 sends the decode
// rows of quantized types to the tensor-core kernel instead, to compare
// the two on one binary.
var int8DecodeOn = envChoice("WORKER_CUDA_INT8_DECODE", 1, 0, 1) == 1

// int8Decode reports whether decode rows of this weight type use mmq_: the
// type is listed, the card has dp4a (sm_61+) and it is not turned off. The
// choice depends on the type and the card only, never on the batch.
func (b *Backend) int8Decode(suffix string) bool {
	return int8DecodeOn && !b.noInt8 && mmqSuffix[suffix] && b.dev.Arch() >= 61
}

// mmqShared is the dynamic shared memory of an mmq_ block of tok tokens:
// each token's int8 units (32 bytes) and their scale and sum (8 bytes).
func mmqShared(tok, cols int) int { return tok * 40 * (cols / 32) }

// mmqMaxShared is the most dynamic shared memory an mmq_ block may use: 100
// KiB where the card allows more than the default 48 (sm_80+: prepareMMT
// raises the limit), else 48 KiB.
func (d *Device) mmqMaxShared() int {
	if d.Arch() >= 80 {
		return 100 << 10
	}
	return 48 << 10
}

// mmq launches mmq_<suffix> (8 tokens a block) or mmq1_<suffix> (one: a
// single token, or rows too wide for 8 in shared memory), decode rows as
// 8-bit integer dot products. rows is the output rows of all jobs (with
// glu, the gate's).
//
//	grid (ceil(rows/16), ceil(T/tok)), with glu (ceil(rows/8), …), block 256, dynamic shared mmqShared(tok, cols)
func (d *Device) mmq(suffix string, a *mmArgs, rows int) error {
	if err := a.check("mmq"); err != nil {
		return err
	}
	if !mmqSuffix[suffix] {
		return fmt.Errorf("%w: mmq: no integer decode kernel for %s weights", ErrLaunch, suffix)
	}
	perBlock := 2 * mmqWarps
	if a.GLU != 0 {
		perBlock = mmqWarps
	}
	tok, kernel := mmqTokens, "mmq_"+suffix
	if a.T == 1 || mmqShared(mmqTokens, int(a.Cols)) > d.mmqMaxShared() {
		tok, kernel = 1, "mmq1_"+suffix
	}
	shared := mmqShared(tok, int(a.Cols))
	if shared > d.mmqMaxShared() {
		return fmt.Errorf("%w: mmq: rows of %d columns need %d bytes of shared memory, more than the %d a block may use", ErrLaunch, a.Cols, shared, d.mmqMaxShared())
	}
	return d.launch(kernel, dims(blocks(rows, perBlock), blocks(int(a.T), tok), 1), dims(32*mmqWarps, 1, 1), shared,
		newArgs().mmArg(a))
}
