package engine

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/model"
)

// plainBackend hides the CPU backend's ForwardEmbed: a backend without
// embeddings.
type plainBackend struct{ b *cpu.Backend }

func (p plainBackend) Name() string                              { return "plain" }
func (p plainBackend) Config() *model.Config                     { return p.b.Config() }
func (p plainBackend) NewKVCache(n int) (backend.KVCache, error) { return p.b.NewKVCache(n) }
func (p plainBackend) Forward(batch []*backend.Seq) error        { return p.b.Forward(batch) }
func (p plainBackend) Memory() backend.Memory                    { return p.b.Memory() }
func (p plainBackend) Close() error                              { return p.b.Close() }

// TestEmbed: the pooled final hidden state, L2-normalised; the same input
// gives the same vector alone, chunked, or batched beside generation and
// other embeddings; a backend without embeddings says so.
func TestEmbed(t *testing.T) {
	m, tok := penaltyModel(t)
	ids := []int32{1, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	d := m.Config.NEmbd

	// The reference: hidden states straight from the backend, pooled here.
	be := cpu.New(m, 1)
	kv, _ := be.NewKVCache(len(ids))
	s := &backend.Seq{Tokens: ids, KV: kv, Prefill: true, Embed: true}
	if err := be.ForwardEmbed([]*backend.Seq{s}); err != nil {
		t.Fatal(err)
	}
	ref := func(pool Pooling) []float64 {
		v := make([]float64, d)
		for r := range len(ids) {
			if pool == PoolLast && r != len(ids)-1 {
				continue
			}
			for j := range d {
				v[j] += float64(s.Hidden[r*d+j])
			}
		}
		var n float64
		for _, x := range v {
			n += x * x
		}
		for j := range v {
			v[j] /= math.Sqrt(n)
		}
		return v
	}
	be.Close()

	e, err := New(cpu.New(m, 2), tok, Options{Parallel: 4, BatchTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	alone := map[Pooling][]float32{}
	for _, pool := range []Pooling{PoolMean, PoolLast} {
		res, err := e.Embed(context.Background(), ids, pool)
		if err != nil {
			t.Fatal(err)
		}
		if res.StopReason != StopEmbedded || res.PromptTokens != len(ids) || len(res.Embedding) != d {
			t.Fatalf("%s: %+v", pool, res)
		}
		want := ref(pool)
		var norm float64
		for j, v := range res.Embedding {
			norm += float64(v) * float64(v)
			if math.Abs(float64(v)-want[j]) > 1e-6 {
				t.Fatalf("%s: component %d is %v, reference %v", pool, j, v, want[j])
			}
		}
		if math.Abs(norm-1) > 1e-5 {
			t.Errorf("%s: norm² %v", pool, norm)
		}
		alone[pool] = res.Embedding
	}
	if slices.Equal(alone[PoolMean], alone[PoolLast]) {
		t.Error("mean and last pooling agree")
	}

	// Beside generation and each other, chunked by BatchTokens 8.
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			if i%2 == 0 {
				if _, err := e.Generate(context.Background(), greedy([]int32{1, 2, 3, int32(i)}, 12), nil); err != nil {
					t.Error(err)
				}
				return
			}
			res, err := e.Embed(context.Background(), ids, PoolMean)
			if err != nil {
				t.Error(err)
				return
			}
			if !slices.Equal(res.Embedding, alone[PoolMean]) {
				t.Errorf("embedding %d under load differs from alone", i)
			}
		})
	}
	wg.Wait()

	// Errors.
	for _, c := range []struct {
		name string
		ids  []int32
		pool Pooling
		want error
	}{
		{"empty", nil, PoolMean, ErrInvalidRequest},
		{"bad id", []int32{1, 1 << 30}, PoolMean, ErrInvalidRequest},
		{"bad pooling", ids, "max", ErrInvalidRequest},
		{"too long", make([]int32, e.Options().CtxLen+1), PoolMean, ErrContextLength},
	} {
		if _, err := e.Embed(context.Background(), c.ids, c.pool); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	plain, err := New(plainBackend{cpu.New(m, 1)}, tok, Options{Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_, err = plain.Embed(context.Background(), ids, PoolMean)
	var ue *UnsupportedError
	if !errors.Is(err, ErrUnsupported) || !errors.As(err, &ue) || ue.Backend != "plain" {
		t.Errorf("embedding on a backend without it: %v", err)
	}
}
