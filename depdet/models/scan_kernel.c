/*
 * CPU selective-scan kernel for depdet (forward and backward), compiled at first use by
 * depdet/models/scan_kernel.py with the system C compiler and loaded through ctypes.
 * The library also holds Mamba's depthwise causal conv with SiLU fused (depdet_conv_*, at the end).
 *
 * The recurrence is the plain sequential one of Mamba (selective_scan_ref in mamba.py):
 *     h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t,
 *     y_t = (sum_n C_t[n] h_t[n] + D u_t) * silu(z_t)
 * per (batch b, channel d), with h_{-1} = 0; the skip D and the gate z are fused (optional), and so
 * are the step-size preparation delta = mask ? softplus(delta_raw + delta_bias) : 0 (each part
 * optional; softplus as PyTorch's, threshold 20, vectorised: one pass over the row before the scan)
 * and a per-sample reversed span: with lengths[b] = n, scan step s reads time row pos(s) = n-1-s
 * for s < n and s otherwise (each sample's first n rows backwards, then the rest in order; the
 * bidirectional blocks' backward direction, without flipping any tensor), and writes y there.
 * Work is split over channels between POSIX threads (no OpenMP: PyTorch ships its own
 * OpenMP runtime and two in one process do not mix well). The inner loop over the d_state states
 * is written with GCC/Clang vector extensions, one block of NB states per vector (no -ffast-math:
 * that would set flush-to-zero for the whole process); exp() is a vector polynomial (~1 ulp).
 *
 * Layouts (all float32): u, delta, z, y, gy, gu, gdelta, gz are indexed [b, d, t] with strides
 * given by the caller (e.g. (B, D, L) contiguous, or time-major (B, L, D) as nn.Linear gives and
 * takes them: no layout copies); the rows of a tile of TILE channels are gathered into contiguous
 * scratch rows in scan order, scanned, and scattered back. C-contiguous: A, gA : (D, N)   Dp, gD, dbias, gdbias : (D,)
 *   Bt, Ct, gB, gC : (B, L, N)   hlast, glast : (B, D, N)   mask : (B, L) uint8   lengths : (B,) int64
 * with N the padded d_state (a multiple of NB = 16).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DEPDET_SCAN_ABI 7

int depdet_scan_abi(void) { return DEPDET_SCAN_ABI; }

/* States are processed in blocks of NB (the caller pads d_state to a multiple of NB with zero
 * A, B and C, which leaves the padded states at 0): one block is one vector. */
#define NB 16

typedef float vf __attribute__((vector_size(4 * NB)));
typedef int32_t vi __attribute__((vector_size(4 * NB)));

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vbroadcast(float x) { vf v = {0}; return v + x; }

/* exp(x) per lane: x clamped to [-87.3, 88], x = k ln2 + r with |r| <= ln2/2, Cephes' degree-6
 * polynomial for exp(r) (~1 ulp), 2^k through the exponent bits (k >= -126: no denormals). */
static inline vf vexp(vf x) {
    vi lo = x < -87.33654f, hi = x > 88.0f;
    x = (vf)(((vi)x & ~lo) | ((vi)vbroadcast(-87.33654f) & lo));
    x = (vf)(((vi)x & ~hi) | ((vi)vbroadcast(88.0f) & hi));
    vi k = __builtin_convertvector(x * 1.44269504088896341f + 128.5f, vi) - 128;  /* floor(x log2 e + 1/2) */
    vf kf = __builtin_convertvector(k, vf);
    vf r = x - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    vf p = vbroadcast(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vi bits = (k + 127) << 23;
    return p * (vf)bits;
}

/* sum of the NB lanes, as a shuffle tree */
static inline float vsum(vf v) {
#if defined(__clang__)
    v = v + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    v = v + __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
    v = v + __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    v = v + __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
#else
    const vi s8 = {8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7};
    const vi s4 = {4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11};
    const vi s2 = {2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13};
    const vi s1 = {1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14};
    v = v + __builtin_shuffle(v, s8);
    v = v + __builtin_shuffle(v, s4);
    v = v + __builtin_shuffle(v, s2);
    v = v + __builtin_shuffle(v, s1);
#endif
    return v[0];
}

/* exported for the tests: out[i] = exp(x[i]) through vexp (n a multiple of NB) */
void depdet_scan_exp(const float *x, float *out, int64_t n) {
    for (int64_t i = 0; i + NB <= n; i += NB) vstore(out + i, vexp(vload(x + i)));
}

/* per-lane select: m ? a : b (m from a vector comparison: all bits set or clear) */
static inline vf vsel(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }

/* log1p(y) for y in [0, 1] per lane: u = 1 + y in [1, 2], log(u) from Cephes' logf polynomial
 * (~1 ulp), then log1p(y) = log(u) * y / (u - 1) (exact rounding compensation; y where u == 1). */
static inline vf vlog1p01(vf y) {
    const vf u = 1.0f + y;
    const vi big = u > 1.41421356f;
    const vf m = vsel(big, u * 0.5f, u);
    const vf e = vsel(big, vbroadcast(1.0f), vbroadcast(0.0f));
    const vf f = m - 1.0f, z = f * f;
    vf p = vbroadcast(7.0376836292e-2f);
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    vf r = p * f * z + e * -2.12194440e-4f - 0.5f * z;
    r = f + r + e * 0.693359375f;
    const vf d = u - 1.0f;
    const vi one = d == 0.0f;
    return vsel(one, y, r * y / vsel(one, vbroadcast(1.0f), d));
}

/* softplus as PyTorch's (beta 1, threshold 20): x > 20 -> x, else max(x, 0) + log1p(exp(-|x|)) */
static inline vf vsoftplus(vf x) {
    const vi neg = x < 0.0f;
    const vf ax = vsel(neg, -x, x);
    const vf r = vsel(neg, vbroadcast(0.0f), x) + vlog1p01(vexp(-ax));
    return vsel(x > 20.0f, x, r);
}

/* sigmoid(z) per lane (z clamped by vexp: no overflow, no NaN) */
static inline vf vsigmoid(vf z) { return 1.0f / (1.0f + vexp(-z)); }

static inline float ssigmoid(float z) {
    float v[NB] = {0};
    v[0] = z;
    return vsigmoid(vload(v))[0];
}

/* exported for the tests: out[i] = softplus(x[i]) through vsoftplus (n a multiple of NB) */
void depdet_scan_softplus(const float *x, float *out, int64_t n) {
    for (int64_t i = 0; i + NB <= n; i += NB) vstore(out + i, vsoftplus(vload(x + i)));
}

/* Strides (in elements) of the (B, D, L)-indexed arrays, [b, d, t] each, in this order. */
enum { S_U = 0, S_DELTA = 3, S_Z = 6, S_Y = 9, S_GY = 12, S_GU = 15, S_GDELTA = 18, S_GZ = 21, S_COUNT = 24 };

typedef struct {
    int tid, nthreads;
    int64_t bsz, dim, L, N;   /* N: padded d_state, a multiple of NB */
    const int64_t *st;        /* S_COUNT strides */
    const float *u, *delta, *dbias, *A, *Bt, *Ct, *Dp, *z, *gy, *glast;
    const uint8_t *mask;      /* (B, L) contiguous, 0 = masked step (delta 0 there), or NULL */
    const int64_t *lengths;   /* (B,): scan each sample's first lengths[b] steps reversed, or NULL */
    int softplus;
    float *y, *hlast, *gu, *gdelta, *gA, *gB, *gC, *gD, *gz, *gdbias;
    int failed;
} job_t;

static void channel_range(const job_t *j, int64_t *d0, int64_t *d1) {
    int64_t per = j->dim / j->nthreads, rem = j->dim % j->nthreads;
    *d0 = j->tid * per + (j->tid < rem ? j->tid : rem);
    *d1 = *d0 + per + (j->tid < rem ? 1 : 0);
}

/* pos[s] = the time row of scan step s: the first n steps of the sample reversed, the rest in order */
static void fill_pos(int32_t *pos, int64_t L, const int64_t *lengths, int64_t b) {
    int64_t n = lengths ? lengths[b] : 0;
    if (n < 0) n = 0;
    if (n > L) n = L;
    for (int64_t s = 0; s < L; s++) pos[s] = (int32_t)(s < n ? n - 1 - s : s);
}

/* Channels are processed in tiles of up to TILE consecutive channels: a tile's rows are gathered
 * into contiguous scratch rows (row c at dst + c * ld) in scan-step order in one pass, so a
 * time-major source ((B, L, D): stride 1 along d) is read a few whole cache lines per time row
 * (each row of a (B, L, D) tensor with D >= 1024 is on its own page: TILE = 64 channels amortise
 * that page over four lines; a backward tile's seven scratch tiles, ~1 MiB at L = 600, stay in L2),
 * not one line per element; results are scattered back the same way. */
#ifndef TILE
#define TILE 64
#endif
#ifndef PREFETCH
#define PREFETCH 16   /* time rows ahead: a strided row is a new page, out of the hardware prefetcher's reach */
#endif

static void gather_tile(int64_t L, int64_t T, int64_t ld, float *restrict dst, const float *restrict src,
                        int64_t sd, int64_t st, const int32_t *restrict pos) {
    if (sd == 1 && T > 1) {
        for (int64_t s = 0; s < L; s++) {
            if (s + PREFETCH < L) __builtin_prefetch(src + (int64_t)pos[s + PREFETCH] * st, 0, 0);
            const float *row = src + (int64_t)pos[s] * st;
            for (int64_t c = 0; c < T; c++) dst[c * ld + s] = row[c];
        }
        return;
    }
    for (int64_t c = 0; c < T; c++) {
        const float *row = src + c * sd;
        float *out = dst + c * ld;
        if (st == 1 && pos[0] == 0) {   /* in order (pos[0] == 0: no reversed span, or n == 1) */
            memcpy(out, row, (size_t)L * sizeof(float));
            continue;
        }
        for (int64_t s = 0; s < L; s++) out[s] = row[(int64_t)pos[s] * st];
    }
}

static void scatter_tile(int64_t L, int64_t T, int64_t ld, float *restrict dst, const float *restrict src,
                         int64_t sd, int64_t st, const int32_t *restrict pos) {
    if (sd == 1 && T > 1) {
        for (int64_t s = 0; s < L; s++) {
            if (s + PREFETCH < L) __builtin_prefetch(dst + (int64_t)pos[s + PREFETCH] * st, 1, 0);
            float *row = dst + (int64_t)pos[s] * st;
            for (int64_t c = 0; c < T; c++) row[c] = src[c * ld + s];
        }
        return;
    }
    for (int64_t c = 0; c < T; c++) {
        float *row = dst + c * sd;
        const float *in = src + c * ld;
        if (st == 1 && pos[0] == 0) {
            memcpy(row, in, (size_t)L * sizeof(float));
            continue;
        }
        for (int64_t s = 0; s < L; s++) row[(int64_t)pos[s] * st] = in[s];
    }
}

/* dl <- mask ? (softplus ? softplus(raw + bias) : raw + bias) : 0, over one row in scan-step order */
static void prep_delta(int64_t L, float *restrict dl, const float *restrict raw, float bias, int softplus,
                       const uint8_t *restrict mrow, const int32_t *restrict pos) {
    int64_t t = 0;
    for (; t + NB <= L; t += NB) {
        vf x = vload(raw + t) + bias;
        vstore(dl + t, softplus ? vsoftplus(x) : x);
    }
    if (t < L) {
        float v[NB] = {0};
        memcpy(v, raw + t, (size_t)(L - t) * sizeof(float));
        vf x = vload(v) + bias;
        vstore(v, softplus ? vsoftplus(x) : x);
        memcpy(dl + t, v, (size_t)(L - t) * sizeof(float));
    }
    if (mrow)
        for (int64_t s = 0; s < L; s++)
            if (!mrow[pos[s]]) dl[s] = 0.0f;
}

/* g <- g * d(delta)/d(raw) (mask, softplus' = sigmoid(raw + bias)) in place; returns sum (the bias gradient) */
static float prep_delta_bwd(int64_t L, float *restrict g, const float *restrict raw, float bias, int softplus,
                            const uint8_t *restrict mrow, const int32_t *restrict pos) {
    if (mrow)
        for (int64_t s = 0; s < L; s++)
            if (!mrow[pos[s]]) g[s] = 0.0f;
    vf acc = {0};
    int64_t t = 0;
    for (; t + NB <= L; t += NB) {
        vf gv = vload(g + t);
        if (softplus) {
            const vf x = vload(raw + t) + bias;
            gv = vsel(x > 20.0f, gv, gv * vsigmoid(x));
        }
        vstore(g + t, gv);
        acc += gv;
    }
    if (t < L) {
        float v[NB] = {0}, r[NB] = {0};
        memcpy(v, g + t, (size_t)(L - t) * sizeof(float));
        memcpy(r, raw + t, (size_t)(L - t) * sizeof(float));
        vf gv = vload(v);
        if (softplus) {
            const vf x = vload(r) + bias;
            gv = vsel(x > 20.0f, gv, gv * vsigmoid(x));
        }
        vstore(v, gv);   /* lanes past L hold 0 * ... = 0 */
        memcpy(g + t, v, (size_t)(L - t) * sizeof(float));
        acc += gv;
    }
    return vsum(acc);
}

/* One block of NB states of one (b, d) row, in scan-step order; B and C rows at their time rows pos[t]. */
static void scan_block_fwd(int64_t L, int64_t N, const float *restrict u, const float *restrict dl,
                           const float *restrict Ad, const float *restrict Bb, const float *restrict Cb,
                           const int32_t *restrict pos, float *restrict y, float *restrict hlast, int first) {
    const vf a = vload(Ad);
    vf h = {0};
    for (int64_t t = 0; t < L; t++) {
        const float dt = dl[t], du = dt * u[t];
        const int64_t p = (int64_t)pos[t] * N;
        h = vexp(a * dt) * h + vload(Bb + p) * du;
        const float acc = vsum(h * vload(Cb + p));
        y[t] = first ? acc : y[t] + acc;
    }
    if (hlast) vstore(hlast, h);
}

/* y <- (y + D u) * silu(z) over one row (z may be NULL: no gate), in place */
static void gate_fwd(int64_t L, float *restrict y, const float *restrict u, float Dd, const float *restrict z) {
    int64_t t = 0;
    for (; t + NB <= L; t += NB) {
        vf v = vload(y + t) + vload(u + t) * Dd;
        if (z) { const vf zz = vload(z + t); v = v * zz * vsigmoid(zz); }
        vstore(y + t, v);
    }
    for (; t < L; t++) {
        float v = y[t] + u[t] * Dd;
        if (z) v = v * z[t] * ssigmoid(z[t]);
        y[t] = v;
    }
}

/* gyy <- gy * silu(z): the gradient reaching the scan output (z may be NULL) */
static void gate_bwd_in(int64_t L, float *restrict gyy, const float *restrict gy, const float *restrict z) {
    int64_t t = 0;
    if (!z) { memcpy(gyy, gy, (size_t)L * sizeof(float)); return; }
    for (; t + NB <= L; t += NB) {
        const vf zz = vload(z + t);
        vstore(gyy + t, vload(gy + t) * zz * vsigmoid(zz));
    }
    for (; t < L; t++) gyy[t] = gy[t] * z[t] * ssigmoid(z[t]);
}

/* gradients of the gate and the skip: gz_t = gy_t (acc_t + D u_t) silu'(z_t), gu_t += D gyy_t,
 * returns sum_t gyy_t u_t (dLoss/dD for this row) */
static float gate_bwd_out(int64_t L, const float *restrict acc, const float *restrict gy,
                          const float *restrict gyy, const float *restrict u, float Dd, const float *restrict z,
                          float *restrict gz, float *restrict gu) {
    vf sd = {0};
    float sdt = 0.0f;
    int64_t t = 0;
    for (; t + NB <= L; t += NB) {
        const vf uu = vload(u + t), g = vload(gyy + t);
        sd += g * uu;
        vstore(gu + t, vload(gu + t) + g * Dd);
        if (z) {
            const vf zz = vload(z + t), sg = vsigmoid(zz);
            const vf y0 = vload(acc + t) + uu * Dd;
            vstore(gz + t, vload(gy + t) * y0 * sg * (1.0f + zz * (1.0f - sg)));
        }
    }
    for (; t < L; t++) {
        sdt += gyy[t] * u[t];
        gu[t] += gyy[t] * Dd;
        if (z) {
            const float sg = ssigmoid(z[t]);
            gz[t] = gy[t] * (acc[t] + u[t] * Dd) * sg * (1.0f + z[t] * (1.0f - sg));
        }
    }
    return vsum(sd) + sdt;
}

/* row scratch: L floats rounded up to whole vectors plus one, 64-byte aligned */
static int64_t row_len(int64_t L) { return (L + NB + 15) / 16 * 16; }
static size_t row_bytes(int64_t L) { return (size_t)row_len(L) * sizeof(float); }

#define AT(a, k) (j->a + b * st[(k)] + dt0 * st[(k) + 1])   /* array a at (b, first channel of the tile) */

static void *fwd_worker(void *arg) {
    job_t *j = (job_t *)arg;
    const int64_t L = j->L, N = j->N, ld = row_len(L);
    const int64_t *st = j->st;
    int64_t d0, d1;
    channel_range(j, &d0, &d1);
    const size_t row = row_bytes(L), tile = row * TILE;
    int32_t *pos = (int32_t *)aligned_alloc(64, row);
    float *U = (float *)aligned_alloc(64, tile), *R = (float *)aligned_alloc(64, tile);
    float *Z = (float *)aligned_alloc(64, tile), *Y = (float *)aligned_alloc(64, tile);
    float *dl = (float *)aligned_alloc(64, row);
    if (!pos || !U || !R || !Z || !Y || !dl) { j->failed = 1; goto done; }
    for (int64_t b = 0; b < j->bsz; b++) {
        fill_pos(pos, L, j->lengths, b);
        const uint8_t *mrow = j->mask ? j->mask + b * L : NULL;
        for (int64_t dt0 = d0; dt0 < d1; dt0 += TILE) {
            const int64_t T = d1 - dt0 < TILE ? d1 - dt0 : TILE;
            gather_tile(L, T, ld, U, AT(u, S_U), st[S_U + 1], st[S_U + 2], pos);
            gather_tile(L, T, ld, R, AT(delta, S_DELTA), st[S_DELTA + 1], st[S_DELTA + 2], pos);
            if (j->z) gather_tile(L, T, ld, Z, AT(z, S_Z), st[S_Z + 1], st[S_Z + 2], pos);
            for (int64_t c = 0; c < T; c++) {
                const int64_t d = dt0 + c;
                float *ur = U + c * ld, *yr = Y + c * ld;
                prep_delta(L, dl, R + c * ld, j->dbias ? j->dbias[d] : 0.0f, j->softplus, mrow, pos);
                for (int64_t k0 = 0; k0 < N; k0 += NB)
                    scan_block_fwd(L, N, ur, dl, j->A + d * N + k0, j->Bt + b * L * N + k0,
                                   j->Ct + b * L * N + k0, pos, yr,
                                   j->hlast ? j->hlast + (b * j->dim + d) * N + k0 : NULL, k0 == 0);
                gate_fwd(L, yr, ur, j->Dp ? j->Dp[d] : 0.0f, j->z ? Z + c * ld : NULL);
            }
            scatter_tile(L, T, ld, AT(y, S_Y), Y, st[S_Y + 1], st[S_Y + 2], pos);
        }
    }
done:
    free(pos); free(U); free(R); free(Z); free(Y); free(dl);
    return NULL;
}

/* One block of states of one (b, d) row: re-compute the states h_t (H) and decays exp(delta_t A) (E),
 * then the adjoint scan G_t = dLoss/dh_t from the end. gu/gdelta are written by the first block
 * and accumulated by the others; gB, gC go to this thread's partial buffers; gAd accumulates dLoss/dA. */
static void scan_block_bwd(int64_t L, int64_t N, const float *restrict u, const float *restrict dl,
                           const float *restrict Ad, const float *restrict Bb, const float *restrict Cb,
                           const int32_t *restrict pos, const float *restrict gy, const float *restrict gl,
                           float *restrict gu, float *restrict gdl, float *restrict gAd, float *restrict gBb,
                           float *restrict gCb, float *restrict H, float *restrict E, float *restrict acc,
                           int first) {
    const vf a = vload(Ad);
    vf h = {0};
    for (int64_t t = 0; t < L; t++) {
        const float dt = dl[t];
        const int64_t p = (int64_t)pos[t] * N;
        const vf e = vexp(a * dt);
        h = e * h + vload(Bb + p) * (dt * u[t]);
        vstore(E + t * NB, e);
        vstore(H + t * NB, h);
        if (acc) {   /* the scan output C_t . h_t, needed for the gate's gradient */
            const float c = vsum(h * vload(Cb + p));
            acc[t] = first ? c : acc[t] + c;
        }
    }
    vf G = {0}, ga = {0};
    if (gl) G = vload(gl);
    for (int64_t t = L - 1; t >= 0; t--) {
        const float dt = dl[t], ut = u[t], du = dt * ut, g = gy[t];
        const int64_t p = (int64_t)pos[t] * N;
        const vf G_t = G + vload(Cb + p) * g;       /* dLoss/dh_t */
        vstore(gCb + p, vload(gCb + p) + vload(H + t * NB) * g);
        vstore(gBb + p, vload(gBb + p) + G_t * du);
        const float gdu = vsum(G_t * vload(Bb + p));
        float gdt = 0.0f;
        const vf e = vload(E + t * NB);
        if (t > 0) {
            const vf x = G_t * vload(H + (t - 1) * NB) * e;   /* dLoss/d(delta_t A) */
            gdt = vsum(x * a);
            ga += x * dt;
        }
        G = G_t * e;
        gdl[t] = first ? gdu * ut + gdt : gdl[t] + gdu * ut + gdt;
        gu[t] = first ? gdu * dt : gu[t] + gdu * dt;
    }
    vstore(gAd, vload(gAd) + ga);
}

/* Backward. Each thread owns a channel range, so gA, gD and gdbias rows are its own; gB and gC
 * (summed over channels) go to per-thread partial buffers (gB + tid * B*L*N) that the caller reduces. */
static void *bwd_worker(void *arg) {
    job_t *j = (job_t *)arg;
    const int64_t L = j->L, N = j->N, BLN = j->bsz * L * N, ld = row_len(L);
    const int64_t *st = j->st;
    int64_t d0, d1;
    channel_range(j, &d0, &d1);
    const size_t rows = (size_t)((L * NB * sizeof(float) + 127) / 64 * 64), row = row_bytes(L), tile = row * TILE;
    float *H = (float *)aligned_alloc(64, rows), *E = (float *)aligned_alloc(64, rows);
    int32_t *pos = (int32_t *)aligned_alloc(64, row);
    float *tl[7], *rw[3];
    int ok = H && E && pos;
    for (int i = 0; i < 7; i++) { tl[i] = (float *)aligned_alloc(64, tile); ok = ok && tl[i]; }
    for (int i = 0; i < 3; i++) { rw[i] = (float *)aligned_alloc(64, row); ok = ok && rw[i]; }
    float *U = tl[0], *R = tl[1], *Z = tl[2], *GY = tl[3], *GU = tl[4], *GDL = tl[5], *GZ = tl[6];
    float *dl = rw[0], *gyy = rw[1], *acc = rw[2];
    if (!ok) { j->failed = 1; goto done; }
    const int gated = j->z != NULL || j->Dp != NULL;
    float *gBp = j->gB + j->tid * BLN, *gCp = j->gC + j->tid * BLN;
    for (int64_t b = 0; b < j->bsz; b++) {
        fill_pos(pos, L, j->lengths, b);
        const uint8_t *mrow = j->mask ? j->mask + b * L : NULL;
        for (int64_t dt0 = d0; dt0 < d1; dt0 += TILE) {
            const int64_t T = d1 - dt0 < TILE ? d1 - dt0 : TILE;
            gather_tile(L, T, ld, U, AT(u, S_U), st[S_U + 1], st[S_U + 2], pos);
            gather_tile(L, T, ld, R, AT(delta, S_DELTA), st[S_DELTA + 1], st[S_DELTA + 2], pos);
            if (j->z) gather_tile(L, T, ld, Z, AT(z, S_Z), st[S_Z + 1], st[S_Z + 2], pos);
            gather_tile(L, T, ld, GY, AT(gy, S_GY), st[S_GY + 1], st[S_GY + 2], pos);
            for (int64_t c = 0; c < T; c++) {
                const int64_t d = dt0 + c;
                const float bias = j->dbias ? j->dbias[d] : 0.0f;
                float *ur = U + c * ld, *raw = R + c * ld, *zr = j->z ? Z + c * ld : NULL, *gyr = GY + c * ld;
                float *gur = GU + c * ld, *gdl = GDL + c * ld, *gzr = GZ + c * ld;
                prep_delta(L, dl, raw, bias, j->softplus, mrow, pos);
                gate_bwd_in(L, gyy, gyr, zr);
                for (int64_t k0 = 0; k0 < N; k0 += NB)
                    scan_block_bwd(L, N, ur, dl, j->A + d * N + k0, j->Bt + b * L * N + k0,
                                   j->Ct + b * L * N + k0, pos, gyy,
                                   j->glast ? j->glast + (b * j->dim + d) * N + k0 : NULL, gur, gdl,
                                   j->gA + d * N + k0, gBp + b * L * N + k0, gCp + b * L * N + k0, H, E,
                                   zr ? acc : NULL, k0 == 0);
                if (gated) {
                    const float gd = gate_bwd_out(L, acc, gyr, gyy, ur, j->Dp ? j->Dp[d] : 0.0f, zr, gzr, gur);
                    if (j->gD) j->gD[d] += gd;
                }
                const float gb = prep_delta_bwd(L, gdl, raw, bias, j->softplus, mrow, pos);
                if (j->gdbias) j->gdbias[d] += gb;
            }
            scatter_tile(L, T, ld, AT(gu, S_GU), GU, st[S_GU + 1], st[S_GU + 2], pos);
            scatter_tile(L, T, ld, AT(gdelta, S_GDELTA), GDL, st[S_GDELTA + 1], st[S_GDELTA + 2], pos);
            if (j->gz) scatter_tile(L, T, ld, AT(gz, S_GZ), GZ, st[S_GZ + 1], st[S_GZ + 2], pos);
        }
    }
done:
    free(H); free(E); free(pos);
    for (int i = 0; i < 7; i++) free(tl[i]);
    for (int i = 0; i < 3; i++) free(rw[i]);
    return NULL;
}

#undef AT

/* threads actually used: at least 1, at most one per channel */
static int clamp_threads(int64_t dim, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    return (int)(nthreads > dim ? (dim > 0 ? dim : 1) : nthreads);
}

static int run(void *(*fn)(void *), job_t *proto, int nthreads) {
    nthreads = clamp_threads(proto->dim, nthreads);
    job_t *jobs = (job_t *)calloc((size_t)nthreads, sizeof(job_t));
    pthread_t *th = (pthread_t *)calloc((size_t)nthreads, sizeof(pthread_t));
    if (!jobs || !th) { free(jobs); free(th); return 1; }
    int failed = 0, started = 0;
    for (int i = 0; i < nthreads; i++) {
        jobs[i] = *proto;
        jobs[i].tid = i;
        jobs[i].nthreads = nthreads;
    }
    for (int i = 1; i < nthreads; i++) {
        if (pthread_create(&th[i], NULL, fn, &jobs[i]) != 0) { failed = 1; break; }
        started = i;
    }
    if (!failed) fn(&jobs[0]);
    for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < nthreads; i++) failed |= jobs[i].failed;
    free(jobs);
    free(th);
    return failed;
}

/* Number of partial gB/gC buffers the backward pass needs for `nthreads` (the caller allocates
 * that many (B, L, N) zeroed buffers and sums them). */
int depdet_scan_bwd_parts(int64_t dim, int nthreads) { return clamp_threads(dim, nthreads); }

/* y = (scan(u) + D u) * silu(z) with delta = mask ? softplus?(delta + dbias) : 0; strides: S_COUNT
 * element strides (u, delta, z, y as [b, d, t]); dbias, mask, lengths, Dp and z may be NULL. */
int depdet_scan_fwd(int64_t bsz, int64_t dim, int64_t L, int64_t N, const int64_t *strides, const float *u,
                    const float *delta, const float *dbias, int softplus, const uint8_t *mask,
                    const int64_t *lengths, const float *A, const float *Bt, const float *Ct, const float *Dp,
                    const float *z, float *y, float *hlast, int nthreads) {
    job_t j;
    memset(&j, 0, sizeof j);
    j.bsz = bsz; j.dim = dim; j.L = L; j.N = N; j.st = strides;
    j.u = u; j.delta = delta; j.dbias = dbias; j.softplus = softplus; j.mask = mask; j.lengths = lengths;
    j.A = A; j.Bt = Bt; j.Ct = Ct; j.Dp = Dp; j.z = z; j.y = y; j.hlast = hlast;
    return run(fwd_worker, &j, nthreads);
}

/* gA, gD and gdbias must be zeroed by the caller (gu, gdelta, gz are written; gdelta is the
 * gradient of the raw delta, before dbias and softplus); gB and gC are depdet_scan_bwd_parts()
 * zeroed (B, L, N) buffers. gD is NULL when Dp is, gz when z is, gdbias when dbias is. */
int depdet_scan_bwd(int64_t bsz, int64_t dim, int64_t L, int64_t N, const int64_t *strides, const float *u,
                    const float *delta, const float *dbias, int softplus, const uint8_t *mask,
                    const int64_t *lengths, const float *A, const float *Bt, const float *Ct, const float *Dp,
                    const float *z, const float *gy, const float *glast, float *gu, float *gdelta, float *gA,
                    float *gB, float *gC, float *gD, float *gz, float *gdbias, int nthreads) {
    job_t j;
    memset(&j, 0, sizeof j);
    j.bsz = bsz; j.dim = dim; j.L = L; j.N = N; j.st = strides;
    j.u = u; j.delta = delta; j.dbias = dbias; j.softplus = softplus; j.mask = mask; j.lengths = lengths;
    j.A = A; j.Bt = Bt; j.Ct = Ct; j.Dp = Dp; j.z = z; j.gy = gy; j.glast = glast;
    j.gu = gu; j.gdelta = gdelta; j.gA = gA; j.gB = gB; j.gC = gC; j.gD = gD; j.gz = gz; j.gdbias = gdbias;
    return run(bwd_worker, &j, nthreads);
}


/* ==================================================================================================
 * Depthwise causal conv (Mamba's conv1d, mamba.causal_conv1d), forward and backward, SiLU fused.
 *
 * Per (b, d) row, with K taps w = weight[d] (PyTorch's F.conv1d tap order) and x = 0 outside [0, L):
 *     causal  (reverse = 0): pre_t = bias[d] + sum_j w[j] x_{t-(K-1)+j}   (F.conv1d, padding K-1, first L)
 *     reverse (reverse = 1): pre_t = bias[d] + sum_j w[K-1-j] x_{t+j}     (= flip(causal(flip(x))))
 *     y_t = silu(pre_t) (silu = 1) or pre_t.
 * Both are one form over a zero-padded copy xp of the row (x_t at xp[P + t], P = K-1, zeros around):
 *     pre_t = bias + sum_j wr[j] xp[base + t + j],   wr = w, base = 0 (causal); wr = flip(w), base = P.
 * Backward (ours: the pre-activation is re-computed from x, never stored): g_t = gy_t silu'(pre_t)
 * (silu'(p) = s (1 + p (1 - s)), s = sigmoid(p)), gbias[d] = sum_{b,t} g_t,
 * gwr[j] = sum_{b,t} g_t xp[base + t + j], gx_u = sum_j wr[j] g_{u + P - base - j}
 * (g zero outside [0, L), held zero-padded the same way).
 * x and gy are read with any [b, d, t] element strides; y and gx are written contiguous (B, D, L);
 * weight, gweight (D, K) and bias, gbias (D,) are contiguous (bias/gbias may be NULL). Threads split
 * the channels (each owns whole channels, rows of all samples: gweight and gbias need no partial
 * sums); a row is copied into L1-resident padded scratch and processed NB time steps per vector.
 * ================================================================================================== */

typedef struct {
    int tid, nthreads;
    int64_t bsz, dim, L, K;
    const int64_t *st;        /* [b, d, t] strides of x, then of gy (6 values) */
    const float *x, *w, *bias, *gy;
    int silu, reverse;
    float *y, *gx, *gw, *gb;
    int failed;
} conv_job_t;

/* padded scratch row: P = K-1 zeros, the L values, then zeros past any vector the loops touch */
static int64_t conv_row_len(int64_t L, int64_t K) { return (2 * K + L + 2 * NB + 15) / 16 * 16; }

/* this thread's contiguous channel range [d0, d1) (as the scan's channel_range) */
static void conv_channels(const conv_job_t *j, int64_t *d0, int64_t *d1) {
    int64_t per = j->dim / j->nthreads, rem = j->dim % j->nthreads;
    *d0 = j->tid * per + (j->tid < rem ? j->tid : rem);
    *d1 = *d0 + per + (j->tid < rem ? 1 : 0);
}

/* dst[0..L) <- src[t * st] */
static void conv_gather(int64_t L, float *restrict dst, const float *restrict src, int64_t st) {
    if (st == 1) { memcpy(dst, src, (size_t)L * sizeof(float)); return; }
    for (int64_t t = 0; t < L; t++) dst[t] = src[t * st];
}

/* wr (the taps in pre_t = bias + sum_j wr[j] xp[base + t + j]) and base for channel d */
static int64_t conv_taps(const conv_job_t *j, int64_t d, float *wr) {
    const int64_t K = j->K;
    for (int64_t k = 0; k < K; k++) wr[k] = j->w[d * K + (j->reverse ? K - 1 - k : k)];
    return j->reverse ? K - 1 : 0;
}

/* pre-activation of NB steps from t: bias + sum_j wr[j] xp[base + t + j] */
static inline vf conv_pre(const float *restrict xq, const float *restrict wr, int64_t K, float bias) {
    vf acc = vbroadcast(bias);
    for (int64_t k = 0; k < K; k++) acc += vload(xq + k) * wr[k];
    return acc;
}

static void *conv_fwd_worker(void *arg) {
    conv_job_t *j = (conv_job_t *)arg;
    const int64_t L = j->L, K = j->K, P = K - 1, nrow = conv_row_len(L, K);
    int64_t d0, d1;
    conv_channels(j, &d0, &d1);
    float *xp = (float *)calloc((size_t)nrow, sizeof(float));
    float *wr = (float *)malloc((size_t)K * sizeof(float));
    if (!xp || !wr) { j->failed = 1; goto done; }
    for (int64_t b = 0; b < j->bsz; b++) {
        for (int64_t d = d0; d < d1; d++) {
            const int64_t base = conv_taps(j, d, wr);
            const float bias = j->bias ? j->bias[d] : 0.0f;
            conv_gather(L, xp + P, j->x + b * j->st[0] + d * j->st[1], j->st[2]);
            float *yr = j->y + (b * j->dim + d) * L;
            int64_t t = 0;
            for (; t < L; t += NB) {
                vf v = conv_pre(xp + base + t, wr, K, bias);
                if (j->silu) v = v * vsigmoid(v);
                if (t + NB <= L) vstore(yr + t, v);
                else { float tmp[NB]; vstore(tmp, v); memcpy(yr + t, tmp, (size_t)(L - t) * sizeof(float)); }
            }
        }
    }
done:
    free(xp); free(wr);
    return NULL;
}

static void *conv_bwd_worker(void *arg) {
    conv_job_t *j = (conv_job_t *)arg;
    const int64_t L = j->L, K = j->K, P = K - 1, nrow = conv_row_len(L, K);
    int64_t d0, d1;
    conv_channels(j, &d0, &d1);
    /* xp, gp: padded rows of x and of g (zeros outside [P, P + L) stay zero: only zeros are
     * written there); wr: taps */
    float *xp = (float *)calloc((size_t)nrow, sizeof(float)), *gp = (float *)calloc((size_t)nrow, sizeof(float));
    float *wr = (float *)malloc((size_t)K * sizeof(float));
    if (!xp || !gp || !wr) { j->failed = 1; goto done; }
    for (int64_t b = 0; b < j->bsz; b++) {
        for (int64_t d = d0; d < d1; d++) {
            const int64_t base = conv_taps(j, d, wr), off = P - base;   /* gx_u = sum_j wr[j] gp[P + u + off - j] */
            const float bias = j->bias ? j->bias[d] : 0.0f;
            conv_gather(L, xp + P, j->x + b * j->st[0] + d * j->st[1], j->st[2]);
            conv_gather(L, gp + P, j->gy + b * j->st[3] + d * j->st[4], j->st[5]);
            /* one pass per quantity over the L1-resident rows (ours: the accumulators stay in registers) */
            if (j->silu)   /* g = gy * silu'(pre) in place; lanes past L hold gy = 0 and stay 0 */
                for (int64_t t = 0; t < L; t += NB) {
                    const vf p = conv_pre(xp + base + t, wr, K, bias), s = vsigmoid(p);
                    vstore(gp + P + t, vload(gp + P + t) * s * (1.0f + p * (1.0f - s)));
                }
            if (j->gb) {
                vf acc = {0};
                for (int64_t t = 0; t < L; t += NB) acc += vload(gp + P + t);
                j->gb[d] += vsum(acc);
            }
            for (int64_t k = 0; k < K; k++) {
                vf acc = {0};
                for (int64_t t = 0; t < L; t += NB) acc += vload(gp + P + t) * vload(xp + base + t + k);
                j->gw[d * K + (j->reverse ? K - 1 - k : k)] += vsum(acc);
            }
            float *gxr = j->gx + (b * j->dim + d) * L;
            for (int64_t t = 0; t < L; t += NB) {
                const float *gq = gp + P + t + off;
                vf acc = {0};
                for (int64_t k = 0; k < K; k++) acc += vload(gq - k) * wr[k];
                if (t + NB <= L) vstore(gxr + t, acc);
                else { float tmp[NB]; vstore(tmp, acc); memcpy(gxr + t, tmp, (size_t)(L - t) * sizeof(float)); }
            }
        }
    }
done:
    free(xp); free(gp); free(wr);
    return NULL;
}

/* the scan's run() for conv jobs: thread 0 is the caller, threads 1.. are POSIX threads */
static int conv_run(void *(*fn)(void *), const conv_job_t *proto, int nthreads) {
    nthreads = clamp_threads(proto->dim, nthreads);
    conv_job_t *jobs = (conv_job_t *)calloc((size_t)nthreads, sizeof(conv_job_t));
    pthread_t *th = (pthread_t *)calloc((size_t)nthreads, sizeof(pthread_t));
    if (!jobs || !th) { free(jobs); free(th); return 1; }
    int failed = 0, started = 0;
    for (int i = 0; i < nthreads; i++) {
        jobs[i] = *proto;
        jobs[i].tid = i;
        jobs[i].nthreads = nthreads;
    }
    for (int i = 1; i < nthreads; i++) {
        if (pthread_create(&th[i], NULL, fn, &jobs[i]) != 0) { failed = 1; break; }
        started = i;
    }
    if (!failed) fn(&jobs[0]);
    for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < nthreads; i++) failed |= jobs[i].failed;
    free(jobs);
    free(th);
    return failed;
}

/* y (B, D, L) contiguous = act(conv(x) + bias); strides: x's [b, d, t] (3 values); bias may be NULL;
 * K >= 1. Returns nonzero when out of memory or a thread could not be started. */
int depdet_conv_fwd(int64_t bsz, int64_t dim, int64_t L, int64_t K, const int64_t *strides, const float *x,
                    const float *w, const float *bias, int silu, int reverse, float *y, int nthreads) {
    conv_job_t j;
    memset(&j, 0, sizeof j);
    int64_t st[6] = {strides[0], strides[1], strides[2], 0, 0, 0};
    j.bsz = bsz; j.dim = dim; j.L = L; j.K = K; j.st = st;
    j.x = x; j.w = w; j.bias = bias; j.silu = silu; j.reverse = reverse; j.y = y;
    return conv_run(conv_fwd_worker, &j, nthreads);
}

/* gx (B, D, L) contiguous is written; gw (D, K) and gb (D,) (NULL when bias is) are accumulated
 * into (the caller zeroes them); strides: x's then gy's [b, d, t] (6 values). Nonzero return: as depdet_conv_fwd. */
int depdet_conv_bwd(int64_t bsz, int64_t dim, int64_t L, int64_t K, const int64_t *strides, const float *x,
                    const float *w, const float *bias, int silu, int reverse, const float *gy, float *gx,
                    float *gw, float *gb, int nthreads) {
    conv_job_t j;
    memset(&j, 0, sizeof j);
    j.bsz = bsz; j.dim = dim; j.L = L; j.K = K; j.st = strides;
    j.x = x; j.w = w; j.bias = bias; j.silu = silu; j.reverse = reverse; j.gy = gy;
    j.gx = gx; j.gw = gw; j.gb = gb;
    return conv_run(conv_bwd_worker, &j, nthreads);
}
