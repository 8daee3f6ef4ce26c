// common.cuh — types and helpers shared by every kernel file.
//
// Conventions of all kernels: activations are float32, row-major [T, n]
// (T = tokens in the batch, a row a token). Weights stay in their GGUF
// encoding on the device (quant.cuh). The KV cache is float32 or F16 (the
// _f32/_f16 kernels): for each sequence and layer, K and V are
// [capacity, n_kv_head*head_dim].
//
// Self-contained: no CUDA headers (half↔float through PTX cvt, rounding to
// nearest even). backend/cuda compiles the files as one translation unit,
// in the order common.cuh, quant.cuh, matrix.cu, norm.cu, attention.cu,
// sampling.cu (kernels.Source), with the launch constants the Go launchers
// also use passed as -D options (kernelDefines), so the two sides cannot
// disagree. No kernels here: device functions only.

typedef unsigned char uchar;
typedef unsigned short ushort;
typedef unsigned int uint;
typedef unsigned long long u64;

#define NEG_INF (-__int_as_float(0x7f800000))

__device__ __forceinline__ float h2f(ushort h) {
    float f;
    asm("{ cvt.f32.f16 %0, %1; }" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ float ld_h(const uchar* p) { return h2f(*(const ushort*)p); }
__device__ __forceinline__ uint ld_u32(const uchar* p) {
    return (uint)p[0] | ((uint)p[1] << 8) | ((uint)p[2] << 16) | ((uint)p[3] << 24);
}

struct alignas(16) f4 { float x, y, z, w; };
struct alignas(16) u4 { uint x, y, z, w; };
struct alignas(8) u2 { uint x, y; };

// pack_h2 rounds two floats to F16 and packs them (lo in the low half).
__device__ __forceinline__ uint pack_h2(float lo, float hi) {
    uint r;
    asm("{ cvt.rn.f16x2.f32 %0, %1, %2; }" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// f2h rounds a float to F16 (to nearest even).
__device__ __forceinline__ ushort f2h(float f) {
    ushort h;
    asm("{ cvt.rn.f16.f32 %0, %1; }" : "=h"(h) : "f"(f));
    return h;
}

// make_h4 rounds four floats to F16 (in order, for an 8-byte store).
__device__ __forceinline__ u2 make_h4(f4 v) { return u2{pack_h2(v.x, v.y), pack_h2(v.z, v.w)}; }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float block_sum(float v, float* sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = threadIdx.x < nw ? sh[threadIdx.x] : 0.f;
    if (warp == 0)
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

__device__ __forceinline__ float block_max(float v, float* sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = threadIdx.x < nw ? sh[threadIdx.x] : NEG_INF;
    if (warp == 0)
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

__device__ __forceinline__ float silu(float g) { return g / (1.f + expf(-g)); }

// KV cache elements: float32 or F16 (rounded to nearest when stored).
__device__ __forceinline__ float kv_ld(const float* p, long i) { return p[i]; }
__device__ __forceinline__ float kv_ld(const ushort* p, long i) { return h2f(p[i]); }
__device__ __forceinline__ void kv_st(float* p, long i, float v) { p[i] = v; }
__device__ __forceinline__ void kv_st(ushort* p, long i, float v) { p[i] = f2h(v); }
