package model

import (
	"math"

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

// RopeInvFreq returns the RoPE inverse frequencies of the rotated pairs,
// the one definition both backends use: for pair i of rope_dim/2,
// base^(−2i/rope_dim), divided by rope_freqs[i] where the file has that
// tensor (Llama 3.1) and by the linear position scale. Pair i rotates by
// pos·RopeInvFreq()[i].
func (m *Model) RopeInvFreq() []float64 {
	c := &m.Config
	inv := make([]float64, c.RopeDim/2)
	for i := range inv {
		f := math.Pow(float64(c.RopeBase), -2*float64(i)/float64(c.RopeDim))
		if m.Weights.RopeFreqs != nil {
			f /= float64(m.Weights.RopeFreqs[i])
		}
		inv[i] = f / float64(c.RopeScale)
	}
	return inv
}
