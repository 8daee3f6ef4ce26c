package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, c := range []struct{ p, want float64 }{{50, 5}, {99, 10}, {10, 1}, {0, 1}, {100, 10}} {
		if got := percentile(slices.Clone(xs), c.p); got != c.want {
			t.Errorf("percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}

// TestBenchConcurrencyJSON runs bench on the CPU with a micro model: each
// concurrency level reports tokens/s, TTFT and inter-token latency.
func TestBenchConcurrencyJSON(t *testing.T) {
	path := writeSpec(t, "llama-micro", nil, nil)
	code, out, errOut := runCLI("bench", "--model", path, "--device", "cpu", "-p", "12", "-n", "5", "--concurrency", "1,3", "--reps", "2", "--json")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, errOut)
	}
	var res benchJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, out)
	}
	if res.Reps != 2 || len(res.PrefillRuns) != 2 || len(res.DecodeRuns) != 2 ||
		res.PrefillTPS != median(res.PrefillRuns) || res.DecodeTPS != median(res.DecodeRuns) || res.PrefillTPS <= 0 || res.DecodeTPS <= 0 {
		t.Errorf("reps %d: prefill %v of %v, decode %v of %v (want 2 runs each and their medians)",
			res.Reps, res.PrefillTPS, res.PrefillRuns, res.DecodeTPS, res.DecodeRuns)
	}
	if len(res.Concurrency) != 2 || res.Concurrency[1].Requests != 3 {
		t.Fatalf("concurrency levels %+v, want 1 and 3", res.Concurrency)
	}
	if len(res.CachedPrefixRuns) != 2 || res.CachedPrefixTTFTMs != median(res.CachedPrefixRuns) {
		t.Errorf("cached-prefix runs %v, median %v (want 2 runs and their median)", res.CachedPrefixRuns, res.CachedPrefixTTFTMs)
	}
	if res.TTFTMs <= 0 || res.CachedPrefixTokens != 12 || res.CachedPrefixTTFTMs <= 0 {
		t.Errorf("prefix cache figures: ttft %v ms, cached-prefix ttft %v ms with %d cached tokens (want the 12-token prompt cached)",
			res.TTFTMs, res.CachedPrefixTTFTMs, res.CachedPrefixTokens)
	}
	for _, l := range res.Concurrency {
		// Inter-token gaps can round to 0 ms on a micro model (tokens of one
		// step reach the client together), so only their order is checked.
		if l.TotalTPS <= 0 || l.DecodeTPS < 0 || l.TTFTP50Ms <= 0 || l.TTFTP99Ms < l.TTFTP50Ms || l.ITLP50Ms < 0 || l.ITLP99Ms < l.ITLP50Ms {
			t.Errorf("level %d: implausible figures %+v", l.Requests, l)
		}
	}
}

// TestMedian: the middle value, or the mean of the two middle ones, of an
// unsorted slice left as it was.
func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{nil, 0}, {[]float64{5}, 5}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{9, 9, 1}, 9}} {
		in := slices.Clone(c.xs)
		if got := median(c.xs); got != c.want || !slices.Equal(in, c.xs) {
			t.Errorf("median(%v) = %v (input now %v), want %v", in, got, c.xs, c.want)
		}
	}
}

// TestBenchRepsRange: --reps outside 1 … 100 is refused before loading.
func TestBenchRepsRange(t *testing.T) {
	for _, r := range []string{"0", "101", "-1"} {
		code, _, errOut := runCLI("bench", "--model", "nope.gguf", "--reps", r)
		if code == 0 || !strings.Contains(errOut, "--reps") {
			t.Errorf("--reps %s: exit %d, stderr %q (want a refusal naming --reps)", r, code, errOut)
		}
	}
}
