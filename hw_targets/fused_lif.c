/* One fused pass of the chip model's neuron update (hw_targets/fused_lif.py says why and how it
 * is built). Per neuron i, in this order and in the membrane's float type, exactly the operations of
 * ChipModel's torch passes (so the results are identical; the tests compare them bit for bit):
 *
 *   v = decay(v)                               mode 0: none, 1: trunc(v / 4096), 2: trunc(v * mul / 4096)
 *   v = v + alpha * (y[i] + ds[i] * dw[j])     the layer's input current (y and/or one diagonal term)
 *   v = v + bias[j]                            where a bias is given (not folded into y)
 *   v = clamp(v, -vmax, vmax)
 *   s = v > th;  v = s ? (subtract ? v - th : 0) : v
 *   s_f32[i] = s;  s_u8[i] = s;  counts[image of i] += s (each where given; counts per image)
 *
 * The arrays hold n neurons in the tensors' memory order, images one after the other; j is the index
 * within an image (`per_image` neurons), so dw is a diagonal weight already laid out per neuron, and
 * the bias covers one image (bias_images = 0) or all of them (1).
 * Built with -ffp-contract=off so no multiply-add is fused differently from torch's kernels, and
 * -fno-trapping-math so the compares and selects vectorise.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define TILE 2048 /* neurons per tile: the spike scratch stays in L1/L2 between the two loops */

/* The membrane update of one tile; the flags are compile-time constants at each call below, so
 * the compiler specialises it and vectorises the loop without branches. */
#define DEFINE_UPDATE(NAME, REAL, TRUNC)                                                          \
    static inline __attribute__((always_inline)) void NAME(                                      \
        REAL *restrict v, int64_t len, const int decay, REAL decay_mul, const float *restrict y,  \
        const float *restrict ds, const float *restrict dw, REAL alpha, const REAL *restrict bias,\
        REAL vmax, REAL th, float *restrict spk, const int has_y, const int has_d,                \
        const int has_b, const int sub)                                                           \
    {                                                                                             \
        for (int64_t j = 0; j < len; ++j) {                                                       \
            REAL vi = v[j];                                                                       \
            if (decay == 1) vi = TRUNC(vi / (REAL)4096);                                          \
            if (decay == 2) vi = TRUNC((vi * decay_mul) / (REAL)4096);                            \
            if (has_y && has_d) vi = vi + alpha * (REAL)(y[j] + ds[j] * dw[j]);                   \
            if (has_y && !has_d) vi = vi + alpha * (REAL)y[j];                                    \
            if (!has_y && has_d) vi = vi + alpha * (REAL)(ds[j] * dw[j]);                         \
            if (has_b) vi = vi + bias[j];                                                         \
            vi = vi < -vmax ? -vmax : vi;                                                         \
            vi = vi > vmax ? vmax : vi;                                                           \
            REAL fired = vi > th ? (REAL)1 : (REAL)0;                                             \
            vi = sub ? vi - fired * th : vi - vi * fired;                                         \
            v[j] = vi;                                                                            \
            spk[j] = (float)fired;                                                                \
        }                                                                                         \
    }

#define DISPATCH_INPUT(UPDATE, DECAY, HB, SUB)                                                    \
    if (y && ds) UPDATE(V, len, DECAY, decay_mul, Y, DS, DW, alpha, B, vmax, th, spk, 1, 1, HB, SUB); \
    else if (y) UPDATE(V, len, DECAY, decay_mul, Y, DS, DW, alpha, B, vmax, th, spk, 1, 0, HB, SUB);  \
    else if (ds) UPDATE(V, len, DECAY, decay_mul, Y, DS, DW, alpha, B, vmax, th, spk, 0, 1, HB, SUB); \
    else UPDATE(V, len, DECAY, decay_mul, Y, DS, DW, alpha, B, vmax, th, spk, 0, 0, HB, SUB);

#define DISPATCH_FLAGS(UPDATE, DECAY)                                                             \
    if (bias && subtract) { DISPATCH_INPUT(UPDATE, DECAY, 1, 1) }                                 \
    else if (bias) { DISPATCH_INPUT(UPDATE, DECAY, 1, 0) }                                        \
    else if (subtract) { DISPATCH_INPUT(UPDATE, DECAY, 0, 1) }                                    \
    else { DISPATCH_INPUT(UPDATE, DECAY, 0, 0) }

/* (x - x * s) resets to 0 exactly as torch's v.sub_(v * s); (x - s * th) as v.sub_(s, alpha=th). */
#define DEFINE_STEP(NAME, UPDATE, REAL)                                                           \
    int NAME(REAL *restrict v, int64_t n, int64_t per_image, int decay_mode, REAL decay_mul,      \
             const float *restrict y, const float *restrict ds, const float *restrict dw,         \
             REAL alpha, const REAL *restrict bias, int bias_images, REAL vmax, REAL th,          \
             int subtract, float *restrict s_f32, uint8_t *restrict s_u8, int64_t *restrict counts) \
    {                                                                                             \
        float scratch[TILE];                                                                      \
        if (per_image <= 0 || n % per_image || decay_mode < 0 || decay_mode > 2) return -1;       \
        for (int64_t img = 0; img < n; img += per_image) {                                        \
            for (int64_t t0 = 0; t0 < per_image; t0 += TILE) {                                    \
                int64_t len = per_image - t0 < TILE ? per_image - t0 : TILE, i0 = img + t0;       \
                REAL *V = v + i0;                                                                 \
                const float *Y = y ? y + i0 : 0, *DS = ds ? ds + i0 : 0, *DW = dw ? dw + t0 : 0;  \
                const REAL *B = bias ? bias + (bias_images ? i0 : t0) : 0;                        \
                float *spk = s_f32 ? s_f32 + i0 : scratch;                                        \
                if (decay_mode == 0) { DISPATCH_FLAGS(UPDATE, 0) }                                \
                else if (decay_mode == 1) { DISPATCH_FLAGS(UPDATE, 1) }                           \
                else { DISPATCH_FLAGS(UPDATE, 2) }                                                \
                if (s_u8) for (int64_t j = 0; j < len; ++j) s_u8[i0 + j] = (uint8_t)spk[j];       \
                if (counts) { /* an integer sum, which the compiler may vectorise */              \
                    int32_t total = 0;                                                            \
                    for (int64_t j = 0; j < len; ++j) total += spk[j] != 0.0f;                    \
                    counts[img / per_image] += total;                                             \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        return 0;                                                                                 \
    }

DEFINE_UPDATE(update_f32, float, truncf)
DEFINE_UPDATE(update_f64, double, trunc)
DEFINE_STEP(lif_step_f32, update_f32, float)
DEFINE_STEP(lif_step_f64, update_f64, double)
