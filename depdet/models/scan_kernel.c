/*
 * CPU selective-scan kernel for depdet (forward and backward), compiled at first use by
 * depdet/models/scan_kernel.py with the system C compiler and loaded through ctypes.
 *
 * The recurrence is the plain sequential one of Mamba (selective_scan_ref in mamba.py):
 *     h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t,     y_t = sum_n C_t[n] h_t[n]
 * per (batch b, channel d), with h_{-1} = 0. D, z, delta_bias and softplus are applied in PyTorch
 * around it. Work is split over channels between POSIX threads (no OpenMP: PyTorch ships its own
 * OpenMP runtime and two in one process do not mix well). The inner loop over the d_state states
 * is written with GCC/Clang vector extensions, one block of NB states per vector (no -ffast-math:
 * that would set flush-to-zero for the whole process); exp() is a vector polynomial (~1 ulp).
 *
 * Layouts (all float32, C-contiguous):
 *   u, delta, y, gu, gdelta : (B, D, L)     A, gA : (D, N)     Bt, Ct, gB, gC : (B, L, N)
 *   hlast, glast            : (B, D, N)
 * with N the padded d_state (a multiple of NB = 16).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DEPDET_SCAN_ABI 3

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

typedef struct {
    int tid, nthreads;
    int64_t bsz, dim, L, N;   /* N: padded d_state, a multiple of NB */
    const float *u, *delta, *A, *Bt, *Ct, *gy, *glast;
    float *y, *hlast, *gu, *gdelta, *gA, *gB, *gC;
    int failed;
} job_t;

static void channel_range(const job_t *j, int64_t *d0, int64_t *d1) {
    int64_t per = j->dim / j->nthreads, rem = j->dim % j->nthreads;
    *d0 = j->tid * per + (j->tid < rem ? j->tid : rem);
    *d1 = *d0 + per + (j->tid < rem ? 1 : 0);
}

static void scan_block_fwd(int64_t L, int64_t N, const float *restrict u, const float *restrict dl,
                           const float *restrict Ad, const float *restrict Bb, const float *restrict Cb,
                           float *restrict y, float *restrict hlast, int first) {
    const vf a = vload(Ad);
    vf h = {0};
    for (int64_t t = 0; t < L; t++) {
        const float dt = dl[t], du = dt * u[t];
        h = vexp(a * dt) * h + vload(Bb + t * N) * du;
        const float acc = vsum(h * vload(Cb + t * N));
        y[t] = first ? acc : y[t] + acc;
    }
    if (hlast) vstore(hlast, h);
}

static void *fwd_worker(void *arg) {
    job_t *j = (job_t *)arg;
    const int64_t L = j->L, N = j->N;
    int64_t d0, d1;
    channel_range(j, &d0, &d1);
    for (int64_t b = 0; b < j->bsz; b++) {
        for (int64_t d = d0; d < d1; d++) {
            const int64_t off = (b * j->dim + d) * L;
            for (int64_t k0 = 0; k0 < N; k0 += NB)
                scan_block_fwd(L, N, j->u + off, j->delta + off, j->A + d * N + k0, j->Bt + b * L * N + k0,
                               j->Ct + b * L * N + k0, j->y + off,
                               j->hlast ? j->hlast + (b * j->dim + d) * N + k0 : NULL, k0 == 0);
        }
    }
    return NULL;
}

/* One block of states of one (b, d): re-compute the states h_t (H) and decays exp(delta_t A) (E),
 * then the adjoint scan G_t = dLoss/dh_t from the end. gu/gdelta accumulate over blocks (the caller
 * zeroes them); gB, gC go to this thread's partial buffers; gAd accumulates dLoss/dA. */
static void scan_block_bwd(int64_t L, int64_t N, const float *restrict u, const float *restrict dl,
                           const float *restrict Ad, const float *restrict Bb, const float *restrict Cb,
                           const float *restrict gy, const float *restrict gl, float *restrict gu,
                           float *restrict gdl, float *restrict gAd, float *restrict gBb, float *restrict gCb,
                           float *restrict H, float *restrict E) {
    const vf a = vload(Ad);
    vf h = {0};
    for (int64_t t = 0; t < L; t++) {
        const float dt = dl[t];
        const vf e = vexp(a * dt);
        h = e * h + vload(Bb + t * N) * (dt * u[t]);
        vstore(E + t * NB, e);
        vstore(H + t * NB, h);
    }
    vf G = {0}, ga = {0};
    if (gl) G = vload(gl);
    for (int64_t t = L - 1; t >= 0; t--) {
        const float dt = dl[t], ut = u[t], du = dt * ut, g = gy[t];
        const vf G_t = G + vload(Cb + t * N) * g;       /* dLoss/dh_t */
        vstore(gCb + t * N, vload(gCb + t * N) + vload(H + t * NB) * g);
        vstore(gBb + t * N, vload(gBb + t * N) + G_t * du);
        const float gdu = vsum(G_t * vload(Bb + t * N));
        float gdt = 0.0f;
        const vf e = vload(E + t * NB);
        if (t > 0) {
            const vf x = G_t * vload(H + (t - 1) * NB) * e;   /* dLoss/d(delta_t A) */
            gdt = vsum(x * a);
            ga += x * dt;
        }
        G = G_t * e;
        gdl[t] += gdu * ut + gdt;
        gu[t] += gdu * dt;
    }
    vstore(gAd, vload(gAd) + ga);
}

/* Backward. Each thread owns a channel range, so gA rows are its own; gB and gC (summed over
 * channels) go to per-thread partial buffers (gB + tid * B*L*N) that the caller reduces. */
static void *bwd_worker(void *arg) {
    job_t *j = (job_t *)arg;
    const int64_t L = j->L, N = j->N, BLN = j->bsz * L * N;
    int64_t d0, d1;
    channel_range(j, &d0, &d1);
    float *H = (float *)aligned_alloc(64, (size_t)((L * NB * sizeof(float) + 127) / 64 * 64));
    float *E = (float *)aligned_alloc(64, (size_t)((L * NB * sizeof(float) + 127) / 64 * 64));
    if (!H || !E) { j->failed = 1; free(H); free(E); return NULL; }
    float *gBp = j->gB + j->tid * BLN, *gCp = j->gC + j->tid * BLN;
    for (int64_t b = 0; b < j->bsz; b++) {
        for (int64_t d = d0; d < d1; d++) {
            const int64_t off = (b * j->dim + d) * L;
            for (int64_t k0 = 0; k0 < N; k0 += NB)
                scan_block_bwd(L, N, j->u + off, j->delta + off, j->A + d * N + k0, j->Bt + b * L * N + k0,
                               j->Ct + b * L * N + k0, j->gy + off,
                               j->glast ? j->glast + (b * j->dim + d) * N + k0 : NULL,
                               j->gu + off, j->gdelta + off, j->gA + d * N + k0,
                               gBp + b * L * N + k0, gCp + b * L * N + k0, H, E);
        }
    }
    free(H);
    free(E);
    return NULL;
}

static int run(void *(*fn)(void *), job_t *proto, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    if (nthreads > proto->dim) nthreads = (int)(proto->dim > 0 ? proto->dim : 1);
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
int depdet_scan_bwd_parts(int64_t dim, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    return (int)(nthreads > dim ? (dim > 0 ? dim : 1) : nthreads);
}

int depdet_scan_fwd(int64_t bsz, int64_t dim, int64_t L, int64_t N, const float *u, const float *delta,
                    const float *A, const float *Bt, const float *Ct, float *y, float *hlast, int nthreads) {
    job_t j;
    memset(&j, 0, sizeof j);
    j.bsz = bsz; j.dim = dim; j.L = L; j.N = N;
    j.u = u; j.delta = delta; j.A = A; j.Bt = Bt; j.Ct = Ct; j.y = y; j.hlast = hlast;
    return run(fwd_worker, &j, nthreads);
}

/* gu, gdelta and gA must be zeroed by the caller; gB and gC are depdet_scan_bwd_parts() zeroed (B, L, N) buffers. */
int depdet_scan_bwd(int64_t bsz, int64_t dim, int64_t L, int64_t N, const float *u, const float *delta,
                    const float *A, const float *Bt, const float *Ct, const float *gy, const float *glast,
                    float *gu, float *gdelta, float *gA, float *gB, float *gC, int nthreads) {
    job_t j;
    memset(&j, 0, sizeof j);
    j.bsz = bsz; j.dim = dim; j.L = L; j.N = N;
    j.u = u; j.delta = delta; j.A = A; j.Bt = Bt; j.Ct = Ct; j.gy = gy; j.glast = glast;
    j.gu = gu; j.gdelta = gdelta; j.gA = gA; j.gB = gB; j.gC = gC;
    return run(bwd_worker, &j, nthreads);
}
