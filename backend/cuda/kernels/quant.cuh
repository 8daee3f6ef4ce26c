// quant.cuh — dequantization of the GGUF block formats (ggml layouts).
//
// Math: element i of a row depends only on its block. deq_<type>(row, i)
// returns element i (element-wise users: embed_, mme_); unit_<type>(row, u,
// w) writes the 32 elements of unit u (elements 32u … 32u+31) into w with
// the widest loads the block layout allows (mmu_, mmt_, dequant_f16_).
//
// Layout: a row is cols/block_size blocks: F32 4 bytes and F16/BF16 2 bytes
// an element; per 32 elements Q4_0 18 bytes, Q4_1 20, Q5_0 22, Q5_1 24,
// Q8_0 34; per 256 elements Q4_K 144, Q5_K 176, Q6_K 210 (fields at each
// function). The unit functions need a row aligned to 16 bytes for F32,
// F16, BF16, Q4_K and Q5_K, 4 for Q5_1, 2 for the others (checked when a
// model is loaded: backend/cuda loadAlign).

// ---- element dequantization: value of element i of a row ----

__device__ __forceinline__ float deq_f32(const uchar* row, int i) { return ((const float*)row)[i]; }
__device__ __forceinline__ float deq_f16(const uchar* row, int i) { return h2f(((const ushort*)row)[i]); }
__device__ __forceinline__ float deq_bf16(const uchar* row, int i) {
    return __uint_as_float(((uint)((const ushort*)row)[i]) << 16);
}
// Q4_0: 18 bytes per 32: d f16, qs[16] (low nibbles: 0..15, high: 16..31); x = (q-8)*d
__device__ __forceinline__ float deq_q4_0(const uchar* row, int i) {
    const uchar* b = row + (i >> 5) * 18;
    int j = i & 31;
    int q = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
    return (q - 8) * ld_h(b);
}
// Q4_1: 20 bytes: d, m f16, qs[16]; x = q*d + m
__device__ __forceinline__ float deq_q4_1(const uchar* row, int i) {
    const uchar* b = row + (i >> 5) * 20;
    int j = i & 31;
    int q = j < 16 ? (b[4 + j] & 15) : (b[4 + j - 16] >> 4);
    return q * ld_h(b) + ld_h(b + 2);
}
// Q5_0: 22 bytes: d f16, qh u32 (5th bits), qs[16]; x = (q-16)*d
__device__ __forceinline__ float deq_q5_0(const uchar* row, int i) {
    const uchar* b = row + (i >> 5) * 22;
    int j = i & 31;
    uint qh = ld_u32(b + 2);
    int q = j < 16 ? ((b[6 + j] & 15) | (((qh >> j) << 4) & 16)) : ((b[6 + j - 16] >> 4) | ((qh >> (j - 16 + 12)) & 16));
    return (q - 16) * ld_h(b);
}
// Q5_1: 24 bytes: d, m f16, qh u32, qs[16]; x = q*d + m
__device__ __forceinline__ float deq_q5_1(const uchar* row, int i) {
    const uchar* b = row + (i >> 5) * 24;
    int j = i & 31;
    uint qh = ld_u32(b + 4);
    int q = j < 16 ? ((b[8 + j] & 15) | (((qh >> j) << 4) & 16)) : ((b[8 + j - 16] >> 4) | ((qh >> (j - 16 + 12)) & 16));
    return q * ld_h(b) + ld_h(b + 2);
}
// Q8_0: 34 bytes: d f16, qs[32] int8; x = q*d
__device__ __forceinline__ float deq_q8_0(const uchar* row, int i) {
    const uchar* b = row + (i >> 5) * 34;
    return (float)(signed char)b[2 + (i & 31)] * ld_h(b);
}
// K-quant 6-bit scale and min of sub-block j from the 12 packed bytes.
__device__ __forceinline__ void scale_min_k4(int j, const uchar* q, int* sc, int* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}
// Q4_K: 144 bytes per 256: d, dmin f16, scales[12], qs[128]; 64-element groups use the
// low then high nibbles of 32 bytes; x = d*sc*q - dmin*m
__device__ __forceinline__ float deq_q4_k(const uchar* row, int i) {
    const uchar* b = row + (i >> 8) * 144;
    int j = i & 255, g = j >> 6, hi = (j >> 5) & 1, l = j & 31;
    int sc, m;
    scale_min_k4(2 * g + hi, b + 4, &sc, &m);
    int q = (b[16 + 32 * g + l] >> (4 * hi)) & 15;
    return ld_h(b) * sc * q - ld_h(b + 2) * m;
}
// Q5_K: 176 bytes: d, dmin f16, scales[12], qh[32], qs[128]; q gets bit (2g+hi) of qh[l] as 16
__device__ __forceinline__ float deq_q5_k(const uchar* row, int i) {
    const uchar* b = row + (i >> 8) * 176;
    int j = i & 255, g = j >> 6, hi = (j >> 5) & 1, l = j & 31;
    int sc, m;
    scale_min_k4(2 * g + hi, b + 4, &sc, &m);
    int q = ((b[48 + 32 * g + l] >> (4 * hi)) & 15) + (((b[16 + l] >> (2 * g + hi)) & 1) << 4);
    return ld_h(b) * sc * q - ld_h(b + 2) * m;
}
// Q6_K: 210 bytes: ql[128], qh[64], scales[16] int8, d f16; x = d*sc*(q-32)
__device__ __forceinline__ float deq_q6_k(const uchar* row, int i) {
    const uchar* b = row + (i >> 8) * 210;
    int j = i & 255, n = j >> 7, r = j & 127, quarter = r >> 5, l = r & 31;
    const uchar* ql = b + 64 * n;
    const uchar* qh = b + 128 + 32 * n;
    const signed char* sc = (const signed char*)(b + 192) + 8 * n;
    int is = l >> 4;
    int q;
    switch (quarter) {
    case 0: q = (ql[l] & 15) | ((qh[l] & 3) << 4); break;
    case 1: q = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4); break;
    case 2: q = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4); break;
    default: q = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4); break;
    }
    return ld_h(b + 208) * (float)sc[is + 2 * quarter] * (float)(q - 32);
}

// ---- 32-element units: unit u of a row dequantized into w[0..31] ----
// Every row length is a multiple of 32, and for each type a unit's bytes
// are found without reference to other units. Quant bytes are read with
// aligned 4-byte loads (ld_words: blocks of 18, 22, 34 or 210 bytes start
// only 2-byte aligned), wider ones where the layout allows. ld_words may
// read 2 bytes before a unit's bytes: the block's own, or the end of the
// row before (checkAlign wants every tensor to start 4-byte aligned).

__device__ __forceinline__ void unit_f32(const uchar* row, int u, float* w) {
    const f4* p = (const f4*)(row + 128 * u);
#pragma unroll
    for (int k = 0; k < 8; k++) { f4 v = p[k]; w[4*k] = v.x; w[4*k+1] = v.y; w[4*k+2] = v.z; w[4*k+3] = v.w; }
}
__device__ __forceinline__ void unit_f16(const uchar* row, int u, float* w) {
    const u4* p = (const u4*)(row + 64 * u);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        u4 v = p[k];
        uint a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; j++) { w[8*k+2*j] = h2f((ushort)(a[j] & 0xffff)); w[8*k+2*j+1] = h2f((ushort)(a[j] >> 16)); }
    }
}
__device__ __forceinline__ void unit_bf16(const uchar* row, int u, float* w) {
    const u4* p = (const u4*)(row + 64 * u);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        u4 v = p[k];
        uint a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; j++) { w[8*k+2*j] = __uint_as_float(a[j] << 16); w[8*k+2*j+1] = __uint_as_float(a[j] & 0xffff0000u); }
    }
}
// N little-endian words holding bytes p … p+4N−1 (p 2-byte aligned), from
// aligned loads: N 4-byte loads when p is 4-byte aligned; else the N words
// from p−2 on and a 2-byte load of the last two bytes, each output word
// joining two halves. Nothing outside p−2 … p+4N−1 is read (p−2 … p−1: the
// unit's own block, or for Q6_K's first unit of a row the end of the row
// before; never before the tensor, which starts 4-byte aligned).
template <int N>
__device__ __forceinline__ void ld_words(const uchar* p, uint* out) {
    bool odd = ((unsigned long long)p & 2) != 0;
    const uint* a = (const uint*)(p - (odd ? 2 : 0));
    uint w[N + 1];
#pragma unroll
    for (int i = 0; i < N; i++) w[i] = a[i];
    w[N] = odd ? (uint)*(const ushort*)(p + 4 * N - 2) : 0u;
#pragma unroll
    for (int i = 0; i < N; i++) out[i] = odd ? (w[i] >> 16) | (w[i + 1] << 16) : w[i];
}
// Byte j of a word array.
__device__ __forceinline__ uint byte_of(const uint* x, int j) { return (x[j >> 2] >> (8 * (j & 3))) & 0xffu; }

__device__ __forceinline__ void unit_q4_0(const uchar* row, int u, float* w) {
    const uchar* b = row + 18 * u;
    float d = ld_h(b);
    uint x[4];
    ld_words<4>(b + 2, x);
#pragma unroll
    for (int j = 0; j < 16; j++) { uint q = byte_of(x, j); w[j] = ((int)(q & 15) - 8) * d; w[j + 16] = ((int)(q >> 4) - 8) * d; }
}
__device__ __forceinline__ void unit_q4_1(const uchar* row, int u, float* w) {
    const uchar* b = row + 20 * u;
    float d = ld_h(b), m = ld_h(b + 2);
    uint x[4];
    ld_words<4>(b + 4, x);
#pragma unroll
    for (int j = 0; j < 16; j++) { uint q = byte_of(x, j); w[j] = (q & 15) * d + m; w[j + 16] = (q >> 4) * d + m; }
}
__device__ __forceinline__ void unit_q5_0(const uchar* row, int u, float* w) {
    const uchar* b = row + 22 * u;
    float d = ld_h(b);
    uint x[5]; // qh, then the 16 quant bytes
    ld_words<5>(b + 2, x);
    uint qh = x[0];
#pragma unroll
    for (int j = 0; j < 16; j++) {
        uint q = byte_of(x + 1, j);
        w[j] = ((int)((q & 15) | (((qh >> j) << 4) & 16)) - 16) * d;
        w[j + 16] = ((int)((q >> 4) | ((qh >> (j + 12)) & 16)) - 16) * d;
    }
}
__device__ __forceinline__ void unit_q5_1(const uchar* row, int u, float* w) {
    const uchar* b = row + 24 * u;
    float d = ld_h(b), m = ld_h(b + 2);
    uint x[5]; // qh, then the 16 quant bytes
    ld_words<5>(b + 4, x);
    uint qh = x[0];
#pragma unroll
    for (int j = 0; j < 16; j++) {
        uint q = byte_of(x + 1, j);
        w[j] = ((q & 15) | (((qh >> j) << 4) & 16)) * d + m;
        w[j + 16] = ((q >> 4) | ((qh >> (j + 12)) & 16)) * d + m;
    }
}
__device__ __forceinline__ void unit_q8_0(const uchar* row, int u, float* w) {
    const uchar* b = row + 34 * u;
    float d = ld_h(b);
    uint x[8];
    ld_words<8>(b + 2, x);
#pragma unroll
    for (int j = 0; j < 32; j++) w[j] = (float)(signed char)byte_of(x, j) * d;
}
__device__ __forceinline__ void unit_q4_k(const uchar* row, int u, float* w) {
    const uchar* b = row + 144 * (u >> 3);
    int j = u & 7, g = j >> 1, hi = j & 1;
    int sc, m;
    scale_min_k4(j, b + 4, &sc, &m);
    float d = ld_h(b) * sc, dm = ld_h(b + 2) * m;
    const u4* p = (const u4*)(b + 16 + 32 * g);
#pragma unroll
    for (int k = 0; k < 2; k++) {
        u4 v = p[k];
        uint a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 16; i++) {
            int q = (a[i >> 2] >> (8 * (i & 3) + 4 * hi)) & 15;
            w[16 * k + i] = d * q - dm;
        }
    }
}
__device__ __forceinline__ void unit_q5_k(const uchar* row, int u, float* w) {
    const uchar* b = row + 176 * (u >> 3);
    int j = u & 7, g = j >> 1, hi = j & 1;
    int sc, m;
    scale_min_k4(j, b + 4, &sc, &m);
    float d = ld_h(b) * sc, dm = ld_h(b + 2) * m;
    const u4* p = (const u4*)(b + 48 + 32 * g);
    const u4* h = (const u4*)(b + 16);
#pragma unroll
    for (int k = 0; k < 2; k++) {
        u4 v = p[k], hv = h[k];
        uint a[4] = {v.x, v.y, v.z, v.w};
        uint c[4] = {hv.x, hv.y, hv.z, hv.w};
#pragma unroll
        for (int i = 0; i < 16; i++) {
            int q = ((a[i >> 2] >> (8 * (i & 3) + 4 * hi)) & 15) + (((c[i >> 2] >> (8 * (i & 3) + j)) & 1) << 4);
            w[16 * k + i] = d * q - dm;
        }
    }
}
__device__ __forceinline__ void unit_q6_k(const uchar* row, int u, float* w) {
    const uchar* b = row + 210 * (u >> 3);
    int j = u & 7, n = j >> 2, quarter = j & 3;
    uint ql[8], qh[8];
    ld_words<8>(b + 64 * n + (quarter & 1) * 32, ql);
    ld_words<8>(b + 128 + 32 * n, qh);
    ushort scs = *(const ushort*)(b + 192 + 8 * n + 2 * quarter);
    float d = ld_h(b + 208);
    float d0 = d * (float)(signed char)(scs & 0xff), d1 = d * (float)(signed char)(scs >> 8);
    int lshift = (quarter >> 1) * 4, hshift = 2 * quarter;
#pragma unroll
    for (int l = 0; l < 32; l++) {
        int q = (int)((byte_of(ql, l) >> lshift) & 15) | (int)(((byte_of(qh, l) >> hshift) & 3) << 4);
        w[l] = (l < 16 ? d0 : d1) * (float)(q - 32);
    }
}
