/* rng.c — Philox4x32-10 counter-based generator.
 * Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
 * SC 2011. Key = (seed ^ stream mixing), counter = (block index, stream). */
#include "core/core.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi)
{
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

void align__philox4x32(uint64_t seed, uint64_t stream, uint64_t ctr, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32);
    uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = mulhilo(PHILOX_M0, c0, &hi0);
        uint32_t lo1 = mulhilo(PHILOX_M1, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void align__rng_init(align__rng *r, uint64_t seed, uint64_t stream)
{
    r->seed = seed;
    r->stream = stream;
    r->counter = 0;
}

uint32_t align__rng_u32(align__rng *r)
{
    uint32_t block[4];
    align__philox4x32(r->seed, r->stream, r->counter >> 2, block);
    uint32_t v = block[r->counter & 3];
    r->counter++;
    return v;
}

float align__rng_uniform(align__rng *r)
{
    return (float)(align__rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

uint32_t align__rng_below(align__rng *r, uint32_t n)
{
    /* Lemire's nearly-divisionless rejection method */
    uint64_t m = (uint64_t)align__rng_u32(r) * n;
    uint32_t lo = (uint32_t)m;
    if (lo < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (lo < t) {
            m = (uint64_t)align__rng_u32(r) * n;
            lo = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

static inline void box_muller(uint32_t a, uint32_t b, float *z0, float *z1)
{
    /* u1 in (0, 1], u2 in [0, 1) */
    double u1 = ((double)(a >> 8) + 1.0) * (1.0 / 16777216.0);
    double u2 = (double)(b >> 8) * (1.0 / 16777216.0);
    double rad = sqrt(-2.0 * log(u1));
    double th = 6.283185307179586 * u2;
    *z0 = (float)(rad * cos(th));
    *z1 = (float)(rad * sin(th));
}

float align__rng_normal(align__rng *r)
{
    uint32_t a = align__rng_u32(r), b = align__rng_u32(r);
    float z0, z1;
    box_muller(a, b, &z0, &z1);
    return z0;
}

void align__rng_fill_normal(align__rng *r, float *out, size_t n, float mean, float std)
{
    /* Whole blocks from a block boundary: 4 words -> 4 normals. */
    r->counter = (r->counter + 3) & ~(uint64_t)3;
    size_t i = 0;
    while (i < n) {
        uint32_t w[4];
        align__philox4x32(r->seed, r->stream, r->counter >> 2, w);
        r->counter += 4;
        float z[4];
        box_muller(w[0], w[1], &z[0], &z[1]);
        box_muller(w[2], w[3], &z[2], &z[3]);
        for (int j = 0; j < 4 && i < n; j++, i++)
            out[i] = mean + std * z[j];
    }
}
