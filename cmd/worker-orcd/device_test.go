package main

import (
	"errors"
	"strings"
	"testing"
)

// TestDeviceFlagOneRule: every command reads --device with the same rules
// and the same message; doctor reports a value generate would refuse as a
// failed gpu check carrying that message.
func TestDeviceFlagOneRule(t *testing.T) {
	fakeGPU(t, nil, errors.New("libcuda.so.1: not found"))
	model := writeSpec(t, "qwen2-micro", nil, nil)
	const want = "want auto, cpu, cuda or cuda:N"
	for _, dev := range []string{"tpu", "cuda:1x", "cuda:-1", "cuda:", "cuda:+1", "CPU", "cuda:0:1", " cpu"} {
		t.Run(dev, func(t *testing.T) {
			code, _, errOut := runCLI("generate", "--model", model, "--prompt", "hi", "--max-tokens", "1", "--device", dev)
			if code != 1 || !strings.Contains(errOut, want) || !strings.Contains(errOut, dev) {
				t.Errorf("generate --device %q: exit %d, stderr %q; want exit 1 naming the value and %q", dev, code, errOut, want)
			}
			code, rep := runDoctorJSON(t, "--model", model, "--no-smoke", "--device", dev)
			c, ok := findCheck(rep, "gpu")
			if code != 1 || !ok || c.Status != statusFail || !strings.Contains(c.Message, want) || !strings.Contains(c.Message, dev) {
				t.Errorf("doctor --device %q: exit %d, gpu check %+v; want a failed gpu check naming the value and %q", dev, code, c, want)
			}
		})
	}
}
