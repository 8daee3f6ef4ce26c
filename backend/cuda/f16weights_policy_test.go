package cuda

import (
	"errors"
	"strings"
	"testing"
)

// TestF16WeightsPolicy: WORKER_CUDA_F16_WEIGHTS's values, and when each
// makes the copies: auto only within a quarter of the free memory, 1
// whenever f16WeightsReserve stays free, 0 never.
func TestF16WeightsPolicy(t *testing.T) {
	for _, c := range []struct {
		env  string
		want f16Mode
		bad  bool
	}{{"", f16Auto, false}, {"auto", f16Auto, false}, {"0", f16Off, false}, {"1", f16On, false}, {"yes", f16Off, true}, {"2", f16Off, true}} {
		t.Setenv(f16WeightsEnv, c.env)
		got, err := f16WeightsWanted()
		if c.bad != (err != nil) || got != c.want {
			t.Errorf("%s=%q: mode %d, error %v (want mode %d, error %v)", f16WeightsEnv, c.env, got, err, c.want, c.bad)
		}
		if err != nil && (!errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), f16WeightsEnv)) {
			t.Errorf("%s=%q: error %v should be ErrBadInput naming the setting", f16WeightsEnv, c.env, err)
		}
	}
	const gib = int64(1) << 30
	for _, c := range []struct {
		mode       f16Mode
		need, free int64
		want       bool
		why        string
	}{
		{f16Auto, 7 * gib, 130 * gib, true, ""},                // Phi-3-mini Q4_K_M on an H200
		{f16Auto, 14 * gib, 19 * gib, false, "a quarter"},      // a 7B Q4_K_M on a 24 GB card
		{f16Auto, 5 * gib, 20 * gib, true, ""},                 // exactly a quarter
		{f16Auto, 5*gib + 1, 20 * gib, false, "a quarter"},     // just over
		{f16On, 14 * gib, 19 * gib, true, ""},                  // asked for: made while it fits
		{f16On, 18 * gib, 19 * gib, false, "do not fit"},       // less than the reserve left
		{f16Auto, 1 * gib, 2*gib + gib/2, false, "do not fit"}, // small card: the reserve first
		{f16Off, 1 * gib, 130 * gib, false, "off"},
	} {
		got, why := f16WeightsFit(c.mode, c.need, c.free)
		if got != c.want || !strings.Contains(why, c.why) {
			t.Errorf("mode %d, %d bytes needed, %d free: %v %q, want %v mentioning %q", c.mode, c.need, c.free, got, why, c.want, c.why)
		}
	}
}
