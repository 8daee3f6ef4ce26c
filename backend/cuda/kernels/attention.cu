// attention.cu — causal GQA attention over the KV cache, split over the
// positions (flash-decoding).
//
// Math: out[t, h] = softmax(q[t, h]·K[first..pos[t]]ᵀ·scale)·V[first..pos[t]]
// with K and V of KV head h/(n_head/n_kv) and first = pos[t]−window+1 with
// a sliding window (window > 0), else 0.
//
// Kernels and launch shapes (ATT_WARPS, MAX_HD, MAX_SPLITS and FA_WARPS are
// -D options from Go):
//   attention_split_<kv>  block (t, h, s) takes share s of the positions
//                    (min(nsplit, ceil(n/ATT_MIN_SPLIT)) shares for n positions);
//                    its ATT_WARPS warps walk them with an online softmax,
//                    ATT_UNROLL positions at a time, lane l holding head
//                    elements 4l … 4l+3 (hd a multiple of 4, ≤ MAX_HD), and
//                    the block writes a partial (max, sum, acc[hd])
//                    grid (T, n_head, nsplit), block 32·ATT_WARPS
//   attention_merge_f32   combines the nsplit (≤ MAX_SPLITS) partials of each
//                    (t, h), and an F16 copy in out16 when set   grid (T, n_head), block 128
//   attention_prompt_hd<HD>  prompt rows on the tensor cores (below), partials
//                    for attention_merge_f32 like attention_split's
//                    grid (ceil(T/(16·FA_WARPS)), n_head, nsplit), block 32·FA_WARPS
//
// Layout: q [T, n_head·hd] float32; part [T, n_head, nsplit, hd+2] float32;
// tabs [T] device pointers to each row's block table (the paged cache,
// float32 or F16: common.cuh) and layer the layer read; pos int [T]; out
// [T, n_head·hd].

#ifndef ATT_WARPS
#error "ATT_WARPS is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif
#ifndef MAX_HD
#error "MAX_HD is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif
#ifndef MAX_SPLITS
#error "MAX_SPLITS is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif
#ifndef FA_WARPS
#error "FA_WARPS is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
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

// row_share: share s of the positions of a row at position p (first =
// p−window+1 with a sliding window, else 0; n = p+1−first): the row takes
// ns = min(nsplit, ceil(n/min_split)) shares of ceil(n/ns) positions, a
// function of its own position only; [*lo, *hi) is share s, empty when
// s ≥ ns. Returns ns.
__device__ __forceinline__ int row_share(int p, int window, int s, int nsplit, int min_split, int* lo, int* hi) {
    int first = window > 0 ? max(0, p - window + 1) : 0;
    int n = p + 1 - first;
    int ns = min(nsplit, (n + min_split - 1) / min_split);
    int per = (n + ns - 1) / ns;
    *lo = first + s * per;
    *hi = s < ns ? min(p + 1, *lo + per) : *lo;
    return ns;
}

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
__device__ __forceinline__ void attention_split(const float* q, float* part, const u64* tabs, int layer, const int* pos,
                                                int n_head, int n_kv, int hd, int window, float scale, int nsplit) {
    __shared__ float wm[ATT_WARPS], ws[ATT_WARPS];
    __shared__ float wacc[ATT_WARPS][MAX_HD];
    int t = blockIdx.x, h = blockIdx.y, split = blockIdx.z;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int kvh = h / (n_head / n_kv);
    int kvd = n_kv * hd;
    const u64* tab = (const u64*)tabs[t];
    long off = kv_layer(tab, layer) + kvh * hd + 4 * lane; // this lane's elements in a block's K rows
    const float* qr = q + ((long)t * n_head + h) * hd;
    // This row's splits: nsplit, or fewer so that each takes at least
    // ATT_MIN_SPLIT positions (a function of the row's own position only).
    int lo, hi;
    int ns = row_share(pos[t], window, split, nsplit, ATT_MIN_SPLIT, &lo, &hi);
    float* out = part + (((long)t * n_head + h) * nsplit + split) * (hd + 2);
    if (split >= ns) { // an empty partial: the merge skips a zero sum
        if (threadIdx.x == 0) { out[0] = NEG_INF; out[1] = 0.f; }
        return;
    }
    bool act = 4 * lane < hd;
    f4 qv = {0.f, 0.f, 0.f, 0.f}, acc = {0.f, 0.f, 0.f, 0.f};
    if (act) {
        f4 x = *(const f4*)(qr + 4 * lane);
        qv = f4{x.x * scale, x.y * scale, x.z * scale, x.w * scale};
    }
    float m = NEG_INF, sum = 0.f;
    // Each position's block address comes from the lanes' window onto the
    // table (a shuffle; loading the entries a pass ahead instead was
    // slower: docs/perf.md step 23).
    int last = (hi - 1) >> KV_SHIFT; // the share's last block
    KvWindow win;
    kv_window_load(win, tab, lo >> KV_SHIFT, last);
    for (int p0 = lo + warp; p0 < hi; p0 += ATT_WARPS * ATT_UNROLL) {
        f4 kr[ATT_UNROLL], vr[ATT_UNROLL];
        float s[ATT_UNROLL];
        // This pass's positions lie within 32 blocks of p0's (warp-uniform).
        if ((min(p0 + (ATT_UNROLL - 1) * ATT_WARPS, hi - 1) >> KV_SHIFT) - win.base >= 32) kv_window_load(win, tab, p0 >> KV_SHIFT, last);
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            int p = p0 + u * ATT_WARPS;
            u64 blk = kv_window_get(win, min(p, hi - 1) >> KV_SHIFT);
            if (act && p < hi) {
                const KT* kp = (const KT*)blk + off + (long)(p & (KV_BLOCK - 1)) * kvd;
                kr[u] = kv_ld4(kp);
                vr[u] = kv_ld4(kp + KV_BLOCK * kvd);
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
extern "C" __global__ void attention_split_f32(const float* q, float* part, const u64* tabs, int layer, const int* pos,
                                               int n_head, int n_kv, int hd, int window, float scale, int nsplit) {
    pdl_entry();
    attention_split<float>(q, part, tabs, layer, pos, n_head, n_kv, hd, window, scale, nsplit);
}
extern "C" __global__ void attention_split_f16(const float* q, float* part, const u64* tabs, int layer, const int* pos,
                                               int n_head, int n_kv, int hd, int window, float scale, int nsplit) {
    pdl_entry();
    attention_split<ushort>(q, part, tabs, layer, pos, n_head, n_kv, hd, window, scale, nsplit);
}

// Combines the nsplit partials of each (t, h): out = Σ acc_s e^(m_s-M) / Σ sum_s e^(m_s-M).
extern "C" __global__ void attention_merge_f32(const float* part, float* out, int n_head, int hd, int nsplit, ushort* out16) {
    pdl_entry();
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

// ---- prompt rows: flash attention on the tensor cores (F16 cache, sm_80+) ----
//
// attention_prompt_hd<HD> (HD = 64, 96, 128): the same partials as
// attention_split for a run of prompt rows (attention_merge_f32 combines
// them), with the products on the tensor cores. A row of n positions
// first..pos takes ns = min(nsplit, ceil(n/FA_MIN_SPLIT)) contiguous shares
// of them (a function of its own position only; shares past ns are empty
// partials), so that a few rows over a long cache (a prompt's suffix after a
// cached prefix) still fill the card. Block (x, h, s): FA_WARPS warps, each
// 16 consecutive rows of head h and their share s. A warp walks the
// positions in tiles of 16 aligned at multiples of 16 (k0 = 0, 16, 32, …):
// S = Q·Kᵀ by mma.m16n8k16 (Q rounded to F16, K from the cache, float32
// accumulation), scaled, masked to each row's share, an online softmax in
// float32 (running max m and sum l a row, the output rescaled by
// e^(m_old − m_new)), then O += P·V by mma with P rounded to F16 and V staged
// in shared memory (ldmatrix.trans gives the B fragments); it writes the
// partial (m, l, O) of each of its rows.
//
// A row's partials depend only on its own q, position, window and cache:
// rows do not interact inside an mma, its row max and sum come from the
// four lanes holding it in a fixed order, and a tile outside its share is an
// exact no-op for it (scores −inf: P = 0, rescale 1). So they are the same
// whatever rows share its warp, however a prompt is chunked or batched —
// as long as the V rows its warp reads are finite (0·Inf is NaN: a V
// element that overflowed F16 in another row's positions would reach it).
// Rows of different sequences in one warp (different block tables) are
// taken in passes, one sequence at a time.
//
// Fragments (lane = 4g + c): Q's A operand holds rows g and g+8; its k
// slots {2c, 2c+1, 2c+8, 2c+9} of step kk stand for head elements
// 16kk+4c … 16kk+4c+3, and K's B operand (position k0+8j+g) the same
// elements: one 8-byte load a K row. S's C fragment (rows g, g+8; positions
// k0+8j+2c, +1) is P's A fragment as it stands.
//   grid (ceil(T/(16·FA_WARPS)), n_head, nsplit), block 32·FA_WARPS,
//   static shared FA_WARPS·16·(HD+8)·2 bytes (a warp's V tile, rows padded
//   by 16 bytes against bank conflicts)
static_assert(32 * FA_WARPS == 128, "attention_prompt's __launch_bounds__(128) assumes FA_WARPS = 4");
// FA_MIN_SPLIT is the fewest positions a share of a prompt row takes.
#define FA_MIN_SPLIT 256

// Four 8×8 F16 matrices from shared memory, transposed (B fragments of mma).
__device__ __forceinline__ void ldsm_x4_trans(uint* r, const ushort* p) {
#if __CUDA_ARCH__ >= 800
    uint a;
    asm volatile("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    asm volatile("{ ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4]; }"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a) : "memory");
#endif
}

__device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

template <int HD>
__device__ __forceinline__ void attention_prompt(const float* q, float* part, const u64* tabs, int layer, const int* pos,
                                                 int T, int n_head, int n_kv, int window, float scale, int nsplit) {
    const int VS = HD + 8; // shared row stride, elements
    __shared__ u4 vs_all[FA_WARPS * 16 * (HD + 8) / 8]; // 16-byte aligned
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    int h = blockIdx.y, split = blockIdx.z, kvh = h / (n_head / n_kv), kvd = n_kv * HD;
    int r0 = (blockIdx.x * FA_WARPS + warp) * 16;
    if (r0 >= T) return; // no block-wide barriers below
    ushort* vs = (ushort*)vs_all + warp * 16 * VS;
    int ra = r0 + g, rb = r0 + g + 8;
    bool va = ra < T, vb = rb < T;
    int la = 0, ha = -1, lb = 0, hb = -1; // this split's positions la … ha of row ra, lb … hb of rb
    if (va) { row_share(pos[ra], window, split, nsplit, FA_MIN_SPLIT, &la, &ha); ha--; }
    if (vb) { row_share(pos[rb], window, split, nsplit, FA_MIN_SPLIT, &lb, &hb); hb--; }
    u64 ka = va ? tabs[ra] : 0, kb = vb ? tabs[rb] : 0; // the rows' block tables
    // Q as A fragments (see the slot mapping above).
    uint qf[HD / 16][4];
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        f4 xa = va ? *(const f4*)(q + ((long)ra * n_head + h) * HD + 16 * kk + 4 * c) : f4{0.f, 0.f, 0.f, 0.f};
        f4 xb = vb ? *(const f4*)(q + ((long)rb * n_head + h) * HD + 16 * kk + 4 * c) : f4{0.f, 0.f, 0.f, 0.f};
        qf[kk][0] = pack_h2(xa.x, xa.y);
        qf[kk][1] = pack_h2(xb.x, xb.y);
        qf[kk][2] = pack_h2(xa.z, xa.w);
        qf[kk][3] = pack_h2(xb.z, xb.w);
    }
    bool done_a = !va, done_b = !vb;
    for (;;) {
        // This pass's sequence: that of the warp's first row not yet done.
        int first_row = !done_a ? g : (!done_b ? g + 8 : 32);
        for (int o = 16; o > 0; o >>= 1) first_row = min(first_row, __shfl_xor_sync(0xffffffffu, first_row, o));
        if (first_row == 32) break;
        int src = 4 * (first_row & 7);
        u64 mine = first_row < 8 ? ka : kb;
        uint klo = __shfl_sync(0xffffffffu, (uint)mine, src), khi = __shfl_sync(0xffffffffu, (uint)(mine >> 32), src);
        u64 key = ((u64)khi << 32) | klo;
        const u64* tab = (const u64*)key; // the pass's sequence's block table
        long koff = kv_layer(tab, layer) + kvh * HD;
        bool act_a = !done_a && ka == key, act_b = !done_b && kb == key;
        // The pass's positions: the active rows' shares, in aligned tiles.
        int lo = min(act_a && la <= ha ? la : 0x7fffffff, act_b && lb <= hb ? lb : 0x7fffffff);
        int hi = max(act_a && la <= ha ? ha : -1, act_b && lb <= hb ? hb : -1); // ≤ the rows' positions: written cache
        for (int o = 16; o > 0; o >>= 1) {
            lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
            hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
        }
        lo &= ~15;
        float m_a = NEG_INF, m_b = NEG_INF, l_a = 0.f, l_b = 0.f;
        float o_acc[HD / 8][4];
#pragma unroll
        for (int n = 0; n < HD / 8; n++) o_acc[n][0] = o_acc[n][1] = o_acc[n][2] = o_acc[n][3] = 0.f;
        KvWindow win;
        kv_window_load(win, tab, lo >> KV_SHIFT, hi >> KV_SHIFT);
        for (int k0 = lo; k0 <= hi; k0 += 16) {
            // The tile's 16 positions are one block of the cache (KV_BLOCK
            // = 16, k0 a multiple of 16): K rows from K, V rows from V.
            if ((k0 >> KV_SHIFT) - win.base >= 32) kv_window_load(win, tab, k0 >> KV_SHIFT, hi >> KV_SHIFT);
            const ushort* K = (const ushort*)kv_window_get(win, k0 >> KV_SHIFT) + koff;
            const ushort* V = K + KV_BLOCK * kvd;
            // S for positions k0 … k0+15 (n-tile j: k0+8j …; this lane's K row k0+8j+g).
            float s[2][4];
#pragma unroll
            for (int j = 0; j < 2; j++) {
                s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
                int p = k0 + 8 * j + g;
                const ushort* kr = K + (long)(min(p, hi) - k0) * kvd + 4 * c;
#pragma unroll
                for (int kk = 0; kk < HD / 16; kk++) {
                    u2 kv = p <= hi ? *(const u2*)(kr + 16 * kk) : u2{0u, 0u};
                    mma_16816(s[j], qf[kk], kv.x, kv.y);
                }
            }
            // Scale and mask: element e of s[j] is row g (e < 2) or g+8, position k0+8j+2c+(e&1).
            float mxa = NEG_INF, mxb = NEG_INF;
#pragma unroll
            for (int j = 0; j < 2; j++) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    int p = k0 + 8 * j + 2 * c + e;
                    s[j][e] = act_a && p >= la && p <= ha ? s[j][e] * scale : NEG_INF;
                    s[j][2 + e] = act_b && p >= lb && p <= hb ? s[j][2 + e] * scale : NEG_INF;
                    mxa = fmaxf(mxa, s[j][e]);
                    mxb = fmaxf(mxb, s[j][2 + e]);
                }
            }
            float na = fmaxf(m_a, quad_max(mxa)), nb = fmaxf(m_b, quad_max(mxb));
            // Nothing seen yet (na = −inf): P = 0 and nothing to rescale.
            float ca = na == NEG_INF ? 1.f : expf(m_a - na), cb = nb == NEG_INF ? 1.f : expf(m_b - nb);
            float sa = 0.f, sb = 0.f;
#pragma unroll
            for (int j = 0; j < 2; j++) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    s[j][e] = na == NEG_INF ? 0.f : expf(s[j][e] - na);
                    s[j][2 + e] = nb == NEG_INF ? 0.f : expf(s[j][2 + e] - nb);
                    sa += s[j][e];
                    sb += s[j][2 + e];
                }
            }
            l_a = l_a * ca + sa;
            l_b = l_b * cb + sb;
            m_a = na;
            m_b = nb;
            uint pf[4] = {pack_h2(s[0][0], s[0][1]), pack_h2(s[0][2], s[0][3]), pack_h2(s[1][0], s[1][1]), pack_h2(s[1][2], s[1][3])};
            // V rows k0 … k0+15 into shared (zeros past hi), 16-byte pieces.
            __syncwarp();
            for (int i = lane; i < 2 * HD; i += 32) {
                int pp = i / (HD / 8), piece = i % (HD / 8), p = k0 + pp;
                u4 v = p <= hi ? *(const u4*)(V + (long)pp * kvd + 8 * piece) : u4{0u, 0u, 0u, 0u};
                *(u4*)(vs + pp * VS + 8 * piece) = v;
            }
            __syncwarp();
#pragma unroll
            for (int n = 0; n < HD / 8; n += 2) {
                o_acc[n][0] *= ca; o_acc[n][1] *= ca; o_acc[n][2] *= cb; o_acc[n][3] *= cb;
                o_acc[n + 1][0] *= ca; o_acc[n + 1][1] *= ca; o_acc[n + 1][2] *= cb; o_acc[n + 1][3] *= cb;
                uint bf[4];
                ldsm_x4_trans(bf, vs + ((lane & 7) + 8 * ((lane >> 3) & 1)) * VS + 8 * (n + (lane >> 4)));
                mma_16816(o_acc[n], pf, bf[0], bf[1]);
                mma_16816(o_acc[n + 1], pf, bf[2], bf[3]);
            }
        }
        // The pass's rows' partials (m, l, O): row g holds elements 8n+2c, +1
        // in o_acc[n][0..1], row g+8 in [2..3]. An empty share: (−inf, 0)
        // only (the merge skips a zero sum without reading O).
        l_a = quad_sum(l_a);
        l_b = quad_sum(l_b);
        float* pa = part + (((long)ra * n_head + h) * nsplit + split) * (HD + 2);
        float* pb = part + (((long)rb * n_head + h) * nsplit + split) * (HD + 2);
        if (c == 0) {
            if (act_a) { pa[0] = m_a; pa[1] = l_a; }
            if (act_b) { pb[0] = m_b; pb[1] = l_b; }
        }
        bool wa = act_a && la <= ha, wb = act_b && lb <= hb;
#pragma unroll
        for (int n = 0; n < HD / 8; n++) {
            int d = 8 * n + 2 * c;
            if (wa) { pa[2 + d] = o_acc[n][0]; pa[3 + d] = o_acc[n][1]; }
            if (wb) { pb[2 + d] = o_acc[n][2]; pb[3 + d] = o_acc[n][3]; }
        }
        done_a = done_a || act_a;
        done_b = done_b || act_b;
    }
}

// 128 threads: FA_WARPS warps.
#define INSTANTIATE_PROMPT(NAME) \
    extern "C" __global__ void __launch_bounds__(128) attention_prompt_hd##NAME(const float* q, float* part, const u64* tabs, int layer, \
                                                                            const int* pos, int T, int n_head, int n_kv, int window, \
                                                                            float scale, int nsplit) { pdl_entry(); \
        attention_prompt<NAME>(q, part, tabs, layer, pos, T, n_head, n_kv, window, scale, nsplit); \
    }
INSTANTIATE_PROMPT(64)
INSTANTIATE_PROMPT(96)
INSTANTIATE_PROMPT(128)
