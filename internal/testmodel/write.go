package testmodel

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"worker-orcd/gguf"
	"worker-orcd/quant"
)

// Tensors lists the tensors the spec writes, in file order (global tensors
// sorted by name, then each block's sorted by name, as in the fixtures),
// with their types under the spec's recipe. It reads VocabFile when the
// vocabulary size is not given.
func (s Spec) Tensors() ([]Tensor, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	n := s.VocabSize
	if n == 0 {
		var err error
		if _, n, err = s.TokenizerKV(); err != nil {
			return nil, err
		}
	}
	return s.tensors(n), nil
}

// Metadata returns every metadata key the spec writes, in file order:
// general.architecture, general.name, the <arch>.* hyperparameters, the
// tokenizer.* keys (see TokenizerKV), general.alignment (32),
// general.quantization_version (2) and general.file_type. The second
// result is the vocabulary size.
//
// Hyperparameters (uint32 unless noted): block_count, context_length,
// embedding_length, feed_forward_length, attention.head_count,
// attention.head_count_kv, rope.freq_base (float32),
// attention.layer_norm_rms_epsilon (float32); phi3 adds
// rope.dimension_count and rope.scaling.original_context_length; llama adds
// rope.dimension_count and vocab_size; attention.sliding_window when set.
func (s Spec) Metadata() ([]gguf.KV, int, error) {
	if err := s.Validate(); err != nil {
		return nil, 0, err
	}
	tok, n, err := s.TokenizerKV()
	if err != nil {
		return nil, 0, err
	}
	s = s.withDefaults()
	a := s.Arch + "."
	u := func(x int) uint32 { return uint32(x) }
	kvs := []gguf.KV{
		kv("general.architecture", s.Arch),
		kv("general.name", s.Name),
		kv(a+"block_count", u(s.Layers)),
		kv(a+"context_length", u(s.Context)),
		kv(a+"embedding_length", u(s.Embd)),
		kv(a+"feed_forward_length", u(s.FF)),
		kv(a+"attention.head_count", u(s.Heads)),
		kv(a+"attention.head_count_kv", u(s.HeadsKV)),
		kv(a+"rope.freq_base", s.RopeBase),
		kv(a+"attention.layer_norm_rms_epsilon", s.RMSEps),
	}
	switch s.Arch {
	case "phi3":
		kvs = append(kvs,
			kv(a+"rope.dimension_count", u(s.RopeDim)),
			kv(a+"rope.scaling.original_context_length", u(s.OrigContext)))
	case "llama":
		kvs = append(kvs, kv(a+"rope.dimension_count", u(s.RopeDim)), kv(a+"vocab_size", u(n)))
	}
	if s.SlidingWindow > 0 {
		kvs = append(kvs, kv(a+"attention.sliding_window", u(s.SlidingWindow)))
	}
	kvs = append(kvs, tok...)
	kvs = append(kvs,
		kv("general.alignment", uint32(gguf.DefaultAlignment)),
		kv("general.quantization_version", uint32(2)),
		kv("general.file_type", s.Type.FileType()))
	return kvs, n, nil
}

// Builder returns a gguf.Builder holding the whole model: metadata and
// every tensor with its data. Callers may change it (Set, Delete, AddTensor)
// before writing, e.g. to make a broken file for an error test.
func (s Spec) Builder() (*gguf.Builder, error) {
	kvs, n, err := s.Metadata()
	if err != nil {
		return nil, err
	}
	if s.Type == "" {
		s.Type = F16
	}
	ts := s.tensors(n)
	data, err := s.generate(ts)
	if err != nil {
		return nil, err
	}
	b := gguf.NewBuilder()
	for _, e := range kvs {
		b.Set(e.Key, e.Value)
	}
	for i, t := range ts {
		if err := b.AddTensor(t.Name, t.Type, t.Dims, data[i]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Bytes returns the encoded GGUF file. The same spec gives the same bytes
// on every run and machine.
func (s Spec) Bytes() ([]byte, error) {
	b, err := s.Builder()
	if err != nil {
		return nil, err
	}
	return b.Bytes()
}

// Write writes the GGUF file to path. It holds the whole file in memory
// while writing.
func (s Spec) Write(path string) error {
	b, err := s.Builder()
	if err != nil {
		return err
	}
	if err := b.WriteFile(path); err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	return nil
}

// Weight distributions, chosen to match the fixture models: a matrix is
// N(0, 1/sqrt(row length)) (so a product keeps unit scale), a tied
// embedding N(0, 0.05), an untied one N(0, 1), norm weights 1 + N(0, 0.1),
// biases N(0, 0.1).
func (s Spec) distribution(t Tensor) (mean, std float64) {
	name := t.Name
	switch {
	case strings.HasSuffix(name, "_norm.weight"):
		return 1, 0.1
	case strings.HasSuffix(name, ".bias"):
		return 0, 0.1
	case name == "token_embd.weight":
		if s.Tied {
			return 0, 0.05
		}
		return 0, 1
	}
	return 0, 1 / math.Sqrt(float64(t.Dims[0]))
}

// chunkElems is the target number of elements per unit of work. The chunk
// size in rows depends only on the row length, so the values of a tensor do
// not depend on its type or on the number of workers.
const chunkElems = 1 << 16

type chunk struct {
	tensor     int
	row0, rows int
}

// generate draws and encodes every tensor's data, in parallel over chunks
// of rows. Each chunk has its own PCG stream keyed by (Seed, tensor name,
// chunk index).
func (s Spec) generate(ts []Tensor) ([][]byte, error) {
	data := make([][]byte, len(ts))
	var chunks []chunk
	rowBytes := make([]int, len(ts))
	for i, t := range ts {
		if !quant.CanQuantize(t.Type) {
			return nil, fmt.Errorf("testmodel: tensor %s: the quant package cannot write %s yet", t.Name, t.Type)
		}
		rl := int(t.Dims[0])
		rb, err := quant.RowBytes(t.Type, rl)
		if err != nil {
			return nil, fmt.Errorf("testmodel: tensor %s: %w", t.Name, err)
		}
		rowBytes[i] = rb
		rows := int(t.Elements() / t.Dims[0])
		data[i] = make([]byte, rb*rows)
		per := max(1, chunkElems/rl)
		for r := 0; r < rows; r += per {
			chunks = append(chunks, chunk{tensor: i, row0: r, rows: min(per, rows-r)})
		}
	}
	seeds := make([]uint64, len(ts))
	for i, t := range ts {
		h := fnv.New64a()
		h.Write([]byte(t.Name))
		seeds[i] = h.Sum64()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range min(runtime.GOMAXPROCS(0), len(chunks)) {
		wg.Go(func() {
			var buf []float32
			for {
				k := int(next.Add(1) - 1)
				if k >= len(chunks) {
					return
				}
				c := chunks[k]
				t := ts[c.tensor]
				rl := int(t.Dims[0])
				n := c.rows * rl
				if cap(buf) < n {
					buf = make([]float32, n)
				}
				x := buf[:n]
				mean, std := s.distribution(t)
				idx := uint64(c.row0 / max(1, chunkElems/rl))
				r := rand.New(rand.NewPCG(s.Seed^seeds[c.tensor], idx*0x9e3779b97f4a7c15+1))
				for j := range x {
					x[j] = float32(mean + std*r.NormFloat64())
				}
				rb := rowBytes[c.tensor]
				dst := data[c.tensor][c.row0*rb : (c.row0+c.rows)*rb]
				if err := quant.Quantize(t.Type, x, dst); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("testmodel: tensor %s: %w", t.Name, err)
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return data, firstErr
}
