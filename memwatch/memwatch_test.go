package memwatch

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const mb = 1 << 20

func TestRule(t *testing.T) {
	cfg := Config{Name: "rss", WarmUp: 3, Threshold: 100 * mb, Rising: 3}
	tests := []struct {
		name    string
		cfg     *Config
		samples []int64 // in MiB
		healthy []bool  // after each sample; nil: all true
		reason  string  // in the final reason
	}{
		{name: "flat", samples: []int64{500, 510, 505, 505, 506, 504, 505, 507}},
		{name: "warm-up spike is the baseline", samples: []int64{100, 900, 400, 800, 850, 880, 899}},
		{name: "growth below threshold", samples: []int64{500, 500, 500, 520, 540, 560, 580, 600}},
		{name: "leak", samples: []int64{500, 500, 500, 550, 600, 650, 700, 750},
			healthy: []bool{true, true, true, true, true, false, false, false},
			reason:  "rss grew to 750.0 MiB, 250.0 MiB above the post-warm-up baseline of 500.0 MiB (threshold 100.0 MiB), and rose over the last 3 samples"},
		{name: "jump then flat is not rising", samples: []int64{500, 500, 500, 800, 800, 800, 800}},
		{name: "sawtooth above threshold", samples: []int64{500, 500, 500, 700, 650, 700, 650, 700}},
		{name: "steps with flat samples count as rising", samples: []int64{500, 500, 500, 600, 600, 700, 700},
			healthy: []bool{true, true, true, true, true, false, false}},
		{name: "plateau after a leak stays unhealthy", samples: []int64{500, 500, 500, 550, 600, 650, 700, 700, 700, 690},
			healthy: []bool{true, true, true, true, true, false, false, false, false, false}},
		{name: "recovers when back under the threshold", samples: []int64{500, 500, 500, 550, 600, 650, 700, 560, 600},
			healthy: []bool{true, true, true, true, true, false, false, true, true}},
		{name: "limit", cfg: &Config{Name: "vram", WarmUp: 3, Threshold: 100 * mb, Rising: 3, Limit: 1000 * mb},
			samples: []int64{500, 1200, 900, 950},
			healthy: []bool{true, false, true, true}, reason: ""},
		{name: "negative samples are ignored", samples: []int64{500, -1, 500, 500, -1, -1, 510}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if tc.cfg != nil {
				c = *tc.cfg
			}
			var logs bytes.Buffer
			c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			w := New(nil, c)
			for i, s := range tc.samples {
				if s > 0 {
					s *= mb
				}
				w.Observe(s)
				want := true
				if tc.healthy != nil {
					want = tc.healthy[i]
				}
				if got := w.Healthy(); got != want {
					t.Fatalf("after sample %d (%d MiB): healthy %v, want %v; status %+v", i, tc.samples[i], got, want, w.Status())
				}
			}
			st := w.Status()
			if tc.reason != "" && st.Reason != tc.reason {
				t.Errorf("reason %q\nwant   %q", st.Reason, tc.reason)
			}
			if st.Healthy != (st.Reason == "") {
				t.Errorf("healthy %v with reason %q", st.Healthy, st.Reason)
			}
			wentBad := false
			for _, h := range tc.healthy {
				wentBad = wentBad || !h
			}
			if got := strings.Count(logs.String(), "level=WARN"); wentBad && got != 1 {
				t.Errorf("%d warnings logged, want exactly 1:\n%s", got, logs.String())
			} else if !wentBad && got != 0 {
				t.Errorf("warning logged for healthy samples:\n%s", logs.String())
			}
		})
	}
}

func TestStatusFields(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w := New(nil, Config{WarmUp: 2, Threshold: 10, Rising: 2, Now: func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))})
	for _, v := range []int64{100, 90, 105, 120, 130} {
		w.Observe(v)
	}
	st := w.Status()
	want := Status{Name: "memory", Healthy: false, WarmedUp: true, Baseline: 100, Current: 130, Peak: 130, Samples: 5, Since: now}
	st.Reason = ""
	if st != want {
		t.Errorf("status %+v\nwant   %+v", st, want)
	}
}

// TestRun drives Run with a fake ticker and a callback whose figure grows.
func TestRun(t *testing.T) {
	ticks := make(chan time.Time)
	var v atomic.Int64
	v.Store(500 * mb)
	var stopped atomic.Bool
	w := New(func() int64 { return v.Load() }, Config{WarmUp: 2, Threshold: 50 * mb, Rising: 2, Interval: time.Hour,
		Logger:    slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)),
		NewTicker: func(time.Duration) (<-chan time.Time, func()) { return ticks, func() { stopped.Store(true) } }})
	stop := w.Start(context.Background())
	tick := func(mib int64) {
		v.Store(mib * mb)
		ticks <- time.Time{} // unbuffered: returns once Run has taken it
	}
	tick(500) // sample 2 (Run samples once at start)
	for _, m := range []int64{530, 560, 590} {
		tick(m)
	}
	ticks <- time.Time{} // the previous sample is done once this one is taken
	stop()
	if !stopped.Load() {
		t.Error("ticker not stopped")
	}
	st := w.Status()
	if st.Samples != 6 || st.Healthy {
		t.Errorf("status %+v, want 6 samples and unhealthy", st)
	}
}

func TestParseStatm(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"12345 678 90 1 0 2 0\n", 678 * 4096},
		{"1", -1},
		{"", -1},
		{"1 x 3", -1},
	}
	for _, tc := range tests {
		if got := parseStatm(tc.in, 4096); got != tc.want {
			t.Errorf("parseStatm(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
	if r := RSS(); r == 0 || r < -1 {
		t.Errorf("RSS() = %d", r)
	}
}
