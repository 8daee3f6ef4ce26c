package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
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
	Model         string       `json:"model"`
	Device        string       `json:"device"`
	WeightBytes   int64        `json:"weight_bytes_per_token"` // bytes of weights one decode step reads
	MemcpyGBs     float64      `json:"memcpy_gb_per_s"`
	FloorTPS      float64      `json:"decode_floor_tokens_per_s"` // memcpy bandwidth / weight bytes
	PromptTokens  int          `json:"prompt_tokens"`
	PrefillTPS    float64      `json:"prefill_tokens_per_s"`
	GenTokens     int          `json:"generated_tokens"`
	DecodeTPS     float64      `json:"decode_tokens_per_s"`
	DecodeOfFloor float64      `json:"decode_fraction_of_floor"`
	Concurrency   []benchLevel `json:"concurrency"`
}

type benchLevel struct {
	Requests     int     `json:"requests"`
	TotalTPS     float64 `json:"generated_tokens_per_s"` // all requests together
	PerRequestMs float64 `json:"mean_request_ms"`
}

func newBenchCmd() *cobra.Command {
	var mf modelFlags
	var prompt, gen int
	var levels string
	var asJSON bool
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "bench --model M.gguf [-p 512] [-n 128] [--concurrency 1,8]",
		Short: "Measure prefill and decode speed beside the memory-bandwidth floor",
		Long: `Measure prefill tokens/s (a -p token prompt), decode tokens/s (-n greedy tokens
of one request) and, for each --concurrency level, the generated tokens/s of that
many requests running together. The decode floor printed beside them is the
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
			res, err := runBench(m, prompt, gen, lv)
			if err != nil {
				return err
			}
			res.Model = mf.path
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			fmt.Fprintf(out, "model %s on %s: %.1f MB of weights per decode step; memcpy %.2f GB/s → floor %.1f tok/s\n",
				res.Model, res.Device, float64(res.WeightBytes)/1e6, res.MemcpyGBs, res.FloorTPS)
			fmt.Fprintf(out, "prefill  %5d tokens  %9.1f tok/s\n", res.PromptTokens, res.PrefillTPS)
			fmt.Fprintf(out, "decode   %5d tokens  %9.1f tok/s  (%.0f%% of the floor)\n", res.GenTokens, res.DecodeTPS, 100*res.DecodeOfFloor)
			for _, l := range res.Concurrency {
				fmt.Fprintf(out, "concurrency %3d      %9.1f tok/s total, %.0f ms per request\n", l.Requests, l.TotalTPS, l.PerRequestMs)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	mf.add(fs)
	fs.IntVarP(&prompt, "prompt-tokens", "p", 512, "prompt length for the prefill measurement")
	fs.IntVarP(&gen, "gen-tokens", "n", 128, "tokens to generate per request")
	fs.StringVar(&levels, "concurrency", "1", "comma-separated numbers of concurrent requests")
	fs.BoolVar(&asJSON, "json", false, "print JSON (format in the README)")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile of the measurements to this file")
	return cmd
}

func runBench(m *engine.Model, prompt, gen int, levels []int) (*benchJSON, error) {
	be := m.Backend()
	res := &benchJSON{Device: be.Name(), PromptTokens: prompt, GenTokens: gen,
		WeightBytes: m.Model.Weights.DecodeBytes(), MemcpyGBs: memcpyBandwidth()}
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
	// Warm up: touches the weights and grows the buffers.
	if _, err := m.Generate(ctx, engine.Request{Prompt: ids(8), Params: sample.GreedyParams(), MaxTokens: 2, IgnoreEOS: true}, nil); err != nil {
		return nil, err
	}
	r, err := m.Generate(ctx, engine.Request{Prompt: ids(prompt), Params: sample.GreedyParams(), MaxTokens: gen, IgnoreEOS: true}, nil)
	if err != nil {
		return nil, err
	}
	res.PrefillTPS = r.Timings.PromptTPS
	res.DecodeTPS = r.Timings.GenerateTPS
	res.DecodeOfFloor = res.DecodeTPS / res.FloorTPS
	for _, n := range levels {
		var wg sync.WaitGroup
		errs := make([]error, n)
		durs := make([]time.Duration, n)
		start := time.Now()
		for i := range n {
			p := ids(16)
			wg.Go(func() {
				t0 := time.Now()
				_, errs[i] = m.Generate(ctx, engine.Request{Prompt: p, Params: sample.GreedyParams(), MaxTokens: gen, IgnoreEOS: true}, nil)
				durs[i] = time.Since(t0)
			})
		}
		wg.Wait()
		wall := time.Since(start)
		var sum time.Duration
		for i := range n {
			if errs[i] != nil {
				return nil, errs[i]
			}
			sum += durs[i]
		}
		res.Concurrency = append(res.Concurrency, benchLevel{Requests: n, TotalTPS: float64(n*gen) / wall.Seconds(),
			PerRequestMs: float64(sum.Milliseconds()) / float64(n)})
	}
	return res, nil
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
