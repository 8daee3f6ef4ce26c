// attention.cu — causal GQA attention over the KV cache, split over the
// positions (flash-decoding).
//
// Math: out[t, h] = softmax(q[t, h]·K[first..pos[t]]ᵀ·scale)·V[first..pos[t]]
// with K and V of KV head h/(n_head/n_kv) and first = pos[t]−window+1 with
// a sliding window (window > 0), else 0.
//
// Kernels and launch shapes (ATT_WARPS, MAX_HD and MAX_SPLITS are -D
// options from Go):
//   attention_split_<kv>  block (t, h, s) takes share s of the positions
//                    (min(nsplit, ceil(n/ATT_MIN_SPLIT)) shares for n positions);
//                    its ATT_WARPS warps walk them with an online softmax,
//                    ATT_UNROLL positions at a time, lane l holding head
//                    elements 4l … 4l+3 (hd a multiple of 4, ≤ MAX_HD), and
//                    the block writes a partial (max, sum, acc[hd])
//                    grid (T, n_head, nsplit), block 32·ATT_WARPS
//   attention_merge_f32   combines the nsplit (≤ MAX_SPLITS) partials of each
//                    (t, h), and an F16 copy in out16 when set   grid (T, n_head), block 128
//
// Layout: q [T, n_head·hd] float32; part [T, n_head, nsplit, hd+2] float32;
// kptr, vptr [T] pointers to [capacity, n_kv·hd] (float32 or F16); pos int [T];
// out [T, n_head·hd].

#ifndef ATT_WARPS
#error "ATT_WARPS is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif
#ifndef MAX_HD
#error "MAX_HD is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif
#ifndef MAX_SPLITS
#error "MAX_SPLITS is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif

// Four head elements from a K or V row at p (p 4-element aligned).
__device__ __forceinline__ f4 kv_ld4(const float* p) { return *(const f4*)p; }
__device__ __forceinline__ f4 kv_ld4(const ushort* p) {
    u2 r = *(const u2*)p;
    return f4{h2f((ushort)(r.x & 0xffffu)), h2f((ushort)(r.x >> 16)), h2f((ushort)(r.y & 0xffffu)), h2f((ushort)(r.y >> 16))};
}

// ATT_UNROLL is how many positions a warp loads before it uses any (memory
// requests in flight: a decode row's split holds few positions).
#define ATT_UNROLL 4
// ATT_MIN_SPLIT is the fewest positions a split of a row takes: short
// contexts use fewer, fuller blocks (the rest of the grid exits at once).
#define ATT_MIN_SPLIT 64

// Attention, split over the sequence (flash-decoding): block (t, h, split)
// takes a contiguous share of the positions first..pos[t] (the shares are
// computed here from pos: min(nsplit, ceil(n/ATT_MIN_SPLIT)) of them for n
// positions, so a captured graph serves every step). Each of
// its ATT_WARPS warps walks positions lo+warp, lo+warp+ATT_WARPS, … with an
// online softmax, ATT_UNROLL positions at a time (their K and V rows loaded
// together, then folded in position order); lane l holds head elements
// 4l … 4l+3 (one 16- or 8-byte load a row; lanes past hd/4 idle). The block
// merges its warps and writes a partial (max, sum, acc[hd]) that
// attention_merge_f32 combines across splits. A row's result depends on its
// own q, positions and cache only (never on the other rows of the launch).
template <typename KT>
__device__ __forceinline__ void attention_split(const float* q, float* part, const u64* kptr, const u64* vptr, const int* pos,
                                                int n_head, int n_kv, int hd, int window, float scale, int nsplit) {
    __shared__ float wm[ATT_WARPS], ws[ATT_WARPS];
    __shared__ float wacc[ATT_WARPS][MAX_HD];
    int t = blockIdx.x, h = blockIdx.y, split = blockIdx.z;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int kvh = h / (n_head / n_kv);
    int kvd = n_kv * hd;
    const KT* K = (const KT*)kptr[t] + kvh * hd + 4 * lane;
    const KT* V = (const KT*)vptr[t] + kvh * hd + 4 * lane;
    const float* qr = q + ((long)t * n_head + h) * hd;
    int last = pos[t];
    int first = window > 0 ? max(0, last - window + 1) : 0;
    int n = last + 1 - first;
    // This row's splits: nsplit, or fewer so that each takes at least
    // ATT_MIN_SPLIT positions (a function of the row's own position only).
    int ns = min(nsplit, (n + ATT_MIN_SPLIT - 1) / ATT_MIN_SPLIT);
    float* out = part + (((long)t * n_head + h) * nsplit + split) * (hd + 2);
    if (split >= ns) { // an empty partial: the merge skips a zero sum
        if (threadIdx.x == 0) { out[0] = NEG_INF; out[1] = 0.f; }
        return;
    }
    int per = (n + ns - 1) / ns;
    int lo = first + split * per, hi = min(last + 1, lo + per);
    bool act = 4 * lane < hd;
    f4 qv = {0.f, 0.f, 0.f, 0.f}, acc = {0.f, 0.f, 0.f, 0.f};
    if (act) {
        f4 x = *(const f4*)(qr + 4 * lane);
        qv = f4{x.x * scale, x.y * scale, x.z * scale, x.w * scale};
    }
    float m = NEG_INF, sum = 0.f;
    for (int p0 = lo + warp; p0 < hi; p0 += ATT_WARPS * ATT_UNROLL) {
        f4 kr[ATT_UNROLL], vr[ATT_UNROLL];
        float s[ATT_UNROLL];
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            int p = p0 + u * ATT_WARPS;
            if (act && p < hi) {
                kr[u] = kv_ld4(K + (long)p * kvd);
                vr[u] = kv_ld4(V + (long)p * kvd);
            } else {
                kr[u] = vr[u] = f4{0.f, 0.f, 0.f, 0.f};
            }
        }
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) s[u] = qv.x * kr[u].x + qv.y * kr[u].y + qv.z * kr[u].z + qv.w * kr[u].w;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
#pragma unroll
            for (int u = 0; u < ATT_UNROLL; u++) s[u] += __shfl_xor_sync(0xffffffffu, s[u], o);
        }
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            if (p0 + u * ATT_WARPS < hi) { // the same for every lane
                float mnew = fmaxf(m, s[u]);
                float corr = expf(m - mnew), w = expf(s[u] - mnew);
                sum = sum * corr + w;
                acc.x = acc.x * corr + w * vr[u].x;
                acc.y = acc.y * corr + w * vr[u].y;
                acc.z = acc.z * corr + w * vr[u].z;
                acc.w = acc.w * corr + w * vr[u].w;
                m = mnew;
            }
        }
    }
    if (lane == 0) { wm[warp] = m; ws[warp] = sum; }
    if (act) {
        wacc[warp][4 * lane] = acc.x;
        wacc[warp][4 * lane + 1] = acc.y;
        wacc[warp][4 * lane + 2] = acc.z;
        wacc[warp][4 * lane + 3] = acc.w;
    }
    __syncthreads();
    // Merge the warps: threads take head elements.
    float M = NEG_INF;
    for (int w = 0; w < ATT_WARPS; w++) M = fmaxf(M, wm[w]);
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float a = 0.f;
        for (int w = 0; w < ATT_WARPS; w++)
            if (ws[w] > 0.f) a += wacc[w][i] * expf(wm[w] - M);
        out[2 + i] = a;
    }
    if (threadIdx.x == 0) {
        float S = 0.f;
        for (int w = 0; w < ATT_WARPS; w++)
            if (ws[w] > 0.f) S += ws[w] * expf(wm[w] - M);
        out[0] = M;
        out[1] = S;
    }
}
extern "C" __global__ void attention_split_f32(const float* q, float* part, const u64* kptr, const u64* vptr, const int* pos,
                                               int n_head, int n_kv, int hd, int window, float scale, int nsplit) {
    attention_split<float>(q, part, kptr, vptr, pos, n_head, n_kv, hd, window, scale, nsplit);
}
extern "C" __global__ void attention_split_f16(const float* q, float* part, const u64* kptr, const u64* vptr, const int* pos,
                                               int n_head, int n_kv, int hd, int window, float scale, int nsplit) {
    attention_split<ushort>(q, part, kptr, vptr, pos, n_head, n_kv, hd, window, scale, nsplit);
}

// Combines the nsplit partials of each (t, h): out = Σ acc_s e^(m_s-M) / Σ sum_s e^(m_s-M).
extern "C" __global__ void attention_merge_f32(const float* part, float* out, int n_head, int hd, int nsplit, ushort* out16) {
    __shared__ float scale[MAX_SPLITS]; // e^(m_s - M) / S for each split
    int t = blockIdx.x, h = blockIdx.y;
    const float* pp = part + ((long)t * n_head + h) * nsplit * (hd + 2);
    if (threadIdx.x < 32) {
        int lane = threadIdx.x;
        float m = NEG_INF, s = 0.f;
        for (int sp = lane; sp < nsplit; sp += 32) {
            if (pp[sp * (hd + 2) + 1] > 0.f) m = fmaxf(m, pp[sp * (hd + 2)]);
        }
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        for (int sp = lane; sp < nsplit; sp += 32) {
            float ss = pp[sp * (hd + 2) + 1];
            if (ss > 0.f) s += ss * expf(pp[sp * (hd + 2)] - m);
        }
        s = warp_sum(s);
        for (int sp = lane; sp < nsplit; sp += 32) {
            float ss = pp[sp * (hd + 2) + 1];
            scale[sp] = ss > 0.f ? expf(pp[sp * (hd + 2)] - m) / s : 0.f;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float a = 0.f;
        for (int sp = 0; sp < nsplit; sp++)
            if (scale[sp] != 0.f) a += pp[sp * (hd + 2) + 2 + i] * scale[sp];
        out[((long)t * n_head + h) * hd + i] = a;
        if (out16) out16[((long)t * n_head + h) * hd + i] = f2h(a);
    }
}
