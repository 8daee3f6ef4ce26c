package engine

import (
	"errors"
	"fmt"
	"log/slog"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/backend/cuda"
	"worker-orcd/gguf"
	"worker-orcd/model"
	"worker-orcd/tokenizer"
)

// LoadOptions say where and how to run a model file.
type LoadOptions struct {
	Device  string // "auto" (default), "cpu", or "cuda[:N]", as backend.ParseDevice reads it
	Threads int    // CPU worker goroutines (0 = all cores)
	Engine  Options
	Logger  *slog.Logger // nil: slog.Default()
	// Dump, when set, receives the named intermediate tensors of every
	// forward step (backends that support it).
	Dump backend.DumpFunc
	// CUDALibDir is searched first for libcuda and libnvrtc
	// ("" = WORKER_CUDA_LIB_PATH, then the defaults).
	CUDALibDir string
	// KVType is the KV cache's element type: "" (the backend's default:
	// f16 on a GPU, f32 on the CPU), "f16" or "f32". The CPU backend keeps
	// float32 only and refuses "f16".
	KVType string
	// Logits, when set, receives a copy of each row of logits Score
	// computes, in order (for comparing with other implementations).
	Logits func(row []float32)
}

// Model is a loaded model file: the engine that serves it plus what it was
// made from. Close releases everything.
type Model struct {
	*Engine
	Model *model.Model
}

// Load opens a GGUF model, its tokenizer and a backend, and starts an engine.
func Load(path string, o LoadOptions) (*Model, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	dev, err := backend.ParseDevice(o.Device) // before reading a large file
	if err != nil {
		return nil, err
	}
	switch o.KVType {
	case "", "f16", "f32":
	default:
		return nil, fmt.Errorf("engine: KV cache type %q: want f16 or f32 (or none for the backend's default)", o.KVType)
	}
	m, err := model.Open(path)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.FromGGUF(m.File)
	if err != nil {
		m.Close()
		if errors.Is(err, gguf.ErrKeyNotFound) {
			return nil, fmt.Errorf("%w: the model file carries no usable tokenizer; re-convert it from a checkpoint that includes its tokenizer files, or use the publisher's GGUF", err)
		}
		return nil, err
	}
	if tok.VocabSize() != m.Config.VocabSize {
		m.Close()
		return nil, &model.Error{Code: "WeightMappingError", Kind: model.ErrMapping,
			Msg: fmt.Sprintf("the tokenizer has %d tokens but token_embd.weight has %d rows: the tokenizer does not belong to these weights",
				tok.VocabSize(), m.Config.VocabSize)}
	}
	be, err := openBackend(m, dev, o, log)
	if err != nil {
		m.Close()
		return nil, err
	}
	e, err := New(be, tok, o.Engine)
	if e != nil {
		e.logitsTap = o.Logits
	}
	if err != nil {
		be.Close()
		m.Close()
		return nil, err
	}
	return &Model{Engine: e, Model: m}, nil
}

func openBackend(m *model.Model, dev backend.Device, o LoadOptions, log *slog.Logger) (backend.Backend, error) {
	newCPU := func() (backend.Backend, error) {
		if o.KVType == "f16" {
			return nil, errors.New("engine: the CPU backend keeps its KV cache in float32: use --kv-type f32, or leave it unset")
		}
		b := cpu.New(m, o.Threads)
		b.Dump = o.Dump
		return b, nil
	}
	newCUDA := func(index int) (backend.Backend, error) {
		parallel := o.Engine.Parallel
		if parallel == 0 {
			parallel = DefaultParallel
		}
		b, err := cuda.New(m, cuda.Options{Device: index, LibDir: o.CUDALibDir, KVType: o.KVType, MaxDecodeRows: parallel})
		if err != nil {
			return nil, err
		}
		b.Dump = o.Dump
		log.Info("using the CUDA backend", "device", b.Name(), "gpu", b.DeviceName(), "decode_kernels", b.DecodeKernels())
		return b, nil
	}
	switch dev.Kind {
	case backend.DeviceCPU:
		return newCPU()
	case backend.DeviceCUDA:
		return newCUDA(dev.Index)
	}
	b, err := newCUDA(0)
	if err == nil {
		return b, nil
	}
	var alloc *cuda.AllocationError
	if errors.As(err, &alloc) {
		return nil, err // a GPU is there but the model does not fit: say so rather than crawl on the CPU
	}
	if errors.Is(err, cuda.ErrLibraryNotFound) {
		log.Info("device auto: no NVIDIA driver found, running on the CPU", "reason", err.Error())
	} else {
		log.Warn("device auto: the GPU could not be used, running on the CPU (slower)", "reason", err.Error())
	}
	return newCPU()
}

// Close stops the engine and unmaps the model file.
func (m *Model) Close() error {
	err := m.Engine.Close()
	if cerr := m.Model.Close(); err == nil {
		err = cerr
	}
	return err
}
