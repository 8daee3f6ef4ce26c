package cuda

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"worker-orcd/backend/cuda/kernels"
)

// clangShim stands in for the CUDA headers clang would include: the
// attribute macros and the declarations of the device functions the
// kernels call (NVRTC has them built in).
const clangShim = `#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __launch_bounds__(...) __attribute__((launch_bounds(__VA_ARGS__)))
#include "__clang_cuda_builtin_vars.h"
__device__ float expf(float);
__device__ float logf(float);
__device__ float fmaxf(float, float);
__device__ float rsqrtf(float);
__device__ void sincos(double, double*, double*);
__device__ float __int_as_float(int);
__device__ float __uint_as_float(unsigned);
__device__ unsigned __float_as_uint(float);
__device__ float __shfl_xor_sync(unsigned, float, int);
__device__ int __shfl_xor_sync(unsigned, int, int);
__device__ unsigned __shfl_sync(unsigned, unsigned, int);
__device__ void __syncwarp(unsigned mask = 0xffffffffu);
__device__ void __syncthreads();
__device__ unsigned atomicAdd(unsigned*, unsigned);
__device__ int min(int, int);
__device__ int max(int, int);
__device__ long min(long, long);
__device__ long max(long, long);
`

// findClang returns a clang++ that can compile CUDA, or "".
func findClang() string {
	if p := os.Getenv("WORKER_TEST_CLANG"); p != "" {
		return p
	}
	if p, err := exec.LookPath("clang++"); err == nil {
		return p
	}
	ms, _ := filepath.Glob("/usr/lib/llvm-*/bin/clang++")
	if len(ms) > 0 {
		return ms[len(ms)-1]
	}
	return ""
}

// TestKernelsCompileWithClang checks the kernel sources, as NVRTC gets
// them (one translation unit, Go's -D constants), with clang's CUDA front
// end where clang is installed: syntax and types, for sm_80 (tensor-core
// paths) and sm_70, on a machine without a GPU or CUDA toolkit. Skips
// without clang; the GPU tests compile them with NVRTC.
func TestKernelsCompileWithClang(t *testing.T) {
	clang := findClang()
	if clang == "" {
		t.Skip("no clang++ (set WORKER_TEST_CLANG): the GPU tests compile the kernels with NVRTC")
	}
	dir := t.TempDir()
	src, shim := filepath.Join(dir, "kernels.cu"), filepath.Join(dir, "shim.h")
	if err := os.WriteFile(src, []byte(kernels.Source()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shim, []byte(clangShim), 0o644); err != nil {
		t.Fatal(err)
	}
	var defs []string
	for _, d := range kernelDefines() {
		defs = append(defs, "-D"+strings.TrimPrefix(d, "--define-macro="))
	}
	for _, arch := range []string{"sm_80", "sm_70"} {
		args := append([]string{"-x", "cuda", "--cuda-device-only", "-nocudainc", "-nocudalib", "--cuda-gpu-arch=" + arch,
			"-std=c++17", "-fsyntax-only", "-include", shim}, defs...)
		out, err := exec.Command(clang, append(args, src)...).CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "__clang_cuda_builtin_vars.h") || strings.Contains(string(out), "unsupported") {
				t.Skipf("%s cannot compile CUDA here: %s", clang, out)
			}
			t.Errorf("%s for %s: %v\n%s", clang, arch, err, out)
		}
	}
}
