package engine

import (
	"fmt"
	"log/slog"
	"strings"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/model"
	"worker-orcd/tokenizer"
)

// LoadOptions say where and how to run a model file.
type LoadOptions struct {
	Device  string // "auto" (default), "cpu", or "cuda[:N]"
	Threads int    // CPU worker goroutines (0 = all cores)
	Engine  Options
	Logger  *slog.Logger // nil: slog.Default()
	// Dump, when set, receives the named intermediate tensors of every
	// forward step (backends that support it).
	Dump backend.DumpFunc
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
	m, err := model.Open(path)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.FromGGUF(m.File)
	if err != nil {
		m.Close()
		return nil, err
	}
	if tok.VocabSize() != m.Config.VocabSize {
		m.Close()
		return nil, &model.Error{Code: "WeightMappingError", Kind: model.ErrMapping,
			Msg: fmt.Sprintf("the tokenizer has %d tokens but token_embd.weight has %d rows: the tokenizer does not belong to these weights",
				tok.VocabSize(), m.Config.VocabSize)}
	}
	be, err := openBackend(m, o, log)
	if err != nil {
		m.Close()
		return nil, err
	}
	e, err := New(be, tok, o.Engine)
	if err != nil {
		be.Close()
		m.Close()
		return nil, err
	}
	return &Model{Engine: e, Model: m}, nil
}

func openBackend(m *model.Model, o LoadOptions, log *slog.Logger) (backend.Backend, error) {
	dev := o.Device
	if dev == "" {
		dev = "auto"
	}
	newCPU := func() backend.Backend {
		b := cpu.New(m, o.Threads)
		b.Dump = o.Dump
		return b
	}
	switch {
	case dev == "cpu":
		return newCPU(), nil
	case dev == "auto":
		log.Info("device auto: using the CPU backend (this build has no CUDA backend yet)")
		return newCPU(), nil
	case dev == "cuda" || strings.HasPrefix(dev, "cuda:"):
		return nil, &model.Error{Code: "UnsupportedOperation", Kind: model.ErrUnsupported,
			Msg: fmt.Sprintf("--device %s: this build has no CUDA backend yet; use --device cpu or auto", dev)}
	}
	return nil, fmt.Errorf("unknown device %q: want auto, cpu or cuda[:N]", dev)
}

// Close stops the engine and unmaps the model file.
func (m *Model) Close() error {
	err := m.Engine.Close()
	if cerr := m.Model.Close(); err == nil {
		err = cerr
	}
	return err
}
