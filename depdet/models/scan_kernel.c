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
 * OpenMP runtime and two in one process do not mix well). A vector holds one value of NB = 16
 * consecutive channels (GCC/Clang vector extensions), so a step of the recurrence is plain vector
 * arithmetic for 16 channels with B_t and C_t broadcast, NS states at a time in registers (no
 * -ffast-math: that would set flush-to-zero for the whole process; -ffp-contract=fast: FMAs);
 * exp() is a vector polynomial (~1 ulp).
 *
 * Layouts (all float32): u, delta, z, y, gy, gu, gdelta, gz are indexed [b, d, t] with strides
 * given by the caller (e.g. (B, D, L) contiguous, or time-major (B, L, D) as nn.Linear gives and
 * takes them: no layout copies); a group's 16 rows are gathered into scratch in scan order (one
 * vector per step), scanned, and scattered back. C-contiguous: A, gA : (D, N)
 *   Dp, gD, dbias, gdbias : (D,)   Bt, Ct, gB, gC : (B, L, N)   hlast, glast : (B, D, N)
 *   mask : (B, L) uint8   lengths : (B,) int64
 * with N the padded d_state (a multiple of NS = 4).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DEPDET_SCAN_ABI 8

int depdet_scan_abi(void) { return DEPDET_SCAN_ABI; }

/* Lanes per vector: 16 floats (one AVX-512 register, two AVX2 or four NEON ones); the scan puts
 * one channel in each lane (a group of NB channels per vector, see NL below). */
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

/* Threads (both kernels): a job struct starts with a worker_t; run_jobs() runs fn on nthreads
 * copies of a job, thread 0 being the caller and threads 1.. POSIX threads. */
typedef struct { int tid, nthreads, failed; } worker_t;

/* threads actually used: at least 1, at most one per unit of work */
static int clamp_threads(int64_t units, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    return (int)(nthreads > units ? (units > 0 ? units : 1) : nthreads);
}

/* this thread's contiguous share [a, b) of n units */
static void split_range(int64_t n, const worker_t *w, int64_t *a, int64_t *b) {
    int64_t per = n / w->nthreads, rem = n % w->nthreads;
    *a = w->tid * per + (w->tid < rem ? w->tid : rem);
    *b = *a + per + (w->tid < rem ? 1 : 0);
}

/* fn on nthreads copies of the job at proto (size bytes, a worker_t first); nonzero if any failed */
static int run_jobs(void *(*fn)(void *), const void *proto, size_t size, int nthreads) {
    char *jobs = (char *)calloc((size_t)nthreads, size);
    pthread_t *th = (pthread_t *)calloc((size_t)nthreads, sizeof(pthread_t));
    if (!jobs || !th) { free(jobs); free(th); return 1; }
    int failed = 0, started = 0;
    for (int i = 0; i < nthreads; i++) {
        memcpy(jobs + i * size, proto, size);
        worker_t *w = (worker_t *)(void *)(jobs + i * size);
        w->tid = i;
        w->nthreads = nthreads;
        w->failed = 0;
    }
    for (int i = 1; i < nthreads; i++) {
        if (pthread_create(&th[i], NULL, fn, jobs + i * size) != 0) { failed = 1; break; }
        started = i;
    }
    if (!failed) fn(jobs);
    for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < nthreads; i++) failed |= ((worker_t *)(void *)(jobs + i * size))->failed;
    free(jobs);
    free(th);
    return failed;
}

/* Strides (in elements) of the (B, D, L)-indexed arrays, [b, d, t] each, in this order. */
enum { S_U = 0, S_DELTA = 3, S_Z = 6, S_Y = 9, S_GY = 12, S_GU = 15, S_GDELTA = 18, S_GZ = 21, S_COUNT = 24 };

typedef struct {
    worker_t thr;             /* first: see run_jobs() */
    int64_t bsz, dim, L, N;   /* N: padded d_state, a multiple of NS */
    const int64_t *st;        /* S_COUNT strides */
    const float *u, *delta, *dbias, *A, *Bt, *Ct, *Dp, *z, *gy, *glast;
    const uint8_t *mask;      /* (B, L) contiguous, 0 = masked step (delta 0 there), or NULL */
    const int64_t *lengths;   /* (B,): scan each sample's first lengths[b] steps reversed, or NULL */
    int softplus;
    float *y, *hlast, *gu, *gdelta, *gA, *gB, *gC, *gD, *gz, *gdbias;
} job_t;

/* Layout of the scan: one channel per vector lane. A "group" is NL = NB = 16 consecutive channels
 * of one sample; its rows are gathered into scratch in scan-step order, one vector per step
 * (X[s * NL + c] = channel c at step s), so a step of the recurrence for 16 channels is plain
 * vector arithmetic with B_t, C_t broadcast (no horizontal sums, no padded lanes: d_state is not
 * padded to a vector). The states are kept in registers NS at a time (d_state padded to a
 * multiple of NS with zero A, B, C by the caller); y and the gradients of u and delta are
 * accumulated over the blocks of states in scratch. A thread owns a contiguous range of groups. */
#define NL NB
#define NS 4
/* Backward: the decays exp(delta_t A) are stored for the whole row and the states re-computed
 * from checkpoints every CK steps, CK steps at a time (that window of states stays in L1). */
#define CK 32
#ifndef PREFETCH
#define PREFETCH 16   /* time rows ahead: a strided row is a new page, out of the hardware prefetcher's reach */
#endif

static int64_t n_groups(int64_t dim) { return (dim + NL - 1) / NL; }

static void group_range(const job_t *j, int64_t *g0, int64_t *g1) { split_range(n_groups(j->dim), &j->thr, g0, g1); }

/* pos[s] = the time row of scan step s: the first n steps of the sample reversed, the rest in order */
static void fill_pos(int32_t *pos, int64_t L, const int64_t *lengths, int64_t b) {
    int64_t n = lengths ? lengths[b] : 0;
    if (n < 0) n = 0;
    if (n > L) n = L;
    for (int64_t s = 0; s < L; s++) pos[s] = (int32_t)(s < n ? n - 1 - s : s);
}

/* v[c] = p[c * stride] for the T live lanes, 0 in the others */
static inline vf lanes(const float *p, int64_t stride, int64_t T) {
    float v[NL] = {0};
    for (int64_t c = 0; c < T; c++) v[c] = p[c * stride];
    return vload(v);
}

/* all bits set in the T live lanes */
static inline vi live_lanes(int64_t T) {
    vi m;
    for (int c = 0; c < NL; c++) m[c] = c < T ? -1 : 0;
    return m;
}

#if defined(__clang__)
#define SHUF2(a, b, ...) __builtin_shufflevector((a), (b), __VA_ARGS__)
#define SHUF1(a, ...) __builtin_shufflevector((a), (a), __VA_ARGS__)
#else
#define SHUF2(a, b, ...) __builtin_shuffle((a), (b), (vi){__VA_ARGS__})
#define SHUF1(a, ...) __builtin_shuffle((a), (vi){__VA_ARGS__})
#endif

/* 16 x 16 transpose in registers: m[r][c] <- m[c][r], four stages swapping the off-diagonal
 * blocks of 8, 4, 2 and 1 lanes (two two-source shuffles per pair of rows) */
#define X8LO 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define X8HI 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define X4LO 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define X4HI 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define X2LO 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define X2HI 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define X1LO 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define X1HI 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define XSTAGE(m, b, LO, HI)                                                        \
    for (int r_ = 0; r_ < NL; r_++)                                                 \
        if (!(r_ & (b))) {                                                          \
            const vf x_ = (m)[r_], y_ = (m)[r_ | (b)];                              \
            (m)[r_] = SHUF2(x_, y_, LO);                                            \
            (m)[r_ | (b)] = SHUF2(x_, y_, HI);                                      \
        }
static inline void transpose16(vf *m) {
    XSTAGE(m, 8, X8LO, X8HI)
    XSTAGE(m, 4, X4LO, X4HI)
    XSTAGE(m, 2, X2LO, X2HI)
    XSTAGE(m, 1, X1LO, X1HI)
}
#undef XSTAGE

static inline vf vreverse(vf v) { return SHUF1(v, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0); }

/* the time rows of scan steps s .. s+NL-1: 1 = consecutive rows ascending, -1 = descending, 0 = neither */
static inline int run_dir(const int32_t *restrict pos) {
    int up = 1, down = 1;
    for (int i = 1; i < NL; i++) {
        up &= pos[i] == pos[0] + i;
        down &= pos[i] == pos[0] - i;
    }
    return up ? 1 : (down ? -1 : 0);
}

/* dst[s * NL + c] = src[c * sd + pos[s] * st] for the T live channels, 0 in the other lanes */
static void gather_g(int64_t L, int64_t T, float *restrict dst, const float *restrict src, int64_t sd,
                     int64_t st, const int32_t *restrict pos) {
    if (T < NL) memset(dst, 0, (size_t)L * NL * sizeof(float));
    if (sd == 1) {   /* time-major: a step's channels are one contiguous run */
        for (int64_t s = 0; s < L; s++) {
            if (s + PREFETCH < L) __builtin_prefetch(src + (int64_t)pos[s + PREFETCH] * st, 0, 0);
            const float *row = src + (int64_t)pos[s] * st;
            if (T == NL) vstore(dst + s * NL, vload(row));
            else memcpy(dst + s * NL, row, (size_t)T * sizeof(float));
        }
        return;
    }
    /* channel-major: a transposing copy; 16 steps x 16 channels at a time through registers where
     * the 16 steps are 16 consecutive rows (all but the block where a reversed span ends) */
    int64_t s = 0;
    if (T == NL && st == 1)
        for (; s + NL <= L; s += NL) {
            const int dir = run_dir(pos + s);
            if (!dir) break;
            const float *at = src + (dir > 0 ? pos[s] : pos[s + NL - 1]);
            vf m[NL];
            for (int c = 0; c < NL; c++) m[c] = dir > 0 ? vload(at + c * sd) : vreverse(vload(at + c * sd));
            transpose16(m);
            for (int t = 0; t < NL; t++) vstore(dst + (s + t) * NL, m[t]);
        }
    for (; s < L; s++) {   /* one step (16 reads, one from each channel's row) at a time */
        const float *col = src + (int64_t)pos[s] * st;
        float *out = dst + s * NL;
        for (int64_t c = 0; c < T; c++) out[c] = col[c * sd];
    }
}

/* the inverse: dst[c * sd + pos[s] * st] = src[s * NL + c] for the T live channels */
static void scatter_g(int64_t L, int64_t T, float *restrict dst, const float *restrict src, int64_t sd,
                      int64_t st, const int32_t *restrict pos) {
    if (sd == 1) {
        for (int64_t s = 0; s < L; s++) {
            if (s + PREFETCH < L) __builtin_prefetch(dst + (int64_t)pos[s + PREFETCH] * st, 1, 0);
            float *row = dst + (int64_t)pos[s] * st;
            if (T == NL) vstore(row, vload(src + s * NL));
            else memcpy(row, src + s * NL, (size_t)T * sizeof(float));
        }
        return;
    }
    int64_t s = 0;
    if (T == NL && st == 1)
        for (; s + NL <= L; s += NL) {
            const int dir = run_dir(pos + s);
            if (!dir) break;
            float *at = dst + (dir > 0 ? pos[s] : pos[s + NL - 1]);
            vf m[NL];
            for (int t = 0; t < NL; t++) m[t] = vload(src + (s + t) * NL);
            transpose16(m);
            for (int c = 0; c < NL; c++) vstore(at + c * sd, dir > 0 ? m[c] : vreverse(m[c]));
        }
    for (; s < L; s++) {
        float *col = dst + (int64_t)pos[s] * st;
        const float *in = src + s * NL;
        for (int64_t c = 0; c < T; c++) col[c * sd] = in[c];
    }
}

/* A tile: up to NT consecutive groups of one sample, gathered and scattered together (group g of
 * the tile in dst + g * L * NL), so a time-major row is read and written NT * 64 bytes at a time
 * (four cache lines of one page, not one line per page and group); channel-major rows go group by
 * group through the transposes above. T: live channels of the tile. */
#define NT 4

static void gather_t(int64_t L, int64_t T, float *restrict dst, const float *restrict src, int64_t sd,
                     int64_t st, const int32_t *restrict pos) {
    const int64_t ng = (T + NL - 1) / NL;
    if (sd != 1 || ng == 1) {
        for (int64_t g = 0; g < ng; g++)
            gather_g(L, T - g * NL < NL ? T - g * NL : NL, dst + g * L * NL, src + g * NL * sd, sd, st, pos);
        return;
    }
    const int64_t tail = T - (ng - 1) * NL;   /* live channels of the last group */
    float *last = dst + (ng - 1) * L * NL;
    if (tail < NL) memset(last, 0, (size_t)L * NL * sizeof(float));
    for (int64_t s = 0; s < L; s++) {
        if (s + PREFETCH < L) __builtin_prefetch(src + (int64_t)pos[s + PREFETCH] * st, 0, 0);
        const float *row = src + (int64_t)pos[s] * st;
        for (int64_t g = 0; g + 1 < ng; g++) vstore(dst + g * L * NL + s * NL, vload(row + g * NL));
        memcpy(last + s * NL, row + (ng - 1) * NL, (size_t)tail * sizeof(float));
    }
}

static void scatter_t(int64_t L, int64_t T, float *restrict dst, const float *restrict src, int64_t sd,
                      int64_t st, const int32_t *restrict pos) {
    const int64_t ng = (T + NL - 1) / NL;
    if (sd != 1 || ng == 1) {
        for (int64_t g = 0; g < ng; g++)
            scatter_g(L, T - g * NL < NL ? T - g * NL : NL, dst + g * NL * sd, src + g * L * NL, sd, st, pos);
        return;
    }
    const int64_t tail = T - (ng - 1) * NL;
    const float *last = src + (ng - 1) * L * NL;
    for (int64_t s = 0; s < L; s++) {
        if (s + PREFETCH < L) __builtin_prefetch(dst + (int64_t)pos[s + PREFETCH] * st, 1, 0);
        float *row = dst + (int64_t)pos[s] * st;
        for (int64_t g = 0; g + 1 < ng; g++) vstore(row + g * NL, vload(src + g * L * NL + s * NL));
        memcpy(row + (ng - 1) * NL, last + s * NL, (size_t)tail * sizeof(float));
    }
}

/* dl <- mask ? (softplus ? softplus(raw + bias) : raw + bias) : 0 in place (raw in dl), 0 in dead lanes */
static void prep_delta(int64_t L, int64_t T, float *restrict dl, const float *restrict bias, int softplus,
                       const uint8_t *restrict mrow, const int32_t *restrict pos) {
    const vf bv = bias ? lanes(bias, 1, T) : vbroadcast(0.0f), zero = vbroadcast(0.0f);
    const vi live = live_lanes(T);
    for (int64_t s = 0; s < L; s++) {
        vf x = vload(dl + s * NL) + bv;
        if (softplus) x = vsoftplus(x);
        if (mrow && !mrow[pos[s]]) x = zero;
        vstore(dl + s * NL, vsel(live, x, zero));
    }
}

/* g <- g * d(delta)/d(raw) (mask, softplus' = sigmoid(raw + bias)) in place; returns the per-lane
 * sum over the steps (the bias gradient) */
static vf prep_delta_bwd(int64_t L, int64_t T, float *restrict g, const float *restrict raw,
                         const float *restrict bias, int softplus, const uint8_t *restrict mrow,
                         const int32_t *restrict pos) {
    const vf bv = bias ? lanes(bias, 1, T) : vbroadcast(0.0f), zero = vbroadcast(0.0f);
    const vi live = live_lanes(T);
    vf acc = zero;
    for (int64_t s = 0; s < L; s++) {
        vf gv = vload(g + s * NL);
        if (mrow && !mrow[pos[s]]) gv = zero;
        if (softplus) {
            const vf x = vload(raw + s * NL) + bv;
            gv = vsel(x > 20.0f, gv, gv * vsigmoid(x));
        }
        gv = vsel(live, gv, zero);
        vstore(g + s * NL, gv);
        acc += gv;
    }
    return acc;
}

/* One block of NS states of a group, in scan-step order: y (Y, first block: written, others:
 * accumulated) += C_t . h_t; the block's last states go to hlast ((B, D, N) at (b, d0, k0)). */
static void scan_block_fwd(int64_t L, int64_t N, int64_t T, const float *restrict U, const float *restrict DL,
                           const float *restrict Ad, const float *restrict Bb, const float *restrict Cb,
                           const int32_t *restrict pos, float *restrict Y, float *restrict hlast, int first) {
    vf a[NS], h[NS];
    for (int k = 0; k < NS; k++) { a[k] = lanes(Ad + k, N, T); h[k] = vbroadcast(0.0f); }
    for (int64_t s = 0; s < L; s++) {
        const vf dt = vload(DL + s * NL), du = dt * vload(U + s * NL);
        const float *bp = Bb + (int64_t)pos[s] * N, *cp = Cb + (int64_t)pos[s] * N;
        vf acc = first ? vbroadcast(0.0f) : vload(Y + s * NL);
        for (int k = 0; k < NS; k++) {
            h[k] = vexp(a[k] * dt) * h[k] + du * bp[k];
            acc += h[k] * cp[k];
        }
        vstore(Y + s * NL, acc);
    }
    if (hlast)
        for (int64_t c = 0; c < T; c++)
            for (int k = 0; k < NS; k++) hlast[c * N + k] = h[k][c];
}

/* Y <- (Y + D u) * silu(z) over a group (z may be NULL: no gate), in place */
static void gate_fwd(int64_t L, int64_t T, float *restrict Y, const float *restrict U, const float *restrict Dp,
                     const float *restrict Z) {
    const vf dv = Dp ? lanes(Dp, 1, T) : vbroadcast(0.0f);
    for (int64_t s = 0; s < L; s++) {
        vf v = vload(Y + s * NL) + vload(U + s * NL) * dv;
        if (Z) { const vf zz = vload(Z + s * NL); v = v * zz * vsigmoid(zz); }
        vstore(Y + s * NL, v);
    }
}

/* GYY <- GY * silu(z): the gradient reaching the scan output (Z may be NULL) */
static void gate_bwd_in(int64_t L, float *restrict GYY, const float *restrict GY, const float *restrict Z) {
    if (!Z) { memcpy(GYY, GY, (size_t)L * NL * sizeof(float)); return; }
    for (int64_t s = 0; s < L; s++) {
        const vf zz = vload(Z + s * NL);
        vstore(GYY + s * NL, vload(GY + s * NL) * zz * vsigmoid(zz));
    }
}

/* gradients of the gate and the skip: GY <- gz = gy (acc + D u) silu'(z) in place (when Z), GU += D gyy;
 * returns the per-lane sum over the steps of gyy u (dLoss/dD) */
static vf gate_bwd_out(int64_t L, int64_t T, const float *restrict ACC, float *restrict GY,
                       const float *restrict GYY, const float *restrict U, const float *restrict Dp,
                       const float *restrict Z, float *restrict GU) {
    const vf dv = Dp ? lanes(Dp, 1, T) : vbroadcast(0.0f);
    vf sd = vbroadcast(0.0f);
    for (int64_t s = 0; s < L; s++) {
        const vf uu = vload(U + s * NL), g = vload(GYY + s * NL);
        sd += g * uu;
        vstore(GU + s * NL, vload(GU + s * NL) + g * dv);
        if (Z) {
            const vf zz = vload(Z + s * NL), sg = vsigmoid(zz);
            const vf y0 = vload(ACC + s * NL) + uu * dv;
            vstore(GY + s * NL, vload(GY + s * NL) * y0 * sg * (1.0f + zz * (1.0f - sg)));
        }
    }
    return sd;
}

/* out_b[k] += sum of the lanes of rb[k], out_c[k] += those of rc[k] (k < NS = 4): eight horizontal
 * sums as one transposing tree (halves, quarters, pairs, neighbours) instead of eight trees. */
static inline void reduce_add8(const vf *rb, const vf *rc, float *restrict out_b, float *restrict out_c) {
    /* level 1: a pair (x, y) -> lanes 0-7: x's halves summed, lanes 8-15: y's */
#define HALVES(x, y) (SHUF2(x, y, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) + \
                      SHUF2(x, y, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31))
    const vf s01 = HALVES(rb[0], rb[1]), s23 = HALVES(rb[2], rb[3]);
    const vf s45 = HALVES(rc[0], rc[1]), s67 = HALVES(rc[2], rc[3]);
#undef HALVES
    /* level 2: lanes 0-3: v0 (v4), 4-7: v2 (v6), 8-11: v1 (v5), 12-15: v3 (v7) */
#define QUARTERS(x, y) (SHUF2(x, y, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27) + \
                        SHUF2(x, y, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31))
    const vf t = QUARTERS(s01, s23), w = QUARTERS(s45, s67);
#undef QUARTERS
    /* level 3: lane pairs (0,1) v0, (2,3) v4, (4,5) v2, (6,7) v6, (8,9) v1, (10,11) v5, (12,13) v3, (14,15) v7 */
    const vf q = SHUF2(t, w, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +
                 SHUF2(t, w, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    /* level 4: even lanes hold the sums */
    float r[NL];
    vstore(r, q + SHUF1(q, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
    out_b[0] += r[0]; out_b[1] += r[8]; out_b[2] += r[4]; out_b[3] += r[12];
    out_c[0] += r[2]; out_c[1] += r[10]; out_c[2] += r[6]; out_c[3] += r[14];
}

/* One block of NS states of a group: pass 1 stores the decays exp(delta_t A) (E), checkpoints the
 * states every CK steps (HC) and accumulates the scan output C_t . h_t (ACC, for the gate's
 * gradient; NULL: not needed); pass 2 walks the CK-step windows from the end, re-computes their
 * states (HB) from the checkpoint and runs the adjoint G_t = dLoss/dh_t back through them. GU/GDL
 * are written by the first block and accumulated by the others; gB, gC ((B, L, N) partials of this
 * thread at (b, 0, k0)) and gA (at (d0, k0)) are accumulated. */
static void scan_block_bwd(int64_t L, int64_t N, int64_t T, const float *restrict U, const float *restrict DL,
                           const float *restrict Ad, const float *restrict Bb, const float *restrict Cb,
                           const int32_t *restrict pos, const float *restrict GYY, const float *restrict gl,
                           float *restrict GU, float *restrict GDL, float *restrict gAd, float *restrict gBb,
                           float *restrict gCb, float *restrict E, float *restrict HC, float *restrict HB,
                           float *restrict ACC, int first) {
    const vf zero = vbroadcast(0.0f);
    vf a[NS], h[NS], G[NS], ga[NS];
    for (int k = 0; k < NS; k++) {
        a[k] = lanes(Ad + k, N, T);
        h[k] = zero;
        G[k] = gl ? lanes(gl + k, N, T) : zero;
        ga[k] = zero;
    }
    for (int64_t s = 0; s < L; s++) {
        if (s % CK == 0)
            for (int k = 0; k < NS; k++) vstore(HC + ((s / CK) * NS + k) * NL, h[k]);
        const vf dt = vload(DL + s * NL), du = dt * vload(U + s * NL);
        const float *bp = Bb + (int64_t)pos[s] * N, *cp = Cb + (int64_t)pos[s] * N;
        vf acc = zero;
        for (int k = 0; k < NS; k++) {
            const vf e = vexp(a[k] * dt);
            vstore(E + (s * NS + k) * NL, e);
            h[k] = e * h[k] + du * bp[k];
            acc += h[k] * cp[k];
        }
        if (ACC) vstore(ACC + s * NL, first ? acc : vload(ACC + s * NL) + acc);
    }
    for (int64_t c0 = (L - 1) / CK * CK; c0 >= 0; c0 -= CK) {
        const int64_t c1 = c0 + CK < L ? c0 + CK : L;
        const float *h0 = HC + (c0 / CK) * NS * NL;   /* the states before step c0 */
        for (int k = 0; k < NS; k++) h[k] = vload(h0 + k * NL);
        for (int64_t s = c0; s < c1; s++) {
            const vf du = vload(DL + s * NL) * vload(U + s * NL);
            const float *bp = Bb + (int64_t)pos[s] * N;
            for (int k = 0; k < NS; k++) {
                h[k] = vload(E + (s * NS + k) * NL) * h[k] + du * bp[k];
                vstore(HB + ((s - c0) * NS + k) * NL, h[k]);
            }
        }
        for (int64_t s = c1 - 1; s >= c0; s--) {
            const vf dt = vload(DL + s * NL), uu = vload(U + s * NL), du = dt * uu, g = vload(GYY + s * NL);
            const int64_t p = (int64_t)pos[s] * N;
            const float *bp = Bb + p, *cp = Cb + p;
            const float *hp = s > c0 ? HB + (s - 1 - c0) * NS * NL : h0;   /* h_{s-1} */
            vf gdu = zero, gdt = zero, rb[NS], rc[NS];
            for (int k = 0; k < NS; k++) {
                const vf Gt = G[k] + g * cp[k];   /* dLoss/dh_s */
                const vf e = vload(E + (s * NS + k) * NL);
                rc[k] = vload(HB + ((s - c0) * NS + k) * NL) * g;
                rb[k] = Gt * du;
                gdu += Gt * bp[k];
                const vf x = Gt * vload(hp + k * NL) * e;   /* dLoss/d(delta_s A) */
                gdt += x * a[k];
                ga[k] += x * dt;
                G[k] = Gt * e;
            }
            reduce_add8(rb, rc, gBb + p, gCb + p);
            const vf gl_s = gdu * uu + gdt, gu_s = gdu * dt;
            vstore(GDL + s * NL, first ? gl_s : vload(GDL + s * NL) + gl_s);
            vstore(GU + s * NL, first ? gu_s : vload(GU + s * NL) + gu_s);
        }
    }
    for (int64_t c = 0; c < T; c++)
        for (int k = 0; k < NS; k++) gAd[c * N + k] += ga[k][c];
}

/* scratch of L steps x `per` floats per step, 64-byte aligned (at least one vector) */
static float *scratch(int64_t L, int64_t per) {
    size_t n = (size_t)((L > 0 ? L : 1) * per * (int64_t)sizeof(float) + 63) / 64 * 64;
    return (float *)aligned_alloc(64, n);
}

#define AT(a, k) (j->a + b * st[(k)] + d0 * st[(k) + 1])   /* array a at (b, first channel of the tile) */

static void *fwd_worker(void *arg) {
    job_t *j = (job_t *)arg;
    const int64_t L = j->L, N = j->N, dim = j->dim, gl = L * NL;
    const int64_t *st = j->st;
    int64_t g0, g1;
    group_range(j, &g0, &g1);
    int32_t *pos = (int32_t *)scratch(L, 1);
    float *U = scratch(L, NT * NL), *DL = scratch(L, NT * NL), *Z = scratch(L, NT * NL), *Y = scratch(L, NT * NL);
    if (!pos || !U || !DL || !Z || !Y) { j->thr.failed = 1; goto done; }
    for (int64_t b = 0; b < j->bsz; b++) {
        fill_pos(pos, L, j->lengths, b);
        const uint8_t *mrow = j->mask ? j->mask + b * L : NULL;
        for (int64_t t0 = g0; t0 < g1; t0 += NT) {
            const int64_t d0 = t0 * NL, end = (t0 + NT < g1 ? t0 + NT : g1) * NL;
            const int64_t TT = (end < dim ? end : dim) - d0;   /* live channels of the tile */
            gather_t(L, TT, U, AT(u, S_U), st[S_U + 1], st[S_U + 2], pos);
            gather_t(L, TT, DL, AT(delta, S_DELTA), st[S_DELTA + 1], st[S_DELTA + 2], pos);
            if (j->z) gather_t(L, TT, Z, AT(z, S_Z), st[S_Z + 1], st[S_Z + 2], pos);
            for (int64_t g = 0; g * NL < TT; g++) {
                const int64_t dg = d0 + g * NL, T = TT - g * NL < NL ? TT - g * NL : NL;
                float *Ug = U + g * gl, *DLg = DL + g * gl, *Yg = Y + g * gl;
                prep_delta(L, T, DLg, j->dbias ? j->dbias + dg : NULL, j->softplus, mrow, pos);
                for (int64_t k0 = 0; k0 < N; k0 += NS)
                    scan_block_fwd(L, N, T, Ug, DLg, j->A + dg * N + k0, j->Bt + b * L * N + k0,
                                   j->Ct + b * L * N + k0, pos, Yg,
                                   j->hlast ? j->hlast + (b * dim + dg) * N + k0 : NULL, k0 == 0);
                gate_fwd(L, T, Yg, Ug, j->Dp ? j->Dp + dg : NULL, j->z ? Z + g * gl : NULL);
            }
            scatter_t(L, TT, AT(y, S_Y), Y, st[S_Y + 1], st[S_Y + 2], pos);
        }
    }
done:
    free(pos); free(U); free(DL); free(Z); free(Y);
    return NULL;
}

/* Backward. Each thread owns a range of channel groups, so gA, gD and gdbias rows are its own; gB
 * and gC (summed over channels) go to per-thread partial buffers (gB + tid * B*L*N) that the caller
 * reduces. */
static void *bwd_worker(void *arg) {
    job_t *j = (job_t *)arg;
    const int64_t L = j->L, N = j->N, dim = j->dim, BLN = j->bsz * L * N, gl = L * NL;
    const int64_t *st = j->st;
    int64_t g0, g1;
    group_range(j, &g0, &g1);
    enum { U_, RAW_, Z_, GY_, GU_, GDL_, NTILES };   /* gathered / scattered per tile */
    enum { DL_, GYY_, ACC_, NROWS };                  /* per group */
    float *tl[NTILES] = {0}, *rw[NROWS] = {0};
    int32_t *pos = (int32_t *)scratch(L, 1);
    float *E = scratch(L, NS * NL), *HC = scratch(L / CK + 1, NS * NL), *HB = scratch(CK, NS * NL);
    int ok = pos && E && HC && HB;
    for (int i = 0; i < NTILES; i++) { tl[i] = scratch(L, NT * NL); ok = ok && tl[i]; }
    for (int i = 0; i < NROWS; i++) { rw[i] = scratch(L, NL); ok = ok && rw[i]; }
    if (!ok) { j->thr.failed = 1; goto done; }
    float *DL = rw[DL_], *GYY = rw[GYY_], *ACC = rw[ACC_];
    const int gated = j->z != NULL || j->Dp != NULL;
    float *gBp = j->gB + j->thr.tid * BLN, *gCp = j->gC + j->thr.tid * BLN;
    for (int64_t b = 0; b < j->bsz; b++) {
        fill_pos(pos, L, j->lengths, b);
        const uint8_t *mrow = j->mask ? j->mask + b * L : NULL;
        for (int64_t t0 = g0; t0 < g1; t0 += NT) {
            const int64_t d0 = t0 * NL, end = (t0 + NT < g1 ? t0 + NT : g1) * NL;
            const int64_t TT = (end < dim ? end : dim) - d0;
            gather_t(L, TT, tl[U_], AT(u, S_U), st[S_U + 1], st[S_U + 2], pos);
            gather_t(L, TT, tl[RAW_], AT(delta, S_DELTA), st[S_DELTA + 1], st[S_DELTA + 2], pos);
            if (j->z) gather_t(L, TT, tl[Z_], AT(z, S_Z), st[S_Z + 1], st[S_Z + 2], pos);
            gather_t(L, TT, tl[GY_], AT(gy, S_GY), st[S_GY + 1], st[S_GY + 2], pos);
            for (int64_t g = 0; g * NL < TT; g++) {
                const int64_t dg = d0 + g * NL, T = TT - g * NL < NL ? TT - g * NL : NL;
                const float *bias = j->dbias ? j->dbias + dg : NULL;
                float *U = tl[U_] + g * gl, *RAW = tl[RAW_] + g * gl, *Z = j->z ? tl[Z_] + g * gl : NULL;
                float *GY = tl[GY_] + g * gl, *GU = tl[GU_] + g * gl, *GDL = tl[GDL_] + g * gl;
                memcpy(DL, RAW, (size_t)gl * sizeof(float));
                prep_delta(L, T, DL, bias, j->softplus, mrow, pos);
                gate_bwd_in(L, GYY, GY, Z);
                for (int64_t k0 = 0; k0 < N; k0 += NS)
                    scan_block_bwd(L, N, T, U, DL, j->A + dg * N + k0, j->Bt + b * L * N + k0,
                                   j->Ct + b * L * N + k0, pos, GYY,
                                   j->glast ? j->glast + (b * dim + dg) * N + k0 : NULL, GU, GDL,
                                   j->gA + dg * N + k0, gBp + b * L * N + k0, gCp + b * L * N + k0, E, HC, HB,
                                   Z ? ACC : NULL, k0 == 0);
                if (gated) {   /* gz is written over gy (GY), element by element */
                    const vf gd = gate_bwd_out(L, T, ACC, GY, GYY, U, j->Dp ? j->Dp + dg : NULL, Z, GU);
                    if (j->gD)
                        for (int64_t c = 0; c < T; c++) j->gD[dg + c] += gd[c];
                }
                const vf gb = prep_delta_bwd(L, T, GDL, RAW, bias, j->softplus, mrow, pos);
                if (j->gdbias)
                    for (int64_t c = 0; c < T; c++) j->gdbias[dg + c] += gb[c];
            }
            scatter_t(L, TT, AT(gu, S_GU), tl[GU_], st[S_GU + 1], st[S_GU + 2], pos);
            scatter_t(L, TT, AT(gdelta, S_GDELTA), tl[GDL_], st[S_GDELTA + 1], st[S_GDELTA + 2], pos);
            if (j->gz) scatter_t(L, TT, AT(gz, S_GZ), tl[GY_], st[S_GZ + 1], st[S_GZ + 2], pos);
        }
    }
done:
    free(pos); free(E); free(HC); free(HB);
    for (int i = 0; i < NTILES; i++) free(tl[i]);
    for (int i = 0; i < NROWS; i++) free(rw[i]);
    return NULL;
}

#undef AT

/* threads of a scan: at most one per group of NL channels */
static int scan_threads(int64_t dim, int nthreads) { return clamp_threads(n_groups(dim), nthreads); }

/* Number of partial gB/gC buffers the backward pass needs for `nthreads` (the caller allocates
 * that many (B, L, N) zeroed buffers and sums them). */
int depdet_scan_bwd_parts(int64_t dim, int nthreads) { return scan_threads(dim, nthreads); }

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
    return run_jobs(fwd_worker, &j, sizeof j, scan_threads(dim, nthreads));
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
    return run_jobs(bwd_worker, &j, sizeof j, scan_threads(dim, nthreads));
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
    worker_t thr;             /* first: see run_jobs() */
    int64_t bsz, dim, L, K;
    const int64_t *st;        /* [b, d, t] strides of x, then of gy (6 values) */
    const float *x, *w, *bias, *gy;
    int silu, reverse;
    float *y, *gx, *gw, *gb;
} conv_job_t;

/* padded scratch row: P = K-1 zeros, the L values, then zeros past any vector the loops touch */
static int64_t conv_row_len(int64_t L, int64_t K) { return (2 * K + L + 2 * NB + 15) / 16 * 16; }

/* this thread's contiguous channel range [d0, d1) */
static void conv_channels(const conv_job_t *j, int64_t *d0, int64_t *d1) { split_range(j->dim, &j->thr, d0, d1); }

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
    if (!xp || !wr) { j->thr.failed = 1; goto done; }
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
    if (!xp || !gp || !wr) { j->thr.failed = 1; goto done; }
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

/* y (B, D, L) contiguous = act(conv(x) + bias); strides: x's [b, d, t] (3 values); bias may be NULL;
 * K >= 1. Returns nonzero when out of memory or a thread could not be started. */
int depdet_conv_fwd(int64_t bsz, int64_t dim, int64_t L, int64_t K, const int64_t *strides, const float *x,
                    const float *w, const float *bias, int silu, int reverse, float *y, int nthreads) {
    conv_job_t j;
    memset(&j, 0, sizeof j);
    int64_t st[6] = {strides[0], strides[1], strides[2], 0, 0, 0};
    j.bsz = bsz; j.dim = dim; j.L = L; j.K = K; j.st = st;
    j.x = x; j.w = w; j.bias = bias; j.silu = silu; j.reverse = reverse; j.y = y;
    return run_jobs(conv_fwd_worker, &j, sizeof j, clamp_threads(dim, nthreads));
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
    return run_jobs(conv_bwd_worker, &j, sizeof j, clamp_threads(dim, nthreads));
}
