// Package memwatch is the worker's memory self-check: it samples a memory
// figure (the process's resident set, or the bytes a backend holds in VRAM)
// at a fixed interval and decides whether usage is growing without bound.
//
// The rule: the first WarmUp samples are the warm-up (model upload, first
// requests, caches filling); the largest of them is the baseline. After it,
// the watcher turns unhealthy when both
//
//   - the latest sample is more than Threshold bytes above the baseline, and
//   - usage is still rising: none of the last Rising steps (between the last
//     Rising+1 samples) decreases and at least half of them increase — a leak,
//     not one jump to a new plateau;
//
// or when a sample exceeds Limit (when set). It logs one slog warning when it
// turns unhealthy and one info line when it recovers, which it does once a
// sample is back at or below baseline + Threshold (and under Limit). A plateau
// above the threshold after growth stays unhealthy: memory that grew and never
// came back is what a leak looks like from outside.
//
// Healthy and Status are safe for concurrent use, so an HTTP /health handler
// can read them while Run samples.
package memwatch

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults for the zero fields of Config.
const (
	DefaultInterval  = 30 * time.Second
	DefaultWarmUp    = 4
	DefaultThreshold = 512 << 20 // bytes above the baseline
	DefaultRising    = 5
)

// Config sets the rule. Zero fields take the defaults above.
type Config struct {
	Name      string        // what is measured, for logs and Status ("rss", "vram"); default "memory"
	Interval  time.Duration // time between samples
	WarmUp    int           // samples before the baseline is fixed
	Threshold int64         // growth above the baseline that, while rising, is unhealthy
	Rising    int           // consecutive non-decreasing steps that count as "still rising"
	Limit     int64         // absolute bytes that are always unhealthy (0 = none)
	Logger    *slog.Logger  // nil: slog.Default()

	// Now and NewTicker replace the clock in tests; nil: the time package.
	Now       func() time.Time
	NewTicker func(d time.Duration) (ticks <-chan time.Time, stop func())
}

func (c *Config) fill() {
	if c.Name == "" {
		c.Name = "memory"
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.WarmUp <= 0 {
		c.WarmUp = DefaultWarmUp
	}
	if c.Threshold <= 0 {
		c.Threshold = DefaultThreshold
	}
	if c.Rising <= 0 {
		c.Rising = DefaultRising
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.NewTicker == nil {
		c.NewTicker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
}

// Status is a snapshot for /health and /metrics. JSON names are stable.
type Status struct {
	Name     string    `json:"name"`
	Healthy  bool      `json:"healthy"`
	Reason   string    `json:"reason,omitempty"` // why unhealthy; "" when healthy
	WarmedUp bool      `json:"warmed_up"`
	Baseline int64     `json:"baseline_bytes"` // the largest sample so far during warm-up, then fixed
	Current  int64     `json:"current_bytes"`
	Peak     int64     `json:"peak_bytes"`
	Samples  int       `json:"samples"`
	Since    time.Time `json:"since,omitzero"` // when the state last changed (zero: never)
}

// Watcher applies the rule to a stream of samples.
type Watcher struct {
	cfg  Config
	read func() int64

	mu     sync.Mutex
	st     Status
	recent []int64 // the last Rising+1 samples, oldest first
}

// New returns a watcher that reads samples with read (for example RSS, or a
// backend's Memory().Total). It samples only when Sample or Run is called.
func New(read func() int64, cfg Config) *Watcher {
	cfg.fill()
	return &Watcher{cfg: cfg, read: read, st: Status{Name: cfg.Name, Healthy: true}}
}

// Sample reads one figure and applies the rule.
func (w *Watcher) Sample() { w.Observe(w.read()) }

// Observe applies the rule to one figure (Sample without the callback).
// A negative figure (the reading failed) is ignored.
func (w *Watcher) Observe(v int64) {
	if v < 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	st := &w.st
	st.Samples++
	st.Current = v
	st.Peak = max(st.Peak, v)
	w.recent = append(w.recent, v)
	if len(w.recent) > w.cfg.Rising+1 {
		w.recent = w.recent[len(w.recent)-w.cfg.Rising-1:]
	}
	if !st.WarmedUp {
		st.Baseline = max(st.Baseline, v)
		if st.Samples >= w.cfg.WarmUp {
			st.WarmedUp = true
			w.cfg.Logger.Info("memwatch: baseline set", "name", w.cfg.Name, "baseline_bytes", st.Baseline, "samples", st.Samples)
		}
		if st.Healthy && (w.cfg.Limit <= 0 || v <= w.cfg.Limit) {
			return
		}
	}

	reason := ""
	over := v - st.Baseline
	switch {
	case w.cfg.Limit > 0 && v > w.cfg.Limit:
		reason = fmt.Sprintf("%s is %s, above the limit of %s", w.cfg.Name, mib(v), mib(w.cfg.Limit))
	case st.WarmedUp && over > w.cfg.Threshold && w.rising():
		reason = fmt.Sprintf("%s grew to %s, %s above the post-warm-up baseline of %s (threshold %s), and rose over the last %d samples",
			w.cfg.Name, mib(v), mib(over), mib(st.Baseline), mib(w.cfg.Threshold), w.cfg.Rising)
	case !st.Healthy && over > w.cfg.Threshold:
		// Still above the threshold after growth: stay unhealthy, keep the reason.
		reason = st.Reason
	}
	switch {
	case reason != "" && st.Healthy:
		st.Healthy, st.Reason, st.Since = false, reason, w.cfg.Now()
		w.cfg.Logger.Warn("memwatch: memory is growing without bound; /health reports unhealthy",
			"name", w.cfg.Name, "current_bytes", v, "baseline_bytes", st.Baseline, "reason", reason)
	case reason != "":
		st.Reason = reason
	case !st.Healthy:
		st.Healthy, st.Reason, st.Since = true, "", w.cfg.Now()
		w.cfg.Logger.Info("memwatch: memory back within the threshold; healthy", "name", w.cfg.Name,
			"current_bytes", v, "baseline_bytes", st.Baseline)
	}
}

// rising reports whether the last Rising steps never decrease and at least
// half of them increase: a leak, rather than one jump to a new plateau. The
// window must be full.
func (w *Watcher) rising() bool {
	r := w.recent
	if len(r) < w.cfg.Rising+1 {
		return false
	}
	up := 0
	for i := 1; i < len(r); i++ {
		switch {
		case r[i] < r[i-1]:
			return false
		case r[i] > r[i-1]:
			up++
		}
	}
	return 2*up >= w.cfg.Rising
}

// Healthy reports whether memory is within the rule.
func (w *Watcher) Healthy() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st.Healthy
}

// Status returns a snapshot.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st
}

// Run samples once now and then at every interval until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	ticks, stop := w.cfg.NewTicker(w.cfg.Interval)
	defer stop()
	w.Sample()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			w.Sample()
		}
	}
}

// Start runs the watcher in a goroutine; call the returned function to stop
// it (it waits for the goroutine to end).
func (w *Watcher) Start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// RSS returns the resident set size of this process in bytes, from
// /proc/self/statm; -1 where that cannot be read (not Linux), which the
// watcher ignores.
func RSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	return parseStatm(string(b), int64(os.Getpagesize()))
}

// parseStatm reads the second field (resident pages) of /proc/self/statm.
func parseStatm(s string, pageSize int64) int64 {
	f := strings.Fields(s)
	if len(f) < 2 {
		return -1
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || pages < 0 {
		return -1
	}
	return pages * pageSize
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
