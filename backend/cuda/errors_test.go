package cuda

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"worker-orcd/backend"
)

// TestErrorsMatchBackendSentinels: the server can tell an out-of-memory and
// a device failure apart through backend's sentinels alone.
func TestErrorsMatchBackendSentinels(t *testing.T) {
	oom := &AllocationError{Bytes: 1 << 30, Free: 1 << 20, Total: 80 << 30, GPU: 0, Purpose: PurposeKVCache}
	for _, err := range []error{oom, fmt.Errorf("engine: forward: %w", oom)} {
		if !errors.Is(err, backend.ErrOutOfMemory) || errors.Is(err, backend.ErrDevice) {
			t.Errorf("%v: ErrOutOfMemory %v, ErrDevice %v; want true, false", err, errors.Is(err, backend.ErrOutOfMemory), errors.Is(err, backend.ErrDevice))
		}
	}
	for _, err := range []error{
		&Error{API: "cuLaunchKernel(mmu_q4_k)", Code: 719, Name: "CUDA_ERROR_LAUNCH_FAILED"},
		fmt.Errorf("forward: %w", check("cuMemcpyHtoDAsync", 700)),
		cublasError("cublasGemmEx (896×896·64)", 13),
	} {
		if !errors.Is(err, backend.ErrDevice) || errors.Is(err, backend.ErrOutOfMemory) || !strings.Contains(err.Error(), "CUDA_ERROR") {
			t.Errorf("%v: want a CUDA_ERROR matching ErrDevice only", err)
		}
	}
	if e := cublasError("cublasGemmEx", 13).Error(); !strings.Contains(e, "CUBLAS_STATUS_EXECUTION_FAILED") {
		t.Errorf("cuBLAS error %q does not name the status", e)
	}
	if errors.Is(ErrDeviceClosed, backend.ErrDevice) || errors.Is(ErrLaunch, backend.ErrDevice) {
		t.Error("a closed device or a refused launch is not a device failure")
	}
	unknown := &AllocationError{Bytes: 4096, GPU: 1, Purpose: PurposeWeights}
	if s := unknown.Error(); !strings.Contains(s, "free memory unknown") || !strings.HasPrefix(s, "AllocationFailed: 4096 bytes") {
		t.Errorf("allocation error without memory info: %q", s)
	}
}
