package cpu

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/internal/testmodel"
	"worker-orcd/model"
)

// Independent evidence for the decoder, in a plain clone: the goldens in
// testdata/*-golden.json were computed by scripts/ref_forward.py, a
// pure-Python float64 forward pass with its own GGUF reader, written from
// the math and not from this code. They cover both RoPE pairings (llama:
// interleaved; qwen2 with q/k/v biases and a tied head, phi3 with fused
// tensors: NeoX halves) and Phi-3's sliding window. The models are
// regenerated here from their specs (F32 weights, seed 7); the goldens record
// the sha256 of the file they were computed on, so a change of the
// generator is told apart from a change of the forward pass.
//
// Regenerate the goldens (from the repository root; python3, standard
// library only) with:
//
//	IDS=1,5,9,200,33,7,100,250,3,64,128,17,42,99,180,11,77,150,23,61
//	D=$(mktemp -d); T=backend/cpu/testdata
//	for s in llama-micro qwen2-micro; do
//	  go run ./internal/testmodel/cmd/synth --shape $s --type F32 --seed 7 --vocab builtin -o $D/$s.gguf
//	  python3 scripts/ref_forward.py --model $D/$s.gguf --ids $IDS > $T/$s-golden.json
//	done
//	go run ./internal/testmodel/cmd/synth --shape phi3-micro --type F32 --seed 7 --vocab builtin --sliding-window 8 -o $D/phi3-micro-swa8.gguf
//	python3 scripts/ref_forward.py --model $D/phi3-micro-swa8.gguf --ids $IDS > $T/phi3-micro-swa8-golden.json
//	python3 scripts/ref_forward.py --model $D/phi3-micro-swa8.gguf --ids $IDS --no-sliding-window > $T/phi3-micro-swa8-nowindow-golden.json

// pyRefTol bounds |Δ| between the CPU backend (float32 activations, F32
// weights: no activation quantization) and the float64 reference, for
// logprobs and for the log-sum-exp, mean and rms of the logit rows. Observed
// worst: about 1e-6.
const pyRefTol = 1e-4

// pyRefNearTie: two ids whose logprobs differ by less than this may swap
// ranks between the two implementations.
const pyRefNearTie = 1e-3

type pyRefLogprob struct {
	ID      int32   `json:"id"`
	Logprob float64 `json:"logprob"`
}

// pyRefGolden is the JSON scripts/ref_forward.py prints.
type pyRefGolden struct {
	Model         string  `json:"model"`
	ModelBytes    int     `json:"model_bytes"`
	ModelSHA256   string  `json:"model_sha256"`
	Arch          string  `json:"arch"`
	Rope          string  `json:"rope"`
	SlidingWindow int     `json:"sliding_window"`
	VocabSize     int     `json:"vocab_size"`
	IDs           []int32 `json:"ids"`
	Positions     []struct {
		I     int            `json:"i"`
		Top   []pyRefLogprob `json:"top"`
		LSE   float64        `json:"lse"`
		Mean  float64        `json:"mean"`
		RMS   float64        `json:"rms"`
		Probe []pyRefLogprob `json:"probe"`
	} `json:"positions"`
}

// pyRefCase is one golden: the spec it was computed on and whether the
// reference ignored the sliding window.
type pyRefCase struct {
	golden   string
	preset   string
	window   int  // written as <arch>.attention.sliding_window (0: none)
	noWindow bool // run with the window removed (the reference's --no-sliding-window)
}

var pyRefCases = []pyRefCase{
	{golden: "llama-micro-golden.json", preset: "llama-micro"},
	{golden: "qwen2-micro-golden.json", preset: "qwen2-micro"},
	{golden: "phi3-micro-swa8-golden.json", preset: "phi3-micro", window: 8},
	{golden: "phi3-micro-swa8-nowindow-golden.json", preset: "phi3-micro", window: 8, noWindow: true},
}

func readPyRefGolden(t *testing.T, name string) *pyRefGolden {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var g pyRefGolden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(g.IDs) == 0 || len(g.Positions) != len(g.IDs) {
		t.Fatalf("%s: %d ids, %d positions", name, len(g.IDs), len(g.Positions))
	}
	return &g
}

// openPyRefModel writes the case's model (F32, seed 7) and opens it,
// failing when its bytes are not those the golden was computed on.
func openPyRefModel(t *testing.T, c pyRefCase, g *pyRefGolden) *model.Model {
	t.Helper()
	spec := testmodel.MustPreset(c.preset)
	spec.Type, spec.Seed, spec.SlidingWindow = testmodel.F32, 7, c.window
	data, err := spec.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != g.ModelSHA256 || len(data) != g.ModelBytes {
		t.Fatalf("%s: the synthetic model is %d bytes, sha256 %s; the golden was computed on %d bytes, sha256 %s: "+
			"internal/testmodel's output changed; regenerate the goldens (commands in pyref_test.go)",
			c.preset, len(data), got, g.ModelBytes, g.ModelSHA256)
	}
	path := filepath.Join(t.TempDir(), c.preset+".gguf")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := model.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if c.noWindow {
		m.Config.SlidingWindow = 0
	}
	return m
}

// pyRefLogits runs ids through the CPU backend and returns every position's
// logits. prefill > 0 feeds the first prefill ids as one batch and the rest
// one at a time through the KV cache (the decode path); 0 feeds all at once.
func pyRefLogits(t *testing.T, m *model.Model, ids []int32, prefill int) []float32 {
	t.Helper()
	b := New(m, 0)
	defer b.Close()
	kv := NewKVCache(&m.Config, len(ids))
	var out []float32
	for lo := 0; lo < len(ids); {
		hi := len(ids)
		if prefill > 0 {
			hi = lo + 1
			if lo == 0 {
				hi = prefill
			}
		}
		s := &backend.Seq{Tokens: ids[lo:hi], KV: kv, AllLogits: true, Prefill: lo == 0}
		if err := b.Forward([]*backend.Seq{s}); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.Logits...)
		lo = hi
	}
	return out
}

// comparePyRef checks every position's logits against the golden and
// returns the worst |Δ|. It reports the first few positions that differ
// (their worst quantity each) and how many there are in all.
func comparePyRef(t *testing.T, g *pyRefGolden, logits []float32) float64 {
	t.Helper()
	const shown = 4
	V := g.VocabSize
	worst, bad := 0.0, 0
	for _, p := range g.Positions {
		row := logits[p.I*V : (p.I+1)*V]
		lp := logSoftmax(row)
		var sum, sq float64
		for _, v := range row {
			sum += float64(v)
			sq += float64(v) * float64(v)
		}
		posWorst, what, got, want := 0.0, "", 0.0, 0.0
		check := func(name string, g, w float64) {
			d := math.Abs(g - w)
			if math.IsNaN(d) {
				d = math.Inf(1)
			}
			if d > posWorst || what == "" {
				posWorst, what, got, want = d, name, g, w
			}
		}
		check("lse", float64(row[0])-lp[0], p.LSE)
		check("mean logit", sum/float64(V), p.Mean)
		check("rms logit", math.Sqrt(sq/float64(V)), p.RMS)
		for _, c := range p.Top {
			check("logprob of top id "+strconv.Itoa(int(c.ID)), lp[c.ID], c.Logprob)
		}
		for _, c := range p.Probe {
			check("logprob of probe id "+strconv.Itoa(int(c.ID)), lp[c.ID], c.Logprob)
		}
		// The CPU's own ranking: the same ids in the same order, except
		// where two ids are near-tied.
		order := make([]int, V)
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int {
			switch {
			case lp[a] > lp[b]:
				return -1
			case lp[a] < lp[b]:
				return 1
			}
			return 0
		})
		rank := ""
		for j, c := range p.Top {
			if mine := order[j]; mine != int(c.ID) && math.Abs(lp[mine]-lp[c.ID]) >= pyRefNearTie {
				rank = fmt.Sprintf("; rank %d is id %d (logprob %.5f), reference id %d (%.5f)", j, mine, lp[mine], c.ID, lp[c.ID])
				break
			}
		}
		worst = math.Max(worst, posWorst)
		if posWorst > pyRefTol || rank != "" {
			bad++
			if bad <= shown {
				t.Errorf("position %d: %s %.7f, reference %.7f (|Δ| %.2g, tolerance %g)%s", p.I, what, got, want, posWorst, pyRefTol, rank)
			}
		}
	}
	if bad > shown {
		t.Errorf("... %d of %d positions differ in all (worst |Δ| %.2g)", bad, len(g.Positions), worst)
	}
	return worst
}

// TestPyReference compares the CPU backend with the float64 Python
// reference on every golden, through one batch and through the decode path.
func TestPyReference(t *testing.T) {
	for _, c := range pyRefCases {
		t.Run(c.golden, func(t *testing.T) {
			g := readPyRefGolden(t, c.golden)
			m := openPyRefModel(t, c, g)
			if g.Arch != m.Config.Arch.Name || g.Rope != m.Config.Arch.Rope.String() ||
				g.SlidingWindow != m.Config.SlidingWindow || g.VocabSize != m.Config.VocabSize {
				t.Errorf("reference ran %s with rope %s, window %d, vocab %d; the worker's table says %s with rope %s, window %d, vocab %d",
					g.Arch, g.Rope, g.SlidingWindow, g.VocabSize,
					m.Config.Arch.Name, m.Config.Arch.Rope, m.Config.SlidingWindow, m.Config.VocabSize)
			}
			for _, prefill := range []int{0, 5} {
				worst := comparePyRef(t, g, pyRefLogits(t, m, g.IDs, prefill))
				t.Logf("prefill %d: worst |Δ| %.2g", prefill, worst)
			}
		})
	}
}

// TestPhi3SlidingWindowHasEffect: with phi3.attention.sliding_window = 8,
// positions 0..7 see every earlier key and give the same logits as without
// the window; from position 8 on the oldest keys drop out and every
// position's logits change. The reference agrees with the CPU both ways
// (TestPyReference); here the CPU's two runs are compared with each other,
// and the reference's two goldens likewise.
func TestPhi3SlidingWindowHasEffect(t *testing.T) {
	const W = 8
	gw := readPyRefGolden(t, "phi3-micro-swa8-golden.json")
	gn := readPyRefGolden(t, "phi3-micro-swa8-nowindow-golden.json")
	if gw.SlidingWindow != W || gn.SlidingWindow != 0 || len(gw.IDs) <= W+4 {
		t.Fatalf("goldens: window %d and %d over %d ids, want %d and 0 over more than %d", gw.SlidingWindow, gn.SlidingWindow, len(gw.IDs), W, W+4)
	}
	mw := openPyRefModel(t, pyRefCases[2], gw)
	if mw.Config.SlidingWindow != W {
		t.Fatalf("model's sliding window %d, want %d (phi3.attention.sliding_window not read?)", mw.Config.SlidingWindow, W)
	}
	with := pyRefLogits(t, mw, gw.IDs, 0)
	mw.Config.SlidingWindow = 0
	without := pyRefLogits(t, mw, gw.IDs, 0)
	mw.Config.SlidingWindow = W

	V := mw.Config.VocabSize
	for p := range gw.IDs {
		a, b := logSoftmax(with[p*V:(p+1)*V]), logSoftmax(without[p*V:(p+1)*V])
		diff := 0.0
		for i := range a {
			diff = math.Max(diff, math.Abs(a[i]-b[i]))
		}
		// The reference with and without the window: its row summaries.
		pw, pn := gw.Positions[p], gn.Positions[p]
		ref := math.Max(math.Abs(pw.LSE-pn.LSE), math.Max(math.Abs(pw.Mean-pn.Mean), math.Abs(pw.RMS-pn.RMS)))
		for k := range pw.Probe {
			ref = math.Max(ref, math.Abs(pw.Probe[k].Logprob-pn.Probe[k].Logprob))
		}
		switch {
		case p < W && diff != 0:
			t.Errorf("position %d (inside the window): logits change by %.3g when the window is removed", p, diff)
		case p < W && ref != 0:
			t.Errorf("position %d (inside the window): the reference's row changes by %.3g without the window", p, ref)
		case p >= W && diff < 1e-3:
			t.Errorf("position %d (beyond the window): logits change by only %.3g when the window is removed", p, diff)
		case p >= W && ref < 1e-4:
			t.Errorf("position %d (beyond the window): the reference's row changes by only %.3g without the window", p, ref)
		}
		if p >= W-1 && p <= W+1 || p == len(gw.IDs)-1 {
			t.Logf("position %d: max |Δlogprob| with vs without the window: CPU %.4f; reference (lse, mean, rms, probe logprobs) %.4f", p, diff, ref)
		}
	}
}
