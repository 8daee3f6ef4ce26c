package cuda

import (
	"worker-orcd/backend/cuda/kernels"
	"worker-orcd/model"
)

func kernelsDecoder() string { return kernels.Source() }

func testConfig() *model.Config {
	return &model.Config{RMSEps: 1e-6}
}
