package server

import (
	"encoding/base64"
	"encoding/binary"
	"io"
	"log/slog"
	"math"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/engine"
	"worker-orcd/model"
	"worker-orcd/tokenizer"
)

type embeddingsBody struct {
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Object    string `json:"object"`
		Index     int    `json:"index"`
		Embedding any    `json:"embedding"`
	} `json:"data"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// vectors decodes the embeddings of a response, float or base64.
func (b embeddingsBody) vectors(t *testing.T) [][]float32 {
	t.Helper()
	var out [][]float32
	for i, d := range b.Data {
		if d.Index != i || d.Object != "embedding" {
			t.Fatalf("data[%d]: index %d object %q", i, d.Index, d.Object)
		}
		switch v := d.Embedding.(type) {
		case []any:
			f := make([]float32, len(v))
			for j, x := range v {
				f[j] = float32(x.(float64))
			}
			out = append(out, f)
		case string:
			raw, err := base64.StdEncoding.DecodeString(v)
			if err != nil || len(raw)%4 != 0 {
				t.Fatalf("base64 %q: %v", v, err)
			}
			f := make([]float32, len(raw)/4)
			for j := range f {
				f[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
			}
			out = append(out, f)
		default:
			t.Fatalf("embedding of type %T", v)
		}
	}
	return out
}

func (ts *testServer) embeddings(t *testing.T, body string) embeddingsBody {
	t.Helper()
	resp := post(t, ts.URL+"/v1/embeddings", body)
	b := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("/v1/embeddings %s: %d %s", body, resp.StatusCode, b)
	}
	var r embeddingsBody
	decodeJSON(t, b, &r)
	return r
}

// TestEmbeddings: OpenAI's shape; float and base64 decode to the same
// vectors; identical inputs give identical vectors, alone, in one request
// or in concurrent ones; unit length; usage counts the tokens; errors.
func TestEmbeddings(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 3})
	tok := ts.m.Tokenizer()
	d := ts.m.Model.Config.NEmbd
	alone := ts.embeddings(t, `{"model":"x","input":"The quick brown fox"}`)
	if alone.Object != "list" || alone.Model == "" || len(alone.Data) != 1 {
		t.Fatalf("%+v", alone)
	}
	ref := alone.vectors(t)[0]
	var norm float64
	for _, x := range ref {
		norm += float64(x) * float64(x)
	}
	if len(ref) != d || math.Abs(norm-1) > 1e-5 {
		t.Fatalf("%d dimensions, norm² %v; want %d and 1", len(ref), norm, d)
	}
	ids, _ := tok.Encode("The quick brown fox", tokenizer.EncodeOptions{AddSpecial: true})
	if alone.Usage.PromptTokens != len(ids) || alone.Usage.TotalTokens != len(ids) {
		t.Errorf("usage %+v, want %d tokens", alone.Usage, len(ids))
	}

	cases := []struct {
		name, body string
		same       []bool // which vectors equal ref
	}{
		{"base64", `{"input":"The quick brown fox","encoding_format":"base64"}`, []bool{true}},
		{"float", `{"input":["The quick brown fox"],"encoding_format":"float","dimensions":` + itoa(d) + `}`, []bool{true}},
		{"batched", `{"input":["hello","The quick brown fox","The quick brown fox","other text"]}`, []bool{false, true, true, false}},
		{"batched base64", `{"input":["The quick brown fox","x","The quick brown fox"],"encoding_format":"base64"}`, []bool{true, false, true}},
		{"token ids", `{"input":` + mustJSON(ids) + `}`, []bool{true}},
		{"arrays of token ids", `{"input":[` + mustJSON(ids) + `,[1,2,3]]}`, []bool{true, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vecs := ts.embeddings(t, c.body).vectors(t)
			if len(vecs) != len(c.same) {
				t.Fatalf("%d vectors, want %d", len(vecs), len(c.same))
			}
			for i, v := range vecs {
				if slices.Equal(v, ref) != c.same[i] {
					t.Errorf("vector %d equal to the one alone: %v, want %v", i, !c.same[i], c.same[i])
				}
			}
		})
	}
	// Concurrent requests beside generation.
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			if i%3 == 0 {
				resp := post(t, ts.URL+"/v1/completions", `{"prompt":"Hello","max_tokens":20,"ignore_eos":true}`)
				readAll(t, resp)
				return
			}
			vecs := ts.embeddings(t, `{"input":["The quick brown fox","filler","The quick brown fox"]}`).vectors(t)
			if !slices.Equal(vecs[0], ref) || !slices.Equal(vecs[2], ref) {
				t.Errorf("request %d: vectors under load differ from alone", i)
			}
		})
	}
	wg.Wait()

	errs := []struct{ body, param, code string }{
		{`{"input":""}`, "input", "invalid_request"},
		{`{"input":[]}`, "input", "invalid_request"},
		{`{"input":5}`, "input", "invalid_request"},
		{`{"input":[-1]}`, "input", "invalid_request"},
		{`{"input":[null]}`, "input", "invalid_request"},
		{`{"input":[5,null]}`, "input", "invalid_request"},
		{`{"input":[[5],[null]]}`, "input", "invalid_request"},
		{`{"input":["a",null]}`, "input", "invalid_request"},
		{`{"input":"x","encoding_format":"binary"}`, "encoding_format", "invalid_request"},
		{`{"input":"x","dimensions":3}`, "dimensions", "invalid_request"},
		{`{"input":"` + strings.Repeat("word ", 600) + `"}`, "input", "context_length_exceeded"},
		{`{}`, "input", "invalid_request"},
	}
	for _, c := range errs {
		resp := post(t, ts.URL+"/v1/embeddings", c.body)
		b := readAll(t, resp)
		var e struct {
			Error oaiError `json:"error"`
		}
		decodeJSON(t, b, &e)
		if resp.StatusCode != 400 || e.Error.Param == nil || *e.Error.Param != c.param || e.Error.Code == nil || *e.Error.Code != c.code {
			t.Errorf("%.60s: %d %s; want 400 param %q code %q", c.body, resp.StatusCode, b, c.param, c.code)
		}
	}
	if n := ts.metric(t, `worker_orcd_requests_total{endpoint="/v1/embeddings",outcome="ok"}`); n < 11 {
		t.Errorf("ok embeddings requests counted %v", n)
	}
	if ts.InFlight() != 0 {
		t.Errorf("%d places still held", ts.InFlight())
	}
}

// noEmbedBackend is the CPU backend without ForwardEmbed.
type noEmbedBackend struct{ b *cpu.Backend }

func (n noEmbedBackend) Name() string                              { return "gpu-like" }
func (n noEmbedBackend) Config() *model.Config                     { return n.b.Config() }
func (n noEmbedBackend) NewKVCache(k int) (backend.KVCache, error) { return n.b.NewKVCache(k) }
func (n noEmbedBackend) Forward(batch []*backend.Seq) error        { return n.b.Forward(batch) }
func (n noEmbedBackend) Memory() backend.Memory                    { return n.b.Memory() }
func (n noEmbedBackend) Close() error                              { return n.b.Close() }

// TestEmbeddingsUnsupported: on a backend without embeddings,
// /v1/embeddings answers 501 naming the backend, in OpenAI's shape, and
// holds no place.
func TestEmbeddingsUnsupported(t *testing.T) {
	path := modelPath(t, "micro")
	mdl, err := model.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.FromGGUF(mdl.File)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(noEmbedBackend{cpu.New(mdl, 1)}, tok, engine.Options{Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	m := &engine.Model{Engine: e, Model: mdl}
	defer m.Close()
	s := New(Config{ModelPath: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.SetModel(m)
	hs := httptest.NewServer(s)
	defer hs.Close()
	resp := post(t, hs.URL+"/v1/embeddings", `{"input":"hi"}`)
	b := readAll(t, resp)
	var oe struct {
		Error oaiError `json:"error"`
	}
	decodeJSON(t, b, &oe)
	if resp.StatusCode != 501 || oe.Error.Code == nil || *oe.Error.Code != "unsupported_operation" ||
		!strings.Contains(oe.Error.Message, "UnsupportedOperation: the gpu-like backend does not compute embeddings") {
		t.Errorf("%d %s", resp.StatusCode, b)
	}
	if s.InFlight() != 0 {
		t.Errorf("%d places held", s.InFlight())
	}
}

// TestEmbeddingsPooling: Config.Pooling picks the pooling (the model's
// pooling_type or the mean when unset).
func TestEmbeddingsPooling(t *testing.T) {
	for _, pool := range []engine.Pooling{"", engine.PoolMean, engine.PoolLast} {
		ts := newTestServer(t, opts{cfg: func(c *Config) { c.Pooling = pool }})
		got := ts.embeddings(t, `{"input":"pooled text"}`).vectors(t)[0]
		ids, _ := ts.m.Tokenizer().Encode("pooled text", tokenizer.EncodeOptions{AddSpecial: true})
		want := pool
		if want == "" {
			want = engine.PoolMean // the synthetic model has no pooling_type
		}
		res, err := ts.m.Embed(t.Context(), ids, want)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, res.Embedding) {
			t.Errorf("pooling %q: the vector is not the %s-pooled one", pool, want)
		}
	}
}
