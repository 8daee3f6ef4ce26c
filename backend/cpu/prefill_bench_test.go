package cpu

import (
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
	path := os.Getenv("WORKER_BENCH_MODEL")
	if path == "" {
		b.Skip("WORKER_BENCH_MODEL not set")
	}
	m, err := model.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	be := New(m, 0)
	defer be.Close()
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
