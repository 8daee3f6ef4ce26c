package cuda

import (
	"sync"
	"unsafe"
)

// cuBLAS, loaded like the driver: used for the matrix products of prompt
// rows (weights dequantized to F16, activations rounded to F16, float32
// accumulation on the tensor cores).
var cublas struct {
	cublasCreate_v2    func(h *uintptr) int32
	cublasDestroy_v2   func(h uintptr) int32
	cublasSetStream_v2 func(h uintptr, s cuStream) int32
	cublasGemmEx       func(h uintptr, transa, transb int32, m, n, k int32, alpha unsafe.Pointer,
		A devicePtr, Atype int32, lda int32, B devicePtr, Btype int32, ldb int32, beta unsafe.Pointer,
		C devicePtr, Ctype int32, ldc int32, computeType int32, algo int32) int32
}

var (
	cublasOnce     sync.Once
	cublasErr      error
	cublasAttempts []LibraryAttempt
)

func loadCUBLAS(libDir string) error {
	cublasOnce.Do(func() {
		lib, err := openLibrary([]string{"libcublas.so.13", "libcublas.so.12", "libcublas.so"}, searchDirs(libDir), &cublasAttempts)
		if err != nil {
			cublasErr = err
			return
		}
		cublasErr = bind(lib, "libcublas", map[string]any{
			"cublasCreate_v2": &cublas.cublasCreate_v2, "cublasDestroy_v2": &cublas.cublasDestroy_v2,
			"cublasSetStream_v2": &cublas.cublasSetStream_v2, "cublasGemmEx": &cublas.cublasGemmEx,
		})
	})
	return cublasErr
}

// cuBLAS constants.
const (
	cublasOpN         = 0
	cublasOpT         = 1
	cudaR32F          = 0
	cudaR16F          = 2
	cublasCompute32F  = 68
	cublasGemmDefault = -1
)

// cublasError is a failed cuBLAS call as an Error (CUDA_ERROR, matching
// backend.ErrDevice).
func cublasError(api string, status int32) error {
	names := map[int32]string{1: "NOT_INITIALIZED", 3: "ALLOC_FAILED", 7: "INVALID_VALUE", 8: "ARCH_MISMATCH",
		11: "MAPPING_ERROR", 13: "EXECUTION_FAILED", 14: "INTERNAL_ERROR", 15: "NOT_SUPPORTED", 16: "LICENSE_ERROR"}
	name := "CUBLAS_STATUS_UNKNOWN"
	if n, ok := names[status]; ok {
		name = "CUBLAS_STATUS_" + n
	}
	return &Error{API: api, Code: int(status), Name: name}
}

// gemmTile is the number of prompt rows per GEMM call: every call has the
// same shape (rows padded with zeros), so that a row's result does not
// depend on how many rows came with it. 256 rows (H200, docs/perf.md step
// 21): pp512 ×1.6–2.0 against 64 rows, a 32-token prompt's first token up
// to 12 % later. WORKER_CUDA_GEMM_TILE (64, 128) changes it for a
// measurement: results then differ in their last bits from the default's,
// and are again the same however a prompt is split.
var gemmTile = envChoice("WORKER_CUDA_GEMM_TILE", 256, 64, 128, 256)
