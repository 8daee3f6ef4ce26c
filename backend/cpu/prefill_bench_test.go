package cpu

import (
	"fmt"
	"os"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/model"
)

// BenchmarkPrefill64 runs the forward pass of a 64-token prompt on the model
// named by WORKER_BENCH_MODEL (e.g. `synth --shape qwen2.5-0.5b --type
// Q4_K_M`), on all cores: the prefill part of `bench`, without the engine,
// for profiles (`-cpuprofile`). Skipped without the variable.
func BenchmarkPrefill64(b *testing.B) {
	m, be := benchBackend(b)
	const T = 64
	kv := NewKVCache(&m.Config, T)
	toks := make([]int32, T)
	for i := range toks {
		toks[i] = int32((i*7919 + 13) % m.Config.VocabSize)
	}
	s := &backend.Seq{Tokens: toks, KV: kv, Prefill: true}
	run := func() {
		kv.n = 0
		if err := be.Forward([]*backend.Seq{s}); err != nil {
			b.Fatal(err)
		}
	}
	run()
	b.ResetTimer()
	for b.Loop() {
		run()
	}
	b.ReportMetric(float64(T)*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
}

// BenchmarkDecodeAt runs one decode step (one token, its logits) after 64
// and after 1 500 cached positions on the model named by
// WORKER_BENCH_MODEL, on all cores: the decode part of `bench` at a short
// and a long context, without the engine. Skipped without the variable.
func BenchmarkDecodeAt(b *testing.B) {
	m, be := benchBackend(b)
	for _, n := range []int{64, 1500} {
		b.Run(fmt.Sprintf("pos%d", n), func(b *testing.B) {
			kv := NewKVCache(&m.Config, n+1)
			toks := make([]int32, n)
			for i := range toks {
				toks[i] = int32((i*7919 + 13) % m.Config.VocabSize)
			}
			if err := be.Forward([]*backend.Seq{{Tokens: toks, KV: kv, Prefill: true}}); err != nil {
				b.Fatal(err)
			}
			s := &backend.Seq{Tokens: []int32{42}, KV: kv}
			for b.Loop() {
				kv.n = n
				if err := be.Forward([]*backend.Seq{s}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// benchBackend opens the model WORKER_BENCH_MODEL names and a CPU backend
// on all cores over it, closed when b ends; b is skipped without it.
func benchBackend(b *testing.B) (*model.Model, *Backend) {
	path := os.Getenv("WORKER_BENCH_MODEL")
	if path == "" {
		b.Skip("WORKER_BENCH_MODEL not set")
	}
	m, err := model.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	be := New(m, 0)
	b.Cleanup(func() { be.Close(); m.Close() })
	return m, be
}
