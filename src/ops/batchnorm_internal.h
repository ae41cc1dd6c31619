/* Per-channel pieces of the batch-norm forward and backward shared by the local
 * (batchnorm.c) and the synchronised (batchnorm_sync.c) versions, so both compute exactly the
 * same numbers. */
#ifndef BARLOW_OPS_BATCHNORM_INTERNAL_H
#define BARLOW_OPS_BATCHNORM_INTERNAL_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The ReLU's mask of the fused batch norm + ReLU, applied where `relu` (a constant at every
 * call, so each copy compiles without the test): bt_relu_forward's `v <= 0 ? 0 : v` on the
 * output and bt_relu_backward_inplace's `y <= 0 ? 0 : dy` on the gradient. The latter as
 * bits, d's where !(y <= 0) and +0's (all zero) elsewhere, the same number: written as `?:`
 * gcc keeps grad_sums' 16 unrolled lanes scalar, with a branch per element. And never on the
 * float as loaded: gcc then makes the load of dy a masked load, which waits for y's (the
 * (256, 256, 8x8) layer's grad_sums ran at half the plain one's speed). grad_sums masks dy
 * converted to double (BNK_MASKD, the same double); dx and dx_eval select between the
 * expression computed on dy and on +0 (BNK_SEL), which gives the same float as on the
 * masked dy. */
static inline __attribute__((always_inline)) double bnk_maskd(float y, double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    b &= -(uint64_t)!(y <= 0);
    double g;
    memcpy(&g, &b, sizeof g);
    return g;
}
/* !(y <= 0) ? u : v, as bits */
static inline __attribute__((always_inline)) float bnk_sel(float y, float u, float v) {
    uint32_t a, b;
    memcpy(&a, &u, sizeof a);
    memcpy(&b, &v, sizeof b);
    const uint32_t m = -(uint32_t)!(y <= 0);
    a = (a & m) | (b & ~m);
    float g;
    memcpy(&g, &a, sizeof g);
    return g;
}
#define BNK_RELU(relu, v) ((relu) && (v) <= 0 ? 0.0f : (v))
#define BNK_MASKD(relu, y, d) ((relu) ? bnk_maskd((y), (d)) : (d))
/* f(g) for g = the masked dy, as f(dy) or f(+0) (both computed: the loads stay plain) */
#define BNK_SEL(relu, y, fd, f0) ((relu) ? bnk_sel((y), (fd), (f0)) : (fd))
/* dx += v, or where `set` (a constant at every call, as relu) dx = 0 + v: the value `+=`
 * leaves in a dx zeroed beforehand, bit for bit, without reading dx (a plain store of v would
 * keep a v of -0, which 0 + v makes +0; e.g. a channel whose dy is all 0 under a negative
 * gamma). The add of +0 cannot be folded away without -fno-signed-zeros. */
#define BNK_STORE(set, o, v) ((o) = (set) ? 0.0f + (v) : (o) + (v))

/* One element of the three backward loops, shared by the per-channel loops
 * (batchnorm_kernels.c) and the BatchNorm1d blocks (batchnorm.c) so that both compute the same
 * bits. The sums: a1 += g, a2 += g * xhat, g the masked dy in double, xhat = (x - m) * r. */
#define BNK_GRAD_TERMS(relu, yv, dv, xv, m, r, a1, a2)                                           \
    do {                                                                                         \
        const double g_ = BNK_MASKD(relu, (yv), (double)(dv));                                   \
        (a1) += g_;                                                                              \
        (a2) += g_ * (((xv) - (m)) * (r));                                                       \
    } while (0)
/* Training: k * ((g - mdy) - xhat * mdyx), with g - mdy as dy - mdy or +0 - mdy. */
#define BNK_DX(relu, yv, dv, xv, m, r, k, mdy, mdyx)                                             \
    ((k) * (BNK_SEL(relu, (yv), (dv) - (mdy), 0.0f - (mdy)) - ((xv) - (m)) * (r) * (mdyx)))
/* Eval (constant statistics): k * g, as k * dy or k * +0. */
#define BNK_DX_EVAL(relu, yv, dv, k) BNK_SEL(relu, (yv), (k) * (dv), (k) * 0.0f)

/* Channel c's training statistics from its mean m and q = sum((x - m)^2) over cnt values:
 * returns r = 1/sqrt(var + eps) and moves running_mean/var (NULL: not tracked) towards m and
 * the unbiased variance. */
static inline double bn_train_rstd(double m, double q, double cnt, float eps, float momentum,
                                   float *running_mean, float *running_var, int c) {
    if (running_mean) {
        running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
        running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * (q / (cnt - 1)));
    }
    return 1.0 / sqrt(q / cnt + eps);
}

/* Eval mode's r = 1/sqrt(running_var + eps) of channel c. */
static inline double bn_eval_rstd(const float *running_var, float eps, int c) {
    return 1.0 / sqrt((double)running_var[c] + eps);
}

/* Channel c's forward epilogue before the normalisation loop: stores mean[c] and rstd[c]
 * (what the backward reads) from its statistics m and r, and gives the floats of
 * y = ((x - mhi) - mlo) * a + b (see bn_channel_normalize). */
static inline void bn_coeffs(double m, double r, const float *gamma, const float *beta, int c,
                             float *mean, float *rstd, float *mhi, float *mlo, float *a,
                             float *b) {
    mean[c] = (float)m;
    rstd[c] = (float)r;
    *mhi = (float)m, *mlo = (float)(m - *mhi);
    *a = (float)(r * (gamma ? gamma[c] : 1.0f)), *b = beta ? beta[c] : 0.0f;
}

/* The per-channel loops, one copy per instruction-set path (batchnorm_kernels.c). Each works
 * on one channel: rows n = 0..N-1 of HW floats at x + n * cs. Every copy gives bit-identical
 * results (the order of the double sums is fixed by the source, not the vector width). */
typedef struct {
    const char *name;
    double (*sum)(const float *x, size_t cs, int N, int HW);                 /* sum x */
    double (*sqdev)(const float *x, size_t cs, int N, int HW, double m);     /* sum (x-m)^2 */
    /* y = ((x - mhi) - mlo) * a + b */
    void (*norm)(float *y, const float *x, size_t cs, int N, int HW, float mhi, float mlo,
                 float a, float b);
    /* sum dy and sum dy * ((x - m) * r), in double */
    void (*grad_sums)(double *sdy, double *sdyx, const float *dy, const float *x, size_t cs,
                      int N, int HW, float m, float r);
    /* dx += k * (dy - mdy - (x - m) * r * mdyx) */
    void (*dx)(float *dx, const float *dy, const float *x, size_t cs, int N, int HW, float m,
               float r, float k, float mdy, float mdyx);
    void (*dx_eval)(float *dx, const float *dy, size_t cs, int N, int HW, float k); /* dx += k dy */
    /* The same four with a ReLU after the batch norm (batch norm + ReLU in one op): norm_relu
     * stores y = max(0, xhat * a + b) as `v <= 0 ? 0 : v` (bt_relu_forward's expression), and
     * the three backward loops read the ReLU's output y beside dy and use g = y <= 0 ? 0 : dy
     * (bt_relu_backward_inplace's) wherever the plain loops use dy: the same floats in the
     * same order, so the results are those of the two ops one after the other, bit for bit. */
    void (*norm_relu)(float *y, const float *x, size_t cs, int N, int HW, float mhi, float mlo,
                      float a, float b);
    void (*grad_sums_relu)(double *sdy, double *sdyx, const float *dy, const float *y,
                           const float *x, size_t cs, int N, int HW, float m, float r);
    void (*dx_relu)(float *dx, const float *dy, const float *y, const float *x, size_t cs, int N,
                    int HW, float m, float r, float k, float mdy, float mdyx);
    void (*dx_eval_relu)(float *dx, const float *dy, const float *y, size_t cs, int N, int HW,
                         float k);
    /* The four dx loops above as overwrites, for the first writer of dx in a backward: the
     * same arguments and expression, stored as dx = 0 + v instead of dx += v (the bits `+=`
     * gives on a dx of zeros, -0 included); dx is not read. */
    void (*dx_set)(float *dx, const float *dy, const float *x, size_t cs, int N, int HW, float m,
                   float r, float k, float mdy, float mdyx);
    void (*dx_eval_set)(float *dx, const float *dy, size_t cs, int N, int HW, float k);
    void (*dx_relu_set)(float *dx, const float *dy, const float *y, const float *x, size_t cs,
                        int N, int HW, float m, float r, float k, float mdy, float mdyx);
    void (*dx_eval_relu_set)(float *dx, const float *dy, const float *y, size_t cs, int N,
                             int HW, float k);
} bt_bn_kernels;

/* The copy of path isa (a bt_isa; the portable one for a path this build lacks), and of the
 * path in use now. */
const bt_bn_kernels *bt_bn_kernels_for(int isa);
const bt_bn_kernels *bt_bn_kernels_current(void);
/* The helpers below take the copy as `bk`, looked up once per op call, so that every channel
 * of one call runs on the same path. */

/* The forward epilogue of channel c, given its statistics m and r = 1/sqrt(var + eps) in
 * double: stores mean[c], rstd[c] (what the backward reads) and y = xhat * gamma + beta
 * (relu: max(0, that), the fused batch norm + ReLU).
 * The mean is split as hi + lo floats: x - hi is exact when x is near the mean (Sterbenz), so
 * (x - hi) - lo keeps xhat accurate even when |mean| >> std, at float cost; the folded
 * x*a + (b - mean*a) would cancel there. x, y (N, C, HW); gamma, beta (C) or NULL. */
static inline void bn_channel_normalize(const bt_bn_kernels *bk, float *y, float *mean, float *rstd, const float *x,
                                        const float *gamma, const float *beta, double m,
                                        double r, int c, int N, int C, int HW, int relu) {
    const size_t cs = (size_t)C * HW;
    float mhi, mlo, a, b;
    bn_coeffs(m, r, gamma, beta, c, mean, rstd, &mhi, &mlo, &a, &b);
    (relu ? bk->norm_relu : bk->norm)(y + (size_t)c * HW, x + (size_t)c * HW, cs, N, HW, mhi,
                                      mlo, a, b);
}

/* Channel c's sum(dy) and sum(dy * xhat) over (N, HW), in double. x, dy (N, C, HW); relu_y
 * (N, C, HW), the output of a fused batch norm + ReLU whose mask applies to dy, or NULL. */
static inline void bn_channel_sums(const bt_bn_kernels *bk, double *sdy_out, double *sdyx_out, const float *dy,
                                   const float *relu_y, const float *x, float m, float r, int c,
                                   int N, int C, int HW) {
    const size_t cs = (size_t)C * HW, off = (size_t)c * HW;
    if (relu_y) bk->grad_sums_relu(sdy_out, sdyx_out, dy + off, relu_y + off, x + off, cs, N, HW, m, r);
    else bk->grad_sums(sdy_out, sdyx_out, dy + off, x + off, cs, N, HW, m, r);
}

/* Training-mode dx of channel c: dx += k*(dy - mean(dy) - xhat*mean(dy*xhat)), k = gamma*rstd;
 * the two subtracted terms are the gradient through the batch mean and variance. set: dx =
 * (the *_set loops: dx's previous contents are ignored). */
static inline void bn_channel_dx(const bt_bn_kernels *bk, float *dx, const float *dy,
                                 const float *relu_y, const float *x, float m, float r, float k,
                                 float mdy, float mdyx, int c, int N, int C, int HW, int set) {
    const size_t cs = (size_t)C * HW, off = (size_t)c * HW;
    if (relu_y)
        (set ? bk->dx_relu_set : bk->dx_relu)(dx + off, dy + off, relu_y + off, x + off, cs, N,
                                              HW, m, r, k, mdy, mdyx);
    else
        (set ? bk->dx_set : bk->dx)(dx + off, dy + off, x + off, cs, N, HW, m, r, k, mdy, mdyx);
}

/* Eval-mode dx of channel c: dx += k * dy (the statistics are constants); set as above. */
static inline void bn_channel_dx_eval(const bt_bn_kernels *bk, float *dx, const float *dy,
                                      const float *relu_y, float k, int c, int N, int C, int HW,
                                      int set) {
    const size_t cs = (size_t)C * HW, off = (size_t)c * HW;
    if (relu_y)
        (set ? bk->dx_eval_relu_set : bk->dx_eval_relu)(dx + off, dy + off, relu_y + off, cs, N,
                                                        HW, k);
    else
        (set ? bk->dx_eval_set : bk->dx_eval)(dx + off, dy + off, cs, N, HW, k);
}

/* The local (one-rank) batch-norm backward of batchnorm.c, as bt_batchnorm_backward (relu_y
 * NULL) or bt_batchnorm_relu_backward (relu_y the fused op's output), with dx_set: 0 dx +=,
 * 1 dx written, its previous contents ignored (the same bits as += on a zeroed dx).
 * dgamma, dbeta accumulate either way. */
void bt_bn_backward_local(float *dx, float *dgamma, float *dbeta, const float *dy,
                          const float *relu_y, const float *x, const float *gamma,
                          const float *mean, const float *rstd, int N, int C, int HW,
                          int training, int dx_set);

/* HW == 1 (BatchNorm1d): on (the default), the local forward and backward walk blocks of
 * channels row by row instead of one channel at a time, with the same bits (batchnorm.c);
 * off: the per-channel loops, for tests that compare the two. */
void bt_bn_set_rows_1d(int on);

#endif
