/* tc timesteps of a layer of IF/LIF neurons in one pass (privatesnn/neuron_kernel.py says why and
 * how it is built). Per neuron i and step t, in float32 and in this order, exactly the operations
 * of streaming._neuron_chunk's torch passes (so the spikes are identical; tests compare them):
 *
 *   v = v * leak                    (only where leak != 1)
 *   v = v + cur[t][i]               (cur has tc steps, or 1 step reused: a constant current)
 *   z = v > th
 *   v = subtract ? v - z * th : v * (1 - z)
 *   out[t][i] = z
 *
 * The arrays are in the tensors' memory order (the caller checks the layouts). Neurons are taken in
 * tiles so a tile's membranes stay in the L1 cache over the tc steps.
 */
#include <stdint.h>

#define TILE 2048

static inline __attribute__((always_inline)) void steps(
    float *restrict v, const float *restrict cur, int64_t cur_stride, int64_t n, int64_t tc, int64_t i0,
    int64_t len, float leak, const int apply_leak, float th, const int subtract, float *restrict out)
{
    for (int64_t t = 0; t < tc; ++t) {
        const float *c = cur + t * cur_stride + i0;
        float *o = out + t * n + i0;
        float *w = v + i0;
        for (int64_t j = 0; j < len; ++j) {
            float vi = w[j];
            if (apply_leak) vi = vi * leak;
            vi = vi + c[j];
            float z = vi > th ? 1.0f : 0.0f;
            vi = subtract ? vi - z * th : vi * (1.0f - z);
            w[j] = vi;
            o[j] = z;
        }
    }
}

int if_chunk_f32(float *restrict v, const float *restrict cur, int64_t cur_steps, int64_t n, int64_t tc,
                 float leak, int apply_leak, float th, int subtract, float *restrict out)
{
    if (n < 0 || tc <= 0 || (cur_steps != 1 && cur_steps < tc)) return -1;
    int64_t cur_stride = cur_steps == 1 ? 0 : n;
    for (int64_t i0 = 0; i0 < n; i0 += TILE) {
        int64_t len = n - i0 < TILE ? n - i0 : TILE;
        if (apply_leak && subtract) steps(v, cur, cur_stride, n, tc, i0, len, leak, 1, th, 1, out);
        else if (apply_leak) steps(v, cur, cur_stride, n, tc, i0, len, leak, 1, th, 0, out);
        else if (subtract) steps(v, cur, cur_stride, n, tc, i0, len, leak, 0, th, 1, out);
        else steps(v, cur, cur_stride, n, tc, i0, len, leak, 0, th, 0, out);
    }
    return 0;
}
