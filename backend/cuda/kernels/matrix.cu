// matrix.cu — embedding and matrix products, instantiated per weight type
// <t> (f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q4_k q5_k q6_k; mmt_ for all
// but f32 and bf16).
//
// Math: up to 3 jobs out[t, r] (+)= Σ_i W[r, i]·x[t, i] (+ bias[r]) over one
// x (Q, K and V in one launch, the jobs' rows numbered one after the
// other), or with glu 2 jobs, gate and up, and out = silu(gate·x)·(up·x).
// The arguments come in MMArgs, by value (mirrored by mmArgs in
// backend/cuda/matrix.go; a test checks the two layouts agree).
//
// Layout: W rows of row_bytes bytes in the file's encoding (quant.cuh);
// x [T, cols] and out [T, rows] float32.
//
// Kernels and launch shapes (TILE_U, TILE_T, MMT_WARPS, MMT_TOK, MMT_STAGES and
// MMT_PREFETCH are -D options from Go; each kernel has one Go launcher that checks MMArgs):
//   embed_<t>        x[t, :] = dequant(W row ids[t])             grid T, block 256
//   mmu_<t>          unit kernel, decode rows in float32 (types without mmt_,
//                    cards before sm_80): two output rows a warp (with glu a
//                    gate row and its up row); each lane takes 32-element units
//                    of both rows (lane, lane+32, …) dequantized into registers
//                    and dots them with up to TILE_U tokens' activations
//                    grid (ceil(rows/16), ceil(T/TILE_U)), with glu (ceil(rows/8), …), block 256
//   mme_<t>          element-wise kernel, prefill rows without cuBLAS: a warp a
//                    row, lanes on consecutive elements (coalesced activations),
//                    TILE_T tokens a block   grid (ceil(rows/8), ceil(T/TILE_T)), block 256
//   mmt_<t>          decode rows on the tensor cores (sm_80+): tiles of 16
//                    weight rows × a.tok tokens, a.parts warps a row tile, F16
//                    operands, float32 accumulation (see at the kernel);
//                    mmt1_<t> the same for launches of fewer than 8 tokens
//                    grid (ceil(tiles/(MMT_WARPS/parts)), ceil(T/a.tok)), block 32·MMT_WARPS,
//                    dynamic shared max(MMT_STAGES·64·parts·(4·a.tok+1), 32768) bytes
//   to_f16_rows      out[i] = F16(x[i]), 4 elements a thread    grid ceil(n/1024), block 256
//   dequant_f16_<t>  W → F16 [rows, cols], a thread a unit      grid ceil(rows·cols/32/256), block 256
//   to_f16_pad       x rows → F16 [tile, cols], rows ≥ T zero   grid ceil(tile·cols/256), block 256
//   gemm_epilogue    out (+)= c (+ bias), or silu(c)·up, after cuBLAS   grid ceil(T·rows/256), block 256
//   gemmq_<t>        prompt rows of quantized weights without cuBLAS or an F16
//                    copy (WORKER_CUDA_GEMMQ=1, experimental): c[t, r] = Σ_k
//                    F16(x)[t, k]·F16(W)[r, k], weight tiles dequantized into
//                    shared memory, float32 accumulation (see at the kernel)
//                    grid (ceil(rows/64), ceil(T/64)), block 128
//
// Preconditions (checked in Go): cols % 32 == 0 for the unit functions
// (mmu_, mmt_, dequant_f16_), 1 ≤ njobs ≤ 3, glu jobs of equal rows,
// parts ∈ {1, 2, 4, 8}, tok a multiple of 8 ≤ min(MMT_TOK, 256/(MMT_STAGES·parts)).

#ifndef TILE_U
#error "TILE_U is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif
#ifndef TILE_T
#error "TILE_T is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif
#ifndef MMT_WARPS
#error "MMT_WARPS is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif
#ifndef MMT_TOK
#error "MMT_TOK is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif
#ifndef MMT_STAGES
#error "MMT_STAGES is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif
#ifndef MMT_PREFETCH
#error "MMT_PREFETCH is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif

template <float (*DEQ)(const uchar*, int)>
__device__ __forceinline__ void embed_impl(const uchar* W, long row_bytes, const int* ids, float* x, int cols) {
    int t = blockIdx.x;
    const uchar* row = W + (long)ids[t] * row_bytes;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) x[(long)t * cols + i] = DEQ(row, i);
}

// A matrix product job: out[t, r] (+)= W[r, :]·x[t, :] (+ bias[r]). One
// launch runs up to 3 jobs over the same activations (Q, K and V), their
// rows numbered one after the other; or, with glu set, jobs 0 and 1 are the
// gate and up matrices and out gets silu(gate·x) * (up·x).
struct MMJob {
    const uchar* W;
    long row_bytes;
    float* out;
    const float* bias; // nullable
    int rows;
    int accumulate;    // out += instead of out =
};
struct MMArgs {
    MMJob job[3];
    int njobs;
    const float* x;
    const ushort* x16; // mmt_ only: x rounded to F16 (same layout)
    ushort* out16;     // mmt_ only, with glu: an F16 copy of the output (nullable)
    int cols;
    int T;
    int glu;
    int parts; // mmt_ only: warps that split a row (1, 2, 4 or 8)
    int tok;   // mmt_ only: tokens a block takes (a multiple of 8, at most MMT_TOK)
};

__device__ __forceinline__ int find_job(const MMArgs& a, int* r) {
    int j = 0;
    while (j + 1 < a.njobs && *r >= a.job[j].rows) { *r -= a.job[j].rows; j++; }
    return j;
}

__device__ __forceinline__ void mm_store(const MMJob& jb, int r, int t, float v) {
    if (jb.bias) v += jb.bias[r];
    float* o = jb.out + (long)t * jb.rows + r;
    if (jb.accumulate) v += *o;
    *o = v;
}

// Element-wise variant for long batches (prefill): lanes take consecutive
// elements, so the activation reads of a warp are coalesced and registers
// stay few; each element is dequantized on its own.
template <float (*DEQ)(const uchar*, int)>
__device__ __forceinline__ void mme_rows(const uchar* row, const float* xt, int cols, int nt, float* acc) {
    for (int i = threadIdx.x & 31; i < cols; i += 32) {
        float w = DEQ(row, i);
#pragma unroll
        for (int t = 0; t < TILE_T; t++)
            if (t < nt) acc[t] += w * xt[(long)t * cols + i];
    }
}

// Unit variant for decode-sized batches: each lane takes 32-element units
// (lane, lane+32, …) of two rows at once (more loads in flight, one pass
// over the activations for both), dequantized into registers with wide
// loads, and dots them with up to TILE_U tokens' activations (16-byte loads).
template <void (*UNIT)(const uchar*, int, float*)>
__device__ __forceinline__ void mmu_rows2(const uchar* ra, const uchar* rb, const float* xt, int cols, int nt, float* acca, float* accb) {
    int units = cols >> 5;
    for (int u = threadIdx.x & 31; u < units; u += 32) {
        float wa[32], wb[32];
        UNIT(ra, u, wa);
        if (rb) UNIT(rb, u, wb);
#pragma unroll
        for (int t = 0; t < TILE_U; t++) {
            if (t < nt) {
                const f4* xp = (const f4*)(xt + (long)t * cols + 32 * u);
                float sa = 0.f, sb = 0.f;
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    f4 v = xp[k];
                    sa += wa[4*k] * v.x + wa[4*k+1] * v.y + wa[4*k+2] * v.z + wa[4*k+3] * v.w;
                    if (rb) sb += wb[4*k] * v.x + wb[4*k+1] * v.y + wb[4*k+2] * v.z + wb[4*k+3] * v.w;
                }
                acca[t] += sa;
                accb[t] += sb;
            }
        }
    }
}

// Two output rows per warp (rows 2w and 2w+1 of all jobs together; with
// glu, gate and up row w); grid.y tiles the tokens by TILE_U.
template <void (*UNIT)(const uchar*, int, float*)>
__device__ __forceinline__ void mmu_kernel(const MMArgs& a) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int w = blockIdx.x * (blockDim.x >> 5) + warp;
    int t0 = blockIdx.y * TILE_U;
    int nt = min(TILE_U, a.T - t0);
    const float* xt = a.x + (long)t0 * a.cols;
    float acca[TILE_U], accb[TILE_U];
#pragma unroll
    for (int t = 0; t < TILE_U; t++) { acca[t] = 0.f; accb[t] = 0.f; }
    if (a.glu) {
        int r = w;
        if (r >= a.job[0].rows) return;
        mmu_rows2<UNIT>(a.job[0].W + (long)r * a.job[0].row_bytes, a.job[1].W + (long)r * a.job[1].row_bytes, xt, a.cols, nt, acca, accb);
#pragma unroll
        for (int t = 0; t < TILE_U; t++) {
            float g = warp_sum(acca[t]), u = warp_sum(accb[t]);
            if (lane == 0 && t < nt) a.job[0].out[(long)(t0 + t) * a.job[0].rows + r] = silu(g) * u;
        }
        return;
    }
    int total = a.job[0].rows + (a.njobs > 1 ? a.job[1].rows : 0) + (a.njobs > 2 ? a.job[2].rows : 0);
    int r0 = 2 * w;
    if (r0 >= total) return;
    int ra = r0, rbi = r0 + 1;
    int ja = find_job(a, &ra);
    int jbi = -1;
    if (rbi < total) jbi = find_job(a, &rbi);
    const uchar* pa = a.job[ja].W + (long)ra * a.job[ja].row_bytes;
    const uchar* pb = jbi >= 0 ? a.job[jbi].W + (long)rbi * a.job[jbi].row_bytes : 0;
    mmu_rows2<UNIT>(pa, pb, xt, a.cols, nt, acca, accb);
#pragma unroll
    for (int t = 0; t < TILE_U; t++) {
        float va = warp_sum(acca[t]), vb = warp_sum(accb[t]);
        if (lane == 0 && t < nt) {
            mm_store(a.job[ja], ra, t0 + t, va);
            if (jbi >= 0) mm_store(a.job[jbi], rbi, t0 + t, vb);
        }
    }
}

// One warp per output row (of all jobs together); grid.y tiles the tokens.
template <void (*ROWS)(const uchar*, const float*, int, int, float*)>
__device__ __forceinline__ void mme_kernel(const MMArgs& a) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int r = blockIdx.x * (blockDim.x >> 5) + warp;
    int total = a.glu ? a.job[0].rows : a.job[0].rows + (a.njobs > 1 ? a.job[1].rows : 0) + (a.njobs > 2 ? a.job[2].rows : 0);
    if (r >= total) return;
    int t0 = blockIdx.y * TILE_T;
    int nt = min(TILE_T, a.T - t0);
    const float* xt = a.x + (long)t0 * a.cols;
    float acc[TILE_T];
#pragma unroll
    for (int t = 0; t < TILE_T; t++) acc[t] = 0.f;
    if (a.glu) {
        float up[TILE_T];
#pragma unroll
        for (int t = 0; t < TILE_T; t++) up[t] = 0.f;
        ROWS(a.job[0].W + (long)r * a.job[0].row_bytes, xt, a.cols, nt, acc);
        ROWS(a.job[1].W + (long)r * a.job[1].row_bytes, xt, a.cols, nt, up);
#pragma unroll
        for (int t = 0; t < TILE_T; t++) {
            float g = warp_sum(acc[t]), u = warp_sum(up[t]);
            if (lane == 0 && t < nt) a.job[0].out[(long)(t0 + t) * a.job[0].rows + r] = silu(g) * u;
        }
        return;
    }
    int j = find_job(a, &r);
    const MMJob& jb = a.job[j];
    ROWS(jb.W + (long)r * jb.row_bytes, xt, a.cols, nt, acc);
#pragma unroll
    for (int t = 0; t < TILE_T; t++) {
        float v = warp_sum(acc[t]);
        if (lane == 0 && t < nt) mm_store(jb, r, t0 + t, v);
    }
}

// ---- decode rows on the tensor cores (sm_80 and later) ----
//
// mmt_<type>: the same product as mmu_<type> for decode rows, reading each
// weight byte once per block of up to 64 tokens instead of once per 4.
//
// Math. Rows are taken in tiles of 16 (with glu: 8 gate rows and the same 8
// up rows). A row tile's 32-element units are split between P = a.parts
// warps by a fixed rule (part p takes steps p, p+P, …; step s is units
// 4s..4s+3), and the P partial sums are added in part order. Per step a lane
// (g = lane/4, c = lane%4) dequantizes unit 4s+c of tile rows g and g+8 with
// the unit_<type> functions, rounds them to F16, and feeds them as the A
// operand of eight mma.m16n8k16 (F16 in, float32 accumulation): mma j takes
// elements 4j..4j+3 of the four lanes' units. A dot product's terms may be
// grouped in any order as long as A and B agree, so the k slots
// {2c, 2c+1, 2c+8, 2c+9} a lane owns in the instruction's layout stand for
// elements 4j..4j+3 of its own unit. The B operand is token 8n+g's
// activations at the same elements, rounded to F16 (a.x16: the producer of
// the activations wrote an F16 copy, or the launcher converted them; the
// same rounding either way). Each output (row, token)
// is thus the same sequence of instructions whatever T, the block's token
// count a.tok or the token's place: tokens do not interact inside an mma,
// the split of the units depends only on cols and P (chosen from the
// matrix's shape by the launcher, never from T), and the partial sums are
// added in a fixed order.
//
// Layout and launch. A block's 8 warps are 8/P row tiles × P parts (warp w:
// tile w/P, part w%P); it takes tokens t0 = blockIdx.y*a.tok … +a.tok. The
// block walks the steps in iterations (iteration i: part p does step
// p + P·i, so the block needs columns 128·P·i … +128·P), and copies those
// columns of its tokens' F16 activations into shared memory with cp.async
// while the warps dequantize their weights; the 8/P tiles then share them.
// With MMT_STAGES = 2 the copies go to two buffers in turn, and iteration
// i+1's copy runs while the warps multiply iteration i's columns (1: each
// iteration waits for its own copy). With MMT_PREFETCH each lane also asks
// L2 for its weights of the next iteration before dequantizing this one's.
// A block of fewer than 8 tokens skips the staging: each lane reads its
// token's activations itself and prefetches its next weights into L2 (the
// same values reach the same instructions either way). Shared layout:
// 16-byte pieces (8 F16), piece k (0..3) of unit uc (0..4P-1) of token t at
// piece index uc·U + 4t + k, U = 4·a.tok + 1, so that the eight lanes of
// each 16-byte read phase hit distinct banks. After the walk the same
// memory holds the warps' partial sums red[warp][n][e][lane]. With glu,
// out16 (when set) gets an F16 copy of the output, the next product's input.
//   grid (ceil(tiles / (8/P)), ceil(T / a.tok)), block 256,
//   dynamic shared max(MMT_STAGES·64·P·(4·a.tok + 1), 32768) bytes; tiles = ceil(rows/16), with glu ceil(rows/8)
#define MMT_NT (MMT_TOK / 8)

// to_f16_rows: out[i] = F16(x[i]) for n elements (n a multiple of 4), the
// F16 input of mmt_ when no producer wrote one.           grid ceil(n/1024), block 256
extern "C" __global__ void to_f16_rows(const float* x, ushort* out, long n) {
    pdl_entry();
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (4 * i < n) ((u2*)out)[i] = make_h4(((const f4*)x)[i]);
}

// c += A·B for one m16n8k16 tile (A row-major 16×16 F16, B 16×8 F16, C float32).
__device__ __forceinline__ void mma_16816(float* c, const uint* a, uint b0, uint b1) {
#if __CUDA_ARCH__ >= 800
    asm volatile("{ mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3}; }"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// 16-byte asynchronous copy global → shared; src_bytes 0 writes zeros.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
#if __CUDA_ARCH__ >= 800
    uint sa;
    asm volatile("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(sa) : "l"(dst));
    asm volatile("{ cp.async.cg.shared.global [%0], [%1], 16, %2; }" :: "r"(sa), "l"(src), "r"(src_bytes) : "memory");
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if __CUDA_ARCH__ >= 800
    asm volatile("{ cp.async.commit_group; }" ::: "memory");
#endif
}
// Waits for every copy this thread committed.
__device__ __forceinline__ void cp_async_wait0() {
#if __CUDA_ARCH__ >= 800
    asm volatile("{ cp.async.wait_group 0; }" ::: "memory");
#endif
}

__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("{ prefetch.global.L2 [%0]; }" :: "l"(p)); }

// Asks L2 for unit un of rows pa and pb (row_bytes rba, rbb; units a row):
// the two 32-byte sectors where the unit's bytes start.
__device__ __forceinline__ void mmt_prefetch_unit(const uchar* pa, const uchar* pb, long rba, long rbb, int un, int units) {
    if (un >= units) return;
    if (pa) { long o = (long)un * rba / units; prefetch_l2(pa + o); prefetch_l2(pa + min(o + 32, rba - 1)); }
    if (pb) { long o = (long)un * rbb / units; prefetch_l2(pb + o); prefetch_l2(pb + min(o + 32, rbb - 1)); }
}

// Copies columns col0 … col0+128·P of the block's nt tokens' F16
// activations (pieces = nt·ppt 16-byte pieces, zeros past cols) into buf,
// piece k of unit uc of token t at uc·U + 4t + k, as one cp.async group.
__device__ __forceinline__ void mmt_stage(f4* buf, const ushort* xt, int cols, int col0, int pieces, int ppt, int U) {
    for (int q = threadIdx.x; q < pieces; q += blockDim.x) {
        int t = q / ppt, rem = q - t * ppt; // rem = uc*4 + k
        int col = col0 + 8 * rem;
        const ushort* src = xt + (long)t * cols + min(col, cols - 8);
        cp_async16(buf + (rem >> 2) * U + 4 * t + (rem & 3), src, col < cols ? 16 : 0);
    }
    cp_async_commit();
}

// A operand of step u for tile rows g (row pointer pa) and g+8 (pb): unit u
// of each dequantized and rounded to F16 (zeros for a missing row or unit).
template <void (*UNIT)(const uchar*, int, float*)>
__device__ __forceinline__ void mmt_load_a(const uchar* pa, const uchar* pb, int u, bool uok, uint (*A)[4]) {
    float w[32];
    if (pa && uok) UNIT(pa, u, w);
    else {
#pragma unroll
        for (int i = 0; i < 32; i++) w[i] = 0.f;
    }
#pragma unroll
    for (int j = 0; j < 8; j++) { A[j][0] = pack_h2(w[4*j], w[4*j+1]); A[j][2] = pack_h2(w[4*j+2], w[4*j+3]); }
    if (pb && uok) UNIT(pb, u, w);
    else {
#pragma unroll
        for (int i = 0; i < 32; i++) w[i] = 0.f;
    }
#pragma unroll
    for (int j = 0; j < 8; j++) { A[j][1] = pack_h2(w[4*j], w[4*j+1]); A[j][3] = pack_h2(w[4*j+2], w[4*j+3]); }
}

// Row r (0..15) of row tile `tile`: the job and the row within it, or -1.
__device__ __forceinline__ int mmt_row(const MMArgs& a, int tile, int r, int* row) {
    if (a.glu) {
        int rr = tile * 8 + (r & 7);
        if (rr >= a.job[0].rows) return -1;
        *row = rr;
        return r < 8 ? 0 : 1;
    }
    int total = a.job[0].rows + (a.njobs > 1 ? a.job[1].rows : 0) + (a.njobs > 2 ? a.job[2].rows : 0);
    int rr = tile * 16 + r;
    if (rr >= total) return -1;
    int j = find_job(a, &rr);
    *row = rr;
    return j;
}

// NT is the token tiles of 8 a block holds: MMT_NT for mmt_, 1 for mmt1_
// (fewer than 8 tokens: the direct path only, a quarter of the accumulator
// registers, two steps of loads in flight). Both issue the same mma for
// each output, so a row's result is the same from either.
template <void (*UNIT)(const uchar*, int, float*), int NT>
__device__ __forceinline__ void mmt_kernel(const MMArgs& a) {
    extern __shared__ f4 mmt_smem[];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int g = lane >> 2, c = lane & 3;
    int P = a.parts, tiles_per_block = MMT_WARPS / P;
    int part = warp % P, tile = blockIdx.x * tiles_per_block + warp / P;
    int t0 = blockIdx.y * a.tok;
    int nt = min(a.tok, a.T - t0);
    int ntiles = (nt + 7) >> 3;
    int U = 4 * a.tok + 1;
    int rowa, rowb;
    int ja = mmt_row(a, tile, g, &rowa), jb = mmt_row(a, tile, g + 8, &rowb);
    const uchar* pa = ja >= 0 ? a.job[ja].W + (long)rowa * a.job[ja].row_bytes : 0;
    const uchar* pb = jb >= 0 ? a.job[jb].W + (long)rowb * a.job[jb].row_bytes : 0;
    long rba = ja >= 0 ? a.job[ja].row_bytes : 0, rbb = jb >= 0 ? a.job[jb].row_bytes : 0;
    const ushort* xt = a.x16 + (long)t0 * a.cols;
    int units = a.cols >> 5;
    int iters = (units + 4 * P - 1) / (4 * P);
    int ppt = 16 * P;        // 16-byte pieces of one token in an iteration
    int pieces = nt * ppt;   // … and of all the block's tokens
    float acc[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
    if (NT == 1 || nt < 8) {
        // Few tokens: each lane reads its token's activations directly (no
        // staging, no barriers), and asks L2 for its next step's weights
        // ahead. The same values reach the same mma as when staged.
#pragma unroll 2
        for (int s = part; 4 * s < units; s += P) {
            int u = 4 * s + c;
            bool uok = u < units;
            mmt_prefetch_unit(pa, pb, rba, rbb, u + 4 * P, units);
            uint A[8][4];
            mmt_load_a<UNIT>(pa, pb, u, uok, A);
            int t = g;
            uint B[16];
            if (t < nt && uok) {
                const u4* xp = (const u4*)(xt + (long)t * a.cols + 32 * u);
#pragma unroll
                for (int k = 0; k < 4; k++) { u4 v = xp[k]; B[4*k] = v.x; B[4*k+1] = v.y; B[4*k+2] = v.z; B[4*k+3] = v.w; }
            } else {
#pragma unroll
                for (int k = 0; k < 16; k++) B[k] = 0u;
            }
#pragma unroll
            for (int j = 0; j < 8; j++) mma_16816(acc[0], A[j], B[2*j], B[2*j+1]);
        }
    } else {
        // Staged: MMT_STAGES buffers of the block's activations, one an
        // iteration. With 2, iteration it+1's columns are copied while the
        // warps multiply iteration it's (the copy is issued after the
        // barrier that ends every read of its buffer, iteration it−1's).
        const int bufsz = 4 * P * U; // 16-byte pieces a buffer
        if (MMT_STAGES == 2) mmt_stage(mmt_smem, xt, a.cols, 0, pieces, ppt, U);
        for (int it = 0; it < iters; it++) {
            f4* buf = mmt_smem + (MMT_STAGES == 2 ? (it & 1) * bufsz : 0);
            if (MMT_STAGES == 1) {
                __syncthreads(); // every read of the buffer (previous iteration) done
                mmt_stage(buf, xt, a.cols, 128 * P * it, pieces, ppt, U);
            }
            // Meanwhile: this warp's weights for step s, and L2 asked for
            // the next iteration's.
            int s = part + P * it;
            int u = 4 * s + c;
            bool uok = u < units;
            if (MMT_PREFETCH) mmt_prefetch_unit(pa, pb, rba, rbb, u + 4 * P, units);
            uint A[8][4];
            mmt_load_a<UNIT>(pa, pb, u, uok, A);
            cp_async_wait0();
            __syncthreads();
            if (MMT_STAGES == 2 && it + 1 < iters)
                mmt_stage(mmt_smem + ((it + 1) & 1) * bufsz, xt, a.cols, 128 * P * (it + 1), pieces, ppt, U);
            if (4 * s < units) {
                const u4* xs = (const u4*)buf + (4 * part + c) * U;
#pragma unroll
                for (int n = 0; n < NT; n++) {
                    if (n < ntiles) {
                        int t = 8 * n + g;
                        uint B[16];
                        if (t < nt && uok) {
#pragma unroll
                            for (int k = 0; k < 4; k++) { u4 v = xs[4 * t + k]; B[4*k] = v.x; B[4*k+1] = v.y; B[4*k+2] = v.z; B[4*k+3] = v.w; }
                        } else {
#pragma unroll
                            for (int k = 0; k < 16; k++) B[k] = 0u;
                        }
#pragma unroll
                        for (int j = 0; j < 8; j++) mma_16816(acc[n], A[j], B[2*j], B[2*j+1]);
                    }
                }
            }
        }
    }
    __syncthreads();
    float* red = (float*)mmt_smem; // [warp][n][e][lane]
#pragma unroll
    for (int n = 0; n < NT; n++) {
        if (n < ntiles) {
#pragma unroll
            for (int e = 0; e < 4; e++) red[((warp * NT + n) * 4 + e) * 32 + lane] = acc[n][e];
        }
    }
    __syncthreads();
    // Item (tile q of the block, token t, tile row r): consecutive threads
    // take consecutive rows of one token. Row r is C row r&7 of lane
    // 4(r&7) + (t%8)/2, element (t&1) + 2·(r≥8); with glu, r < 8 and the up
    // row is element +2.
    int rpt = a.glu ? 8 : 16;
    int per_tile = rpt * nt;
    for (int i = threadIdx.x; i < tiles_per_block * per_tile; i += blockDim.x) {
        int q = i / per_tile, rem = i % per_tile;
        int t = rem / rpt, r = rem % rpt;
        int n = t >> 3, l = 4 * (r & 7) + ((t & 7) >> 1), e = (t & 1) + (r >= 8 ? 2 : 0);
        float va = 0.f, vb = 0.f;
        for (int pp = 0; pp < P; pp++) {
            const float* rw = red + (((q * P + pp) * NT + n) * 4) * 32;
            va += rw[e * 32 + l];
            vb += rw[((e + 2) & 3) * 32 + l];
        }
        int row;
        int tq = blockIdx.x * tiles_per_block + q;
        int j = mmt_row(a, tq, r, &row);
        if (j < 0) continue;
        if (a.glu) {
            float v = silu(va) * vb;
            a.job[0].out[(long)(t0 + t) * a.job[0].rows + row] = v;
            if (a.out16) a.out16[(long)(t0 + t) * a.job[0].rows + row] = f2h(v);
        }
        else mm_store(a.job[j], row, t0 + t, va);
    }
}

#define INSTANTIATE_MMT(NAME) \
    extern "C" __global__ void __launch_bounds__(256) mmt_##NAME(MMArgs a) { pdl_entry(); mmt_kernel<unit_##NAME, MMT_NT>(a); } \
    extern "C" __global__ void __launch_bounds__(256) mmt1_##NAME(MMArgs a) { pdl_wait(); mmt_kernel<unit_##NAME, 1>(a); }

INSTANTIATE_MMT(f16)
INSTANTIATE_MMT(q4_0)
INSTANTIATE_MMT(q4_1)
INSTANTIATE_MMT(q5_0)
INSTANTIATE_MMT(q5_1)
INSTANTIATE_MMT(q8_0)
INSTANTIATE_MMT(q4_k)
INSTANTIATE_MMT(q5_k)
INSTANTIATE_MMT(q6_k)

// ---- prompt rows through cuBLAS: F16 copies of weights and activations ----

// One thread per 32-element unit: W rows → F16 [rows, cols].
template <void (*UNIT)(const uchar*, int, float*)>
__device__ __forceinline__ void dequant_f16_impl(const uchar* W, long row_bytes, int rows, int cols, ushort* out) {
    int units = cols >> 5;
    long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long)rows * units) return;
    int r = (int)(idx / units), u = (int)(idx % units);
    float w[32];
    UNIT(W + (long)r * row_bytes, u, w);
    u4* o = (u4*)(out + (long)r * cols + 32 * u);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        uint v[4];
#pragma unroll
        for (int j = 0; j < 4; j++) v[j] = (uint)f2h(w[8*k+2*j]) | ((uint)f2h(w[8*k+2*j+1]) << 16);
        o[k] = u4{v[0], v[1], v[2], v[3]};
    }
}

// x [T, cols] float → F16 [tile, cols], rows past T zero.   grid ceil(tile*cols/256), block 256
extern "C" __global__ void to_f16_pad(const float* x, int T, int cols, ushort* out, int tile) {
    pdl_entry();
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)tile * cols) return;
    out[i] = i / cols < T ? f2h(x[i]) : (ushort)0;
}

// GEMM epilogue: out[t, r] (+)= c[t, r] (+ bias[r]) for the T valid rows;
// with up != 0: out[t, r] = silu(c[t, r]) * up[t, r].     grid ceil(T*rows/256), block 256
extern "C" __global__ void gemm_epilogue(const float* c, const float* up, int T, int rows, float* out, const float* bias, int accumulate) {
    pdl_entry();
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)T * rows) return;
    float v = c[i];
    if (up) {
        out[i] = v / (1.f + expf(-v)) * up[i];
        return;
    }
    if (bias) v += bias[i % rows];
    if (accumulate) v += out[i];
    out[i] = v;
}

// ---- prompt rows of quantized weights on the tensor cores, no F16 copy ----
//
// gemmq_<t>: c[t, r] = Σ_k xh[t, k]·W[r, k] for the T valid rows of an F16
// tile of prompt rows xh [·, cols] (to_f16_pad's output) and W in its GGUF
// encoding, c float32 [·, rows] (the layout gemm_epilogue reads). A block
// takes 64 tokens × 64 weight rows; per step of 64 columns it copies its
// tokens' F16 activations into shared memory and dequantizes its rows' two
// 32-element units there (unit_<t>, rounded to F16: the same operands as
// dequant_f16_<t> gives cuBLAS), then its 4 warps (2 × 2, a 32 × 32 tile
// each) run mma.m16n8k16 (F16 in, float32 accumulation) over the step's
// four 16-column slices, in order. Each output is thus the same chain of
// instructions whatever T or its token's place in the tile: a prompt row's
// result does not depend on how the prompt was chunked or batched.
// Shared rows are 72 halves (64 + 8) so that the fragment loads of a warp
// fall in distinct banks.                  grid (ceil(rows/64), ceil(T/64)), block 128
#define GQ_TILE 64
#define GQ_LD 72
template <void (*UNIT)(const uchar*, int, float*)>
__device__ __forceinline__ void gemmq_impl(const ushort* xh, const uchar* W, long row_bytes, int rows, int cols, int T, float* c) {
    __shared__ u4 xs4[GQ_TILE * GQ_LD / 8], ws4[GQ_TILE * GQ_LD / 8]; // 16-byte aligned
    ushort* xs = (ushort*)xs4;
    ushort* ws = (ushort*)ws4;
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    int g = lane >> 2, q = lane & 3;
    int n0 = blockIdx.x * GQ_TILE, t0 = blockIdx.y * GQ_TILE;
    int wm = (warp >> 1) * 32, wn = (warp & 1) * 32; // the warp's tokens and rows in the block's tile
    int units = cols >> 5;
    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.f;
    for (int k0 = 0; k0 < cols; k0 += 64) {
        // Activations: 64 tokens × 64 columns, 16 bytes a piece (8 halves),
        // 512 pieces, 4 a thread; zeros past T or cols.
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int p = tid + 128 * i, t = p >> 3, col = k0 + 8 * (p & 7);
            u4 v = u4{0u, 0u, 0u, 0u};
            if (t0 + t < T && col < cols) v = *(const u4*)(xh + (long)(t0 + t) * cols + col);
            *(u4*)(xs + t * GQ_LD + 8 * (p & 7)) = v;
        }
        // Weights: 64 rows × 2 units, a unit a thread, rounded to F16.
        {
            int r = tid >> 1, h = tid & 1, u = (k0 >> 5) + h;
            float w[32];
            if (n0 + r < rows && u < units) UNIT(W + (long)(n0 + r) * row_bytes, u, w);
            else {
#pragma unroll
                for (int i = 0; i < 32; i++) w[i] = 0.f;
            }
            uint* dst = (uint*)(ws + r * GQ_LD + 32 * h);
#pragma unroll
            for (int i = 0; i < 16; i++) dst[i] = pack_h2(w[2 * i], w[2 * i + 1]);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < 64; kk += 16) {
            uint a[2][4], bf[4][2];
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const ushort* xa = xs + (wm + 16 * i + g) * GQ_LD + kk + 2 * q;
                a[i][0] = *(const uint*)xa;
                a[i][1] = *(const uint*)(xa + 8 * GQ_LD);
                a[i][2] = *(const uint*)(xa + 8);
                a[i][3] = *(const uint*)(xa + 8 * GQ_LD + 8);
            }
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const ushort* wb = ws + (wn + 8 * j + g) * GQ_LD + kk + 2 * q;
                bf[j][0] = *(const uint*)wb;
                bf[j][1] = *(const uint*)(wb + 8);
            }
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) mma_16816(acc[i][j], a[i], bf[j][0], bf[j][1]);
        }
        __syncthreads();
    }
    // C fragment: rows g, g+8 of the 16-token slice × columns 2q, 2q+1 of
    // the 8-row slice.
#pragma unroll
    for (int i = 0; i < 2; i++) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int r = n0 + wn + 8 * j + 2 * q;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int t = t0 + wm + 16 * i + g + (e >= 2 ? 8 : 0), rr = r + (e & 1);
                if (t < T && rr < rows) c[(long)t * rows + rr] = acc[i][j][e];
            }
        }
    }
}

#define INSTANTIATE_GEMMQ(NAME) \
    extern "C" __global__ void __launch_bounds__(128) gemmq_##NAME(const ushort* xh, const uchar* W, long row_bytes, int rows, int cols, int T, float* c) { pdl_entry(); \
        gemmq_impl<unit_##NAME>(xh, W, row_bytes, rows, cols, T, c); \
    }

INSTANTIATE_GEMMQ(q4_0)
INSTANTIATE_GEMMQ(q4_1)
INSTANTIATE_GEMMQ(q5_0)
INSTANTIATE_GEMMQ(q5_1)
INSTANTIATE_GEMMQ(q8_0)
INSTANTIATE_GEMMQ(q4_k)
INSTANTIATE_GEMMQ(q5_k)
INSTANTIATE_GEMMQ(q6_k)

#define INSTANTIATE(NAME)                                                                                   \
    extern "C" __global__ void embed_##NAME(const uchar* W, long row_bytes, const int* ids, float* x, int cols) { pdl_entry(); \
        embed_impl<deq_##NAME>(W, row_bytes, ids, x, cols);                                                 \
    }                                                                                                       \
    extern "C" __global__ void mmu_##NAME(MMArgs a) { pdl_entry(); mmu_kernel<unit_##NAME>(a); }                         \
    extern "C" __global__ void mme_##NAME(MMArgs a) { pdl_entry(); mme_kernel<mme_rows<deq_##NAME>>(a); }               \
    extern "C" __global__ void dequant_f16_##NAME(const uchar* W, long row_bytes, int rows, int cols, ushort* out) { pdl_entry(); \
        dequant_f16_impl<unit_##NAME>(W, row_bytes, rows, cols, out);                                       \
    }

INSTANTIATE(f32)
INSTANTIATE(f16)
INSTANTIATE(bf16)
INSTANTIATE(q4_0)
INSTANTIATE(q4_1)
INSTANTIATE(q5_0)
INSTANTIATE(q5_1)
INSTANTIATE(q8_0)
INSTANTIATE(q4_k)
INSTANTIATE(q5_k)
INSTANTIATE(q6_k)
