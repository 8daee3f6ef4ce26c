package cuda

import (
	"worker-orcd/backend/cuda/kernels"
	"worker-orcd/model"
)

func kernelsDecoder() string { return kernels.Source() }

func testConfig() *model.Config {
	return &model.Config{RMSEps: 1e-6}
}

// SetDecodeKernelsForTest sets, for the external tests, whether decode rows
// of quantized types use the 8-bit kernels and whether a lone decode row's
// norms write its 8-bit form (WORKER_CUDA_NORM_Q8), and drops the captured
// graphs, which hold the launches of the settings before.
func (b *Backend) SetDecodeKernelsForTest(int8, normQ8 bool) error {
	b.int8, b.normQ8On = int8, normQ8
	return b.dev.do(b.dropGraphs)
}

// ArchForTest is the card's compute capability (90 for sm_90).
func (b *Backend) ArchForTest() int { return b.dev.Arch() }
