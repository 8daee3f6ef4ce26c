package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"worker-orcd/backend"
	"worker-orcd/engine"
	"worker-orcd/sample"
)

func init() { register(newBenchCmd) }

// benchJSON is what `bench --json` prints; the README documents it.
type benchJSON struct {
	Model         string  `json:"model"`
	Device        string  `json:"device"`
	DecodeKernels string  `json:"decode_kernels,omitempty"` // GPU: "int8" or "tensor cores" (how decode rows of quantized weights are computed)
	WeightBytes   int64   `json:"weight_bytes_per_token"`   // bytes of weights one decode step reads
	MemcpyGBs     float64 `json:"memcpy_gb_per_s"`
	FloorTPS      float64 `json:"decode_floor_tokens_per_s"` // memcpy bandwidth / weight bytes
	PromptTokens  int     `json:"prompt_tokens"`
	PrefillTPS    float64 `json:"prefill_tokens_per_s"` // median over the --reps runs
	GenTokens     int     `json:"generated_tokens"`
	DecodeTPS     float64 `json:"decode_tokens_per_s"` // median over the --reps runs
	DecodeOfFloor float64 `json:"decode_fraction_of_floor"`
	// Reps is --reps: measured runs of the one request (after a warm-up run
	// of the same shape); PrefillRuns and DecodeRuns are each run's figure.
	Reps        int       `json:"reps"`
	PrefillRuns []float64 `json:"prefill_tokens_per_s_runs"`
	DecodeRuns  []float64 `json:"decode_tokens_per_s_runs"`
	// The prefill's time to first token (median), and that of a request
	// whose prompt is the last run's prompt plus 16 fresh tokens, answered
	// from the prefix cache (--prefix-cache): the time a chat's next turn
	// waits (the median of --reps such requests).
	TTFTMs             float64      `json:"ttft_ms"`
	CachedPrefixTTFTMs float64      `json:"cached_prefix_ttft_ms"` // median over the --reps runs
	CachedPrefixRuns   []float64    `json:"cached_prefix_ttft_ms_runs"`
	CachedPrefixTokens int          `json:"cached_prefix_tokens"`
	Concurrency        []benchLevel `json:"concurrency"`
	// Constrained is the decode of one request under --json-schema-file.
	Constrained *benchConstrained `json:"constrained,omitempty"`
}

// benchConstrained measures constrained decoding: the same greedy decode as
// decode_tokens_per_s with the output held to a JSON Schema.
type benchConstrained struct {
	VocabMs     float64 `json:"vocab_ms"`          // building the vocabulary's token trie (once per model)
	CompileMs   float64 `json:"schema_compile_ms"` // compiling the schema into a grammar and automaton
	GenTokens   int     `json:"generated_tokens"`  // tokens until the schema's end (or -n)
	DecodeTPS   float64 `json:"decode_tokens_per_s"`
	FirstTPS    float64 `json:"first_decode_tokens_per_s"`         // the first run, when every mask is computed afresh
	Unconstrain float64 `json:"unconstrained_decode_tokens_per_s"` // the same request's length without the schema
	Overhead    float64 `json:"overhead"`                          // 1 - constrained / unconstrained decode tokens/s
	StopReason  string  `json:"stop_reason"`
}

type benchLevel struct {
	Requests     int     `json:"requests"`
	TotalTPS     float64 `json:"generated_tokens_per_s"` // all requests together, prompts included in the time
	PerRequestMs float64 `json:"mean_request_ms"`
	TTFTP50Ms    float64 `json:"ttft_p50_ms"` // request start to its first generated token
	TTFTP99Ms    float64 `json:"ttft_p99_ms"`
	ITLP50Ms     float64 `json:"itl_p50_ms"` // between consecutive generated tokens of a request
	ITLP99Ms     float64 `json:"itl_p99_ms"`
	// Generated tokens/s while every request of the level is decoding: from
	// the last request's first token to the first request's last token.
	DecodeTPS float64 `json:"all_decoding_tokens_per_s"`
}

func newBenchCmd() *cobra.Command {
	var mf modelFlags
	var prompt, gen, reps int
	var levels string
	var asJSON bool
	var cpuProfile, schemaFile string
	cmd := &cobra.Command{
		Use:   "bench --model M.gguf [-p 512] [-n 128] [--concurrency 1,8]",
		Short: "Measure prefill and decode speed beside the memory-bandwidth floor",
		Long: `Measure prefill tokens/s (a -p token prompt), decode tokens/s (-n greedy tokens
of one request; both the median of --reps runs, each with a fresh random prompt, after a
warm-up run of the same shape) and, for each --concurrency level, that many requests of -p random
prompt tokens and -n generated tokens running together: their generated tokens/s
(prompts included in the time), time to first token and inter-token latency
(p50, p99). The decode floor printed beside them is the
speed at which a step would read the model's weights at this machine's measured
large-copy bandwidth (bytes read plus written; a device-to-device copy on a GPU):
weight bytes per token ÷ bandwidth.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var lv []int
			for _, s := range strings.Split(levels, ",") {
				if s = strings.TrimSpace(s); s == "" {
					continue
				}
				n, err := strconv.Atoi(s)
				if err != nil || n < 1 || n > 1024 {
					return fmt.Errorf("bench: --concurrency element %q: want an integer 1 to 1024", s)
				}
				lv = append(lv, n)
			}
			if prompt < 1 || gen < 1 {
				return fmt.Errorf("bench: -p and -n must be ≥ 1 (got %d, %d)", prompt, gen)
			}
			if reps < 1 || reps > 100 {
				return fmt.Errorf("bench: --reps %d: want 1 to 100 measured runs", reps)
			}
			mf.parallel = 1
			for _, n := range lv {
				mf.parallel = max(mf.parallel, n)
			}
			m, err := mf.load("bench", func(o *engine.LoadOptions) { o.Engine.QueueSize = mf.parallel })
			if err != nil {
				return err
			}
			defer m.Close()
			if cpuProfile != "" {
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("bench: --cpuprofile: %w", err)
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return fmt.Errorf("bench: --cpuprofile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			res, err := runBench(m, prompt, gen, reps, lv)
			if err != nil {
				return err
			}
			if schemaFile != "" {
				schema, err := os.ReadFile(schemaFile)
				if err != nil {
					return fmt.Errorf("bench: --json-schema-file: %w", err)
				}
				if res.Constrained, err = benchConstrainedRun(m, schema, prompt, gen); err != nil {
					return fmt.Errorf("bench: --json-schema-file %s: %w", schemaFile, err)
				}
			}
			res.Model = mf.path
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			device := res.Device
			if res.DecodeKernels != "" {
				device += " (decode kernels: " + res.DecodeKernels + ")"
			}
			fmt.Fprintf(out, "model %s on %s: %.1f MB of weights per decode step; memcpy %.2f GB/s → floor %.1f tok/s\n",
				res.Model, device, float64(res.WeightBytes)/1e6, res.MemcpyGBs, res.FloorTPS)
			fmt.Fprintf(out, "prefill  %5d tokens  %9.1f tok/s, first token after %.1f ms (%.1f ms with %d tokens from the prefix cache); median of %d: %s\n",
				res.PromptTokens, res.PrefillTPS, res.TTFTMs, res.CachedPrefixTTFTMs, res.CachedPrefixTokens, res.Reps, runsText(res.PrefillRuns))
			fmt.Fprintf(out, "decode   %5d tokens  %9.1f tok/s  (%.0f%% of the floor); median of %d: %s\n",
				res.GenTokens, res.DecodeTPS, 100*res.DecodeOfFloor, res.Reps, runsText(res.DecodeRuns))
			for _, l := range res.Concurrency {
				fmt.Fprintf(out, "concurrency %3d      %9.1f tok/s total (%.1f while all decode), %.0f ms per request, TTFT p50 %.1f p99 %.1f ms, ITL p50 %.2f p99 %.2f ms\n",
					l.Requests, l.TotalTPS, l.DecodeTPS, l.PerRequestMs, l.TTFTP50Ms, l.TTFTP99Ms, l.ITLP50Ms, l.ITLP99Ms)
			}
			if c := res.Constrained; c != nil {
				fmt.Fprintf(out, "schema   %5d tokens  %9.1f tok/s  (unconstrained %.1f: %.1f%% overhead; first run %.1f tok/s; %s); compile %.2f ms, vocabulary trie %.0f ms\n",
					c.GenTokens, c.DecodeTPS, c.Unconstrain, 100*c.Overhead, c.FirstTPS, c.StopReason, c.CompileMs, c.VocabMs)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	mf.add(fs)
	fs.IntVarP(&prompt, "prompt-tokens", "p", 512, "prompt length for the prefill measurement")
	fs.IntVarP(&gen, "gen-tokens", "n", 128, "tokens to generate per request")
	fs.IntVar(&reps, "reps", 3, "measured runs of the prefill and decode request (the median is reported)")
	fs.StringVar(&levels, "concurrency", "1", "comma-separated numbers of concurrent requests")
	fs.BoolVar(&asJSON, "json", false, "print JSON (format in the README)")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile of the measurements to this file")
	fs.StringVar(&schemaFile, "json-schema-file", "", "also measure decoding constrained to this JSON Schema (greedy, one request)")
	return cmd
}

// runsText is a run's figures for the text output: "812.3 820.1 815.0".
func runsText(runs []float64) string {
	parts := make([]string, len(runs))
	for i, v := range runs {
		parts[i] = strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strings.Join(parts, " ")
}

// median is the middle value of xs (the mean of the two middle ones for an
// even count); xs is not changed.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func runBench(m *engine.Model, prompt, gen, reps int, levels []int) (*benchJSON, error) {
	be := m.Backend()
	res := &benchJSON{Device: be.Name(), PromptTokens: prompt, GenTokens: gen, Reps: reps,
		WeightBytes: m.Model.Weights.DecodeBytes(), MemcpyGBs: memcpyBandwidth()}
	if dk, ok := be.(interface{ DecodeKernels() string }); ok {
		res.DecodeKernels = dk.DecodeKernels()
	}
	if bm, ok := be.(backend.BandwidthMeter); ok {
		rate, err := bm.MeasureBandwidth()
		if err != nil {
			return nil, err
		}
		res.MemcpyGBs = rate / 1e9
	}
	res.FloorTPS = res.MemcpyGBs * 1e9 / float64(res.WeightBytes)
	vocab := m.Model.Config.VocabSize
	rng := rand.New(rand.NewPCG(1, 2))
	ids := func(n int) []int32 {
		out := make([]int32, n)
		for i := range out {
			out[i] = int32(rng.IntN(vocab))
		}
		return out
	}
	ctx := context.Background()
	// Warm up with the measured shape: touches the weights, grows the
	// buffers, and lets the libraries load what this prompt length needs
	// (on a GPU: cuBLAS's kernels, the decode graphs). Every run's prompt is
	// fresh random tokens, so nothing comes from the prefix cache.
	var first []int32
	var ttft []float64
	for rep := range reps + 1 {
		first = ids(prompt)
		r, err := m.Generate(ctx, engine.Request{Prompt: first, Params: sample.GreedyParams(), MaxTokens: gen, IgnoreEOS: true}, nil)
		if err != nil {
			return nil, err
		}
		if rep == 0 {
			continue
		}
		res.PrefillRuns = append(res.PrefillRuns, r.Timings.PromptTPS)
		res.DecodeRuns = append(res.DecodeRuns, r.Timings.GenerateTPS)
		ttft = append(ttft, msOf(r.Timings.Prefill))
	}
	res.PrefillTPS, res.DecodeTPS, res.TTFTMs = median(res.PrefillRuns), median(res.DecodeRuns), median(ttft)
	res.DecodeOfFloor = res.DecodeTPS / res.FloorTPS
	// The cached prompt's turn, --reps times: each time the last prompt
	// plus 16 fresh tokens, so each finds the same prefix in the cache.
	for range reps {
		next := append(slices.Clone(first), ids(16)...)
		if len(next)+1 > m.Options().CtxLen {
			break
		}
		rc, err := m.Generate(ctx, engine.Request{Prompt: next, Params: sample.GreedyParams(), MaxTokens: 1, IgnoreEOS: true}, nil)
		if err != nil {
			return nil, err
		}
		res.CachedPrefixRuns = append(res.CachedPrefixRuns, msOf(rc.Timings.Prefill))
		res.CachedPrefixTokens = rc.CachedTokens
	}
	res.CachedPrefixTTFTMs = median(res.CachedPrefixRuns)
	for _, n := range levels {
		lv, err := benchLevelRun(ctx, m, n, gen, func() []int32 { return ids(prompt) })
		if err != nil {
			return nil, err
		}
		res.Concurrency = append(res.Concurrency, lv)
	}
	return res, nil
}

// benchLevelRun runs n requests together (prompts from prompt(), drawn
// before any starts; gen greedy tokens each) and measures their total
// generated tokens/s, time to first token and inter-token latency.
func benchLevelRun(ctx context.Context, m *engine.Model, n, gen int, prompt func() []int32) (benchLevel, error) {
	prompts := make([][]int32, n)
	for i := range prompts {
		prompts[i] = prompt()
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	durs := make([]time.Duration, n)
	ttft := make([]float64, n)
	gaps := make([][]float64, n)
	stamps := make([][]time.Time, n)
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			t0 := time.Now()
			last := t0
			first := true
			gaps[i] = make([]float64, 0, gen)
			_, errs[i] = m.Generate(ctx, engine.Request{Prompt: prompts[i], Params: sample.GreedyParams(), MaxTokens: gen, IgnoreEOS: true},
				func(engine.Token) error {
					now := time.Now()
					stamps[i] = append(stamps[i], now)
					if first {
						ttft[i] = ms(now.Sub(t0))
						first = false
					} else {
						gaps[i] = append(gaps[i], ms(now.Sub(last)))
					}
					last = now
					return nil
				})
			durs[i] = time.Since(t0)
		})
	}
	wg.Wait()
	wall := time.Since(start)
	var sum time.Duration
	var itl []float64
	for i := range n {
		if errs[i] != nil {
			return benchLevel{}, errs[i]
		}
		sum += durs[i]
		itl = append(itl, gaps[i]...)
	}
	// The window in which all n requests were decoding.
	var from, to time.Time
	for i := range n {
		if len(stamps[i]) == 0 {
			continue
		}
		if f := stamps[i][0]; f.After(from) {
			from = f
		}
		if l := stamps[i][len(stamps[i])-1]; to.IsZero() || l.Before(to) {
			to = l
		}
	}
	var decodeTPS float64
	if to.After(from) {
		count := 0
		for i := range n {
			for _, ts := range stamps[i] {
				if ts.After(from) && !ts.After(to) {
					count++
				}
			}
		}
		decodeTPS = float64(count) / to.Sub(from).Seconds()
	}
	return benchLevel{Requests: n, TotalTPS: float64(n*gen) / wall.Seconds(), DecodeTPS: decodeTPS,
		PerRequestMs: float64(sum.Milliseconds()) / float64(n),
		TTFTP50Ms:    percentile(ttft, 50), TTFTP99Ms: percentile(ttft, 99),
		ITLP50Ms: percentile(itl, 50), ITLP99Ms: percentile(itl, 99)}, nil
}

// percentile is the nearest-rank p-th percentile of xs (0 when empty); it
// sorts xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	k := int(math.Ceil(p/100*float64(len(xs)))) - 1
	return xs[min(max(k, 0), len(xs)-1)]
}

// memcpyBandwidth measures a large host copy (256 MiB, best of 5) in GB/s,
// counting bytes read plus bytes written, as the GPU measurement does.
func memcpyBandwidth() float64 {
	const size = 256 << 20
	src := make([]byte, size)
	dst := make([]byte, size)
	for i := range src {
		src[i] = byte(i)
	}
	best := time.Duration(1 << 62)
	for range 5 {
		t0 := time.Now()
		copy(dst, src)
		best = min(best, time.Since(t0))
	}
	return 2 * float64(size) / best.Seconds() / 1e9
}

// benchConstrainedRun decodes one greedy request of -p random prompt tokens
// under the schema, and the same request without it for as many tokens,
// and compares their decode speeds.
func benchConstrainedRun(m *engine.Model, schema []byte, prompt, gen int) (*benchConstrained, error) {
	c := &benchConstrained{}
	t0 := time.Now()
	if _, err := m.Grammar(engine.GrammarJSONObject, ""); err != nil { // builds the vocabulary's trie
		return nil, err
	}
	c.VocabMs = float64(time.Since(t0).Microseconds()) / 1e3
	t0 = time.Now()
	a, err := m.Grammar(engine.GrammarJSONSchema, string(schema))
	if err != nil {
		return nil, err
	}
	c.CompileMs = float64(time.Since(t0).Microseconds()) / 1e3
	vocab := m.Model.Config.VocabSize
	rng := rand.New(rand.NewPCG(3, 4))
	ids := make([]int32, prompt)
	for i := range ids {
		ids[i] = int32(rng.IntN(vocab))
	}
	ctx := context.Background()
	req := engine.Request{Prompt: ids, Params: sample.GreedyParams(), MaxTokens: gen, Grammar: a}
	r, err := m.Generate(ctx, req, nil)
	if err != nil {
		return nil, err
	}
	c.FirstTPS = r.Timings.GenerateTPS
	// Again: the masks of the states seen are cached now, as they are for
	// a schema the server has seen before.
	if r, err = m.Generate(ctx, req, nil); err != nil {
		return nil, err
	}
	c.GenTokens, c.DecodeTPS, c.StopReason = len(r.IDs), r.Timings.GenerateTPS, string(r.StopReason)
	req.Grammar, req.MaxTokens, req.IgnoreEOS = nil, max(len(r.IDs), 2), true
	u, err := m.Generate(ctx, req, nil)
	if err != nil {
		return nil, err
	}
	c.Unconstrain = u.Timings.GenerateTPS
	if c.Unconstrain > 0 {
		c.Overhead = 1 - c.DecodeTPS/c.Unconstrain
	}
	return c, nil
}

// msOf is d in milliseconds, to 0.001.
func msOf(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }
