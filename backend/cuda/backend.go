package cuda

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"unsafe"

	"worker-orcd/backend"
	"worker-orcd/backend/cuda/kernels"
	"worker-orcd/model"
	"worker-orcd/quant"
)

// Options choose the GPU and where the NVIDIA libraries are.
type Options struct {
	Device int    // GPU index (cuda:N)
	LibDir string // directory searched first for libcuda/libnvrtc/libcublas ("" = WORKER_CUDA_LIB_PATH, then defaults)
	// NoCUBLAS computes prompt rows with the element-wise kernel instead of
	// cuBLAS (also when libcublas is missing).
	NoCUBLAS bool
	// KVType is the KV cache's element type: "f16" (half the memory and
	// attention traffic) or "f32"; "" takes WORKER_CUDA_KV_TYPE, else f16.
	KVType string
	// MaxDecodeRows is the most decode rows a step will hold (the engine's
	// slots; 0: unknown). With 1, decode rows of quantized weights are 8-bit
	// integer dot products (decode_q8.go), the faster kernel for a single
	// row; otherwise the tensor-core kernel, faster for several.
	// WORKER_CUDA_INT8_DECODE=1 or 0 forces the choice either way.
	MaxDecodeRows int
}

// ErrBadInput reports a forward request that cannot run.
var ErrBadInput = errors.New("cuda: bad forward input")

// kernelSuffix names each weight type's kernels (mmu_<suffix>, mme_<suffix>, mmt_<suffix>, embed_<suffix>, dequant_f16_<suffix>).
var kernelSuffix = map[quant.Type]string{
	quant.F32: "f32", quant.F16: "f16", quant.BF16: "bf16", quant.Q4_0: "q4_0", quant.Q4_1: "q4_1",
	quant.Q5_0: "q5_0", quant.Q5_1: "q5_1", quant.Q8_0: "q8_0", quant.Q4_K: "q4_k", quant.Q5_K: "q5_k", quant.Q6_K: "q6_k",
}

// dmat is a weight matrix resident on the device, in its file encoding.
type dmat struct {
	ptr      devicePtr
	rows     int
	cols     int
	rowBytes int64
	suffix   string
}

type dlayer struct {
	attnNorm, ffnNorm   devicePtr
	qBias, kBias, vBias devicePtr // 0 when absent
	q, k, v, o          dmat
	gate, up, down      dmat
}

// Backend runs a model on one GPU. Forward is not safe for concurrent use.
type Backend struct {
	dev  *Device
	m    *model.Model
	c    *model.Config
	Dump backend.DumpFunc

	weights    *Buffer // the file's tensor data section, verbatim
	small      *Buffer // norms, biases and RoPE frequencies as float32/float64
	embd, out  dmat
	outputNorm devicePtr
	invFreq    devicePtr
	layers     []dlayer

	capT                                 int // scratch sized for this many rows
	scratch                              *Buffer
	x, h, q, k, v, att, gate, up, logits devicePtr
	attPart                              devicePtr // attention partials [T, n_head, splits, hd+2]
	topBuf                               devicePtr // top-k results, topStride bytes a row
	topScratch                           devicePtr // top-k stage-1 keys and chunk sums, topkScratchBytes(V) a row
	topAllow                             devicePtr // constrained rows' masks, allowWords(V) words a top row
	hostAllow                            []uint64
	h16, att16, gate16                   devicePtr // F16 copies of h, att and gate (inputs of decode products on the tensor cores)
	xq                                   devicePtr // 8-bit activations of mmqt_ (q8_rows), xqBytes long
	xqBytes                              int64
	hostTop                              []byte
	meta                                 devicePtr // ids, pos, kptr, vptr
	capSel                               int
	hostMeta                             []byte
	graphs                               graphCache // captured layer passes by layout of the batch's rows
	segs                                 []segment  // runs of decode and prefill rows of the step in progress
	blas                                 uintptr    // cuBLAS handle for prompt rows (0: element-wise kernel instead)
	libDir                               string
	noBLAS                               bool
	gemm                                 gemmBuffers
	mmtParts, mmtTok                     int       // tests: force the mmt_ split and tokens a block (0: by shape)
	int8                                 bool      // decode rows of quantized types as 8-bit integer products (int8Wanted)
	gemmQ                                bool      // tests: prompt rows of quantized types through gemmq_ (as WORKER_CUDA_GEMMQ=1)
	preq, preqScale, preqX               devicePtr // a lone decode row's input preqX already rounded to 8 bits (rmsNormPre): mmq1p_ reads it
	normQ8On                             bool      // a lone decode row's norms write its 8-bit form (normQ8; WORKER_CUDA_NORM_Q8)
	noFlash                              bool      // WORKER_CUDA_NO_FLASH=1: prompt rows' attention split and merged (promptAttention)
	f16Weights                           f16Mode   // WORKER_CUDA_F16_WEIGHTS: resident F16 copies for prompt rows (f16weights.go)
	f16w                                 map[*dmat]*Buffer
	kvType                               string // KV cache elements: "f16" or "f32"
}

// New uploads a model to GPU opts.Device and compiles the kernels.
func New(m *model.Model, opts Options) (*Backend, error) {
	c := &m.Config
	if err := checkModel(c, m.Weights); err != nil {
		return nil, err
	}
	kvType := opts.KVType
	if kvType == "" {
		kvType = os.Getenv("WORKER_CUDA_KV_TYPE")
	}
	if kvType == "" {
		kvType = "f16"
	}
	if kvType != "f16" && kvType != "f32" {
		return nil, fmt.Errorf("%w: KV cache type %q: want f16 or f32 (cuda.Options.KVType, WORKER_CUDA_KV_TYPE)", ErrBadInput, kvType)
	}
	dev, err := OpenDevice(opts.Device, opts.LibDir)
	if err != nil {
		return nil, err
	}
	b := &Backend{dev: dev, m: m, c: c, libDir: opts.LibDir, noBLAS: opts.NoCUBLAS || os.Getenv("WORKER_CUDA_NO_CUBLAS") == "1", kvType: kvType,
		noFlash: os.Getenv("WORKER_CUDA_NO_FLASH") == "1", int8: int8Wanted(opts.MaxDecodeRows),
		normQ8On: normQ8Env}
	if b.f16Weights, err = f16WeightsWanted(); err != nil {
		dev.Close()
		return nil, err
	}
	if err := dev.do(b.init); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func kernelNames() []string {
	names := []string{"rms_norm_f32", "swiglu_f32", "rope_store_f32", "attention_split_f32", "rope_store_f16", "attention_split_f16",
		"attention_merge_f32", "attention_prompt_hd64", "attention_prompt_hd96", "attention_prompt_hd128", "topk_chunk_f32", "topk_merge_f32",
		"to_f16_pad", "gemm_epilogue", "to_f16_rows", "q8_rows"}
	for _, s := range kernelSuffix {
		names = append(names, "mmu_"+s, "mme_"+s, "embed_"+s, "dequant_f16_"+s)
		if mmtSuffix[s] {
			names = append(names, "mmt_"+s, "mmt1_"+s)
		}
		if mmqSuffix[s] {
			names = append(names, "mmq_"+s, "mmq1_"+s, "mmq1p_"+s, "mmqt_"+s, "gemmq_"+s)
		}
	}
	return names
}

func (b *Backend) init() error {
	d, w := b.dev, b.m.Weights
	if err := d.loadModule("decoder", kernels.Source(), kernelDefines(), kernelNames()); err != nil {
		return err
	}
	if err := d.prepareMMT(); err != nil {
		return err
	}
	// cuBLAS for prompt rows when it loads; without it they use the
	// element-wise kernel (slower, same results within rounding).
	if !b.noBLAS && loadCUBLAS(b.libDir) == nil {
		var h uintptr
		if cublas.cublasCreate_v2(&h) == 0 {
			if cublas.cublasSetStream_v2(h, d.stream) == 0 {
				b.blas = h
			} else {
				cublas.cublasDestroy_v2(h)
			}
		}
	}
	data, err := b.planWeights()
	if err != nil {
		return err
	}
	if b.weights, err = d.alloc(int64(len(data)), PurposeWeights); err != nil {
		return err
	}
	if err := b.uploadPinned(b.weights.Ptr, data); err != nil {
		return err
	}
	// The offsets become device pointers into the uploaded section.
	for _, m := range b.matrices() {
		m.ptr += b.weights.Ptr
	}
	// Small float vectors: norms, biases, RoPE inverse frequencies.
	var host []byte
	offsets := map[*float32]int{}
	addVec := func(v []float32) {
		if len(v) == 0 {
			return
		}
		offsets[&v[0]] = len(host)
		for _, x := range v {
			host = binary.LittleEndian.AppendUint32(host, math.Float32bits(x))
		}
		for len(host)%16 != 0 {
			host = append(host, 0)
		}
	}
	addVec(w.OutputNorm)
	for i := range w.Layers {
		l := &w.Layers[i]
		addVec(l.AttnNorm)
		addVec(l.FFNNorm)
		addVec(l.QBias)
		addVec(l.KBias)
		addVec(l.VBias)
	}
	invOff := len(host)
	for _, f := range b.m.RopeInvFreq() {
		host = binary.LittleEndian.AppendUint64(host, math.Float64bits(f))
	}
	if b.small, err = d.alloc(int64(len(host)), PurposeWeights); err != nil {
		return err
	}
	if err := d.copyToDevice(b.small.Ptr, unsafe.Pointer(&host[0]), int64(len(host))); err != nil {
		return err
	}
	vec := func(v []float32) devicePtr {
		if len(v) == 0 {
			return 0
		}
		return b.small.Ptr + devicePtr(offsets[&v[0]])
	}
	b.invFreq = b.small.Ptr + devicePtr(invOff)
	b.outputNorm = vec(w.OutputNorm)
	for i := range w.Layers {
		l, dl := &w.Layers[i], &b.layers[i]
		dl.attnNorm, dl.ffnNorm = vec(l.AttnNorm), vec(l.FFNNorm)
		dl.qBias, dl.kBias, dl.vBias = vec(l.QBias), vec(l.KBias), vec(l.VBias)
	}
	if b.f16Weights != f16Off {
		return b.makeF16Weights()
	}
	return nil
}

// planWeights returns the file's tensor data section and sets every
// matrix of the backend to its offset in it, checked (inside the section,
// aligned for the kernels' loads) before anything is uploaded.
func (b *Backend) planWeights() ([]byte, error) {
	f, w := b.m.File, b.m.Weights
	all := f.Bytes()
	if f.DataOffset < 0 || f.DataOffset >= int64(len(all)) {
		return nil, &model.Error{Code: "WeightMappingError", Kind: model.ErrMapping,
			Msg: fmt.Sprintf("the tensor data section starts at %d in a file of %d bytes: the file is truncated; download it again", f.DataOffset, len(all))}
	}
	data := all[f.DataOffset:]
	mat := func(mm *model.Matrix, embedOnly bool) (dmat, error) {
		suffix, ok := kernelSuffix[mm.Type]
		if !ok {
			return dmat{}, &model.Error{Code: "UnsupportedOperation", Kind: model.ErrUnsupported,
				Msg: fmt.Sprintf("tensor %q has type %s, which the CUDA backend cannot multiply yet: use --device cpu or a Q4_K_M/Q8_0/F16 file", mm.Name, mm.Type)}
		}
		off, err := tensorOffset(data, mm)
		if err != nil {
			return dmat{}, err
		}
		if err := checkAlign(mm.Name, suffix, off, int64(mm.RowBytes), embedOnly); err != nil {
			return dmat{}, err
		}
		return dmat{ptr: devicePtr(off), rows: mm.Rows, cols: mm.Cols, rowBytes: int64(mm.RowBytes), suffix: suffix}, nil
	}
	var err error
	if b.embd, err = mat(&w.TokenEmbd, !w.TiedOutput); err != nil {
		return nil, err
	}
	if b.out, err = mat(&w.Output, false); err != nil {
		return nil, err
	}
	b.layers = make([]dlayer, len(w.Layers))
	for i := range w.Layers {
		l, dl := &w.Layers[i], &b.layers[i]
		for _, p := range []struct {
			dst *dmat
			src *model.Matrix
		}{{&dl.q, &l.Q}, {&dl.k, &l.K}, {&dl.v, &l.V}, {&dl.o, &l.O}, {&dl.gate, &l.Gate}, {&dl.up, &l.Up}, {&dl.down, &l.Down}} {
			if *p.dst, err = mat(p.src, false); err != nil {
				return nil, err
			}
		}
	}
	return data, nil
}

// matrices lists every weight matrix of the backend.
func (b *Backend) matrices() []*dmat {
	ms := []*dmat{&b.embd, &b.out}
	for i := range b.layers {
		l := &b.layers[i]
		ms = append(ms, &l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down)
	}
	return ms
}

// uploadPinned copies host bytes to the device through two 16 MiB pinned
// staging buffers.
func (b *Backend) uploadPinned(dst devicePtr, src []byte) (err error) {
	const stageSize = 16 << 20
	var stage [2]unsafe.Pointer
	for i := range stage {
		if err := check("cuMemAllocHost", drv.cuMemAllocHost_v2(&stage[i], stageSize)); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, check("cuMemFreeHost", drv.cuMemFreeHost(stage[i]))) }()
	}
	return b.dev.upload(dst, src, stage, stageSize)
}

// Resident checks with the driver that the weights and the small vectors
// are device memory (CU_POINTER_ATTRIBUTE_MEMORY_TYPE is CU_MEMORYTYPE_DEVICE).
func (b *Backend) Resident() (bool, error) {
	const attrMemoryType, memoryTypeDevice = 2, 2
	ok := true
	err := b.dev.do(func() error {
		for _, buf := range []*Buffer{b.weights, b.small} {
			var mt uint32
			if err := check("cuPointerGetAttribute", drv.cuPointerGetAttribute(unsafe.Pointer(&mt), attrMemoryType, buf.Ptr)); err != nil {
				return err
			}
			ok = ok && mt == memoryTypeDevice
		}
		return nil
	})
	return ok && err == nil, err
}

// Name is "cuda:N".
func (b *Backend) Name() string { return fmt.Sprintf("cuda:%d", b.dev.Index) }

// MasksTop reports that the device's top-candidate selection honours
// Seq.Allow (backend.TopMasker): a constrained step brings back only the
// top of its masked row.
func (b *Backend) MasksTop() bool { return true }

// DeviceName is the GPU's name.
func (b *Backend) DeviceName() string { return b.dev.Name }

// Config returns the model's hyperparameters.
func (b *Backend) Config() *model.Config { return b.c }

// Memory reports VRAM by purpose.
func (b *Backend) Memory() backend.Memory {
	u := b.dev.Used()
	return backend.Memory{Weights: u[PurposeWeights], KVCache: u[PurposeKVCache], Activations: u[PurposeActivations], Workspace: u[PurposeWorkspace]}
}

// Close frees everything and releases the device. Later calls on the
// backend and its KV caches return ErrDeviceClosed (Free is a no-op);
// closing again does nothing more.
func (b *Backend) Close() error {
	if b.dev == nil {
		return nil
	}
	err := b.dev.do(func() error {
		return errors.Join(b.dropGraphs(), b.freeGemm(), b.freeF16Weights(), b.dev.free(b.weights), b.dev.free(b.small), b.dev.free(b.scratch))
	})
	if errors.Is(err, ErrDeviceClosed) {
		err = nil // closed before
	}
	return errors.Join(err, b.dev.Close())
}

var (
	_ backend.Backend       = (*Backend)(nil)
	_ backend.GraphReporter = (*Backend)(nil)
)
