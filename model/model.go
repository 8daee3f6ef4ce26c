package model

import (
	"worker-orcd/gguf"
)

// Model is a loaded model: its file, hyperparameters and weights.
type Model struct {
	File    *gguf.File
	Config  Config
	Weights *Weights
}

// Open maps a GGUF file and loads the model description from it.
func Open(path string) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := FromFile(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return m, nil
}

// FromFile loads the model description from an open GGUF file. The Model
// refers to f's mapping; close it with Close.
func FromFile(f *gguf.File) (*Model, error) {
	c, err := LoadConfig(f)
	if err != nil {
		return nil, err
	}
	w, err := LoadWeights(f, &c)
	if err != nil {
		return nil, err
	}
	return &Model{File: f, Config: c, Weights: w}, nil
}

// Close releases the file mapping.
func (m *Model) Close() error { return m.File.Close() }
