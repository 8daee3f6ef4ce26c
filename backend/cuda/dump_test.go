package cuda_test

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/internal/testmodel"
)

type dumped struct {
	name       string
	rows, cols int
	data       []float32
}

// dumpStep runs one prompt step on be with a DumpFunc and returns what it
// dumped, in order.
func dumpStep(t *testing.T, be backend.Backend, set func(backend.DumpFunc), prompt []int32) []dumped {
	t.Helper()
	var out []dumped
	set(func(name string, rows, cols int, data []float32) {
		out = append(out, dumped{name, rows, cols, slices.Clone(data)})
	})
	defer set(nil)
	kv, err := be.NewKVCache(len(prompt))
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Free()
	if err := be.Forward([]*backend.Seq{{Tokens: prompt, KV: kv, Prefill: true}}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDumpsMatchCPU: the CUDA backend dumps the same intermediate tensors
// as the CPU backend — every name of backend.DumpLayerNames for every layer,
// in the same order and shapes — with values that agree (issue 17: it
// dumped 7 of the 13).
func TestDumpsMatchCPU(t *testing.T) {
	needGPU(t)
	m := writeModel(t, "llama-micro", testmodel.F16)
	gpu := gpuBackend(t, m)
	cb := cpu.New(m, 0)
	defer cb.Close()
	prompt := []int32{1, 5, 9, 13, 17, 21, 25}
	want := dumpStep(t, cb, func(f backend.DumpFunc) { cb.Dump = f }, prompt)
	got := dumpStep(t, gpu, func(f backend.DumpFunc) { gpu.Dump = f }, prompt)
	names := func(ds []dumped) []string {
		var out []string
		for _, d := range ds {
			out = append(out, fmt.Sprintf("%s %dx%d", d.name, d.rows, d.cols))
		}
		return out
	}
	if !slices.Equal(names(got), names(want)) {
		t.Fatalf("dumps differ:\nGPU %v\nCPU %v", names(got), names(want))
	}
	layerNames := 0
	for _, d := range want {
		for _, n := range backend.DumpLayerNames {
			if d.name == n+"-0" {
				layerNames++
			}
		}
	}
	if layerNames != len(backend.DumpLayerNames) {
		t.Errorf("layer 0 dumps %d of the %d names of backend.DumpLayerNames", layerNames, len(backend.DumpLayerNames))
	}
	for i := range want {
		var num, den float64
		for j := range want[i].data {
			e := float64(got[i].data[j] - want[i].data[j])
			num += e * e
			den += float64(want[i].data[j]) * float64(want[i].data[j])
		}
		if rel := math.Sqrt(num / max(den, 1e-30)); rel > 2e-2 || math.IsNaN(rel) {
			t.Errorf("%s: GPU vs CPU relative %.3g", want[i].name, rel)
		}
	}
}
