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

// pdl_entry starts every kernel. On sm_90+ a kernel may be launched with
// programmatic stream serialization (Device.launch, WORKER_CUDA_PDL): it is
// then scheduled while the kernel before it in the stream still runs, so
// its launch latency hides behind that kernel's tail. Each block first lets
// the next kernel be scheduled (launch_dependents) and then waits until
// every kernel before it has completed and its memory is visible (wait), so
// nothing is read or written before the previous results exist: the
// results are those of a plain launch, bit for bit. Without the launch
// attribute both instructions do nothing.
__device__ __forceinline__ void pdl_entry() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// pdl_wait starts the kernels that let nothing after them start early
// (mmt1_: measured slower when overlapped; the Go side launches them
// plainly too, pdlKernel): it only waits, and the next kernel is scheduled
// once all their blocks have exited.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

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

// ---- the paged KV cache (backend/cuda kvcache.go) ----
// A sequence's cache is a table of blocks of KV_BLOCK positions: table[b]
// is the device address of block b's layer-0 keys, and table[-1] the layer
// stride in elements (the blocks sit in segments laid out layer by layer,
// [layer][S blocks][K, V][KV_BLOCK][kvd], float32 or F16). Kernels get each
// row's table (tabs[t]) and the layer: layer l's key row of position p is
// at table[p / KV_BLOCK] + l·stride + (p % KV_BLOCK)·kvd, its value row
// KV_BLOCK·kvd elements further.
#define KV_BLOCK 16
#define KV_SHIFT 4
// The element offset of layer's keys from a block's address in table.
__device__ __forceinline__ long kv_layer(const u64* table, int layer) { return (long)layer * (long)table[-1]; }
// The key row of position p (p ≥ 0) in the cache of table, koff =
// kv_layer(table, layer).
template <typename KT>
__device__ __forceinline__ KT* kv_row(const u64* table, long koff, int kvd, int p) {
    return (KT*)table[p >> KV_SHIFT] + koff + (long)(p & (KV_BLOCK - 1)) * kvd;
}
// A warp's window onto 32 consecutive blocks of a table, so that walking
// positions costs a shuffle, not a dependent global load, a block: lane i
// holds the address of block base+i (0 past block last). Every lane of the
// warp calls both functions with the same arguments.
struct KvWindow {
    int base;
    u64 mine;
};
__device__ __forceinline__ void kv_window_load(KvWindow& w, const u64* table, int base, int last) {
    int lane = threadIdx.x & 31;
    w.base = base;
    w.mine = base + lane <= last ? table[base + lane] : 0;
}
// The address of block b (base ≤ b < base+32).
__device__ __forceinline__ u64 kv_window_get(const KvWindow& w, int b) {
    int src = b - w.base;
    uint lo = __shfl_sync(0xffffffffu, (uint)w.mine, src), hi = __shfl_sync(0xffffffffu, (uint)(w.mine >> 32), src);
    return ((u64)hi << 32) | lo;
}
