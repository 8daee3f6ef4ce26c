package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/pflag"

	"worker-orcd/engine"
)

// modelFlags are the flags every command that runs a model shares.
type modelFlags struct {
	path     string
	device   string
	threads  int
	ctx      int
	parallel int
	kvType   string
	// stderr receives what resolving a model reference prints (pull
	// progress); nil: os.Stderr.
	stderr io.Writer
}

func (m *modelFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&m.path, "model", "", modelHelp)
	fs.StringVar(&m.device, "device", "auto", "where to run: auto, cpu or cuda[:N]")
	fs.IntVar(&m.threads, "threads", 0, "CPU worker threads (0 = all cores)")
	fs.IntVar(&m.ctx, "ctx", 0, "context length per sequence (0 = the model's)")
	fs.StringVar(&m.kvType, "kv-type", "", "KV cache element type: f16 or f32 (default: f16 on a GPU, f32 on the CPU)")
}

func (m *modelFlags) logger() *slog.Logger {
	level := slog.LevelWarn
	if globals.verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// load opens the model with these flags.
func (m *modelFlags) load(cmdName string, extra func(*engine.LoadOptions)) (*engine.Model, error) {
	if m.path == "" {
		return nil, fmt.Errorf("%s: --model is required (a GGUF file or a reference such as %s)", cmdName, DefaultModelRef)
	}
	stderr := m.stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	path, err := resolveModel(context.Background(), m.path, stderr)
	if err != nil {
		return nil, err
	}
	o := engine.LoadOptions{Device: m.device, Threads: m.threads, Logger: m.logger(), KVType: m.kvType,
		Engine: engine.Options{CtxLen: m.ctx, Parallel: m.parallel}}
	if m.parallel == 0 {
		o.Engine.Parallel = 1
	}
	if extra != nil {
		extra(&o)
	}
	m2, err := engine.Load(path, o)
	if err != nil {
		return nil, explainFileError(path, err)
	}
	return m2, nil
}
