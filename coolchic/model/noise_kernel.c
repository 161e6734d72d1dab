/*
 * Gaussian noise for the training proxy of the latents, for coolchic.model.quantizer.
 *
 * Why C: every training step draws one Gaussian value per latent (2.8 million at 1920x1080).
 * torch.randn takes 12.6 ms for that on one core of a Zen 2 host, bound by its Mersenne
 * Twister; this loop vectorises and takes about 4 ms, and the callers split a tensor between
 * threads.
 *
 * Counter-based: value i depends only on the two seeds and i, never on how a tensor is split
 * into calls or threads, so a seeded encode writes the same bits with any thread count. Pairs
 * of values come from one Box-Muller draw: a hashed counter gives a uniform radius variable
 * u in (0, 1) and a uniform point (cos a, sin a) on the circle, built from an angle a in
 * [-pi/4, pi/4) and a quarter turn. A block of BLOCK values holds the BLOCK/2 cosine halves
 * of its pairs, then their sine halves, so that the stores are contiguous and the loop
 * vectorises. log, sin and cos are short polynomials with about 1e-7 relative error: this is
 * training noise, so the moments and tails matter (checked in the tests), not the last bit.
 *
 * Branch-free on purpose: a conditional select in the loop stops GCC's vectoriser, so the
 * signs and quarter turns are bit operations.
 */
#include <stdint.h>
#include <string.h>

#define BLOCK 512

/* A 32-bit integer hash with good avalanche (Wellons' "lowbias32"). */
static inline uint32_t hash32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static inline float as_float(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static inline uint32_t as_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

/* ln(x) for x > 0 and finite: exponent, then atanh's series on a mantissa in [0.707, 1.414). */
static inline float log_positive(float x) {
    uint32_t bits = as_bits(x);
    int32_t exponent = (int32_t)(bits >> 23) - 127;
    float m = as_float((bits & 0x007fffffU) | 0x3f800000U);
    int32_t above = m > 1.41421356f;
    m *= 1.0f - 0.5f * (float)above;
    exponent += above;
    float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
    float series = 1.0f + t2 * (1.0f / 3 + t2 * (1.0f / 5 + t2 * (1.0f / 7 + t2 * (1.0f / 9))));
    return 2.0f * t * series + (float)exponent * 0.69314718056f;
}

/* BLOCK values of sigma * N(0, 1): those of pairs first_pair .. first_pair + BLOCK/2 - 1. */
static void gaussian_block(float *restrict out, uint32_t first_pair, uint32_t seed_a,
                           uint32_t seed_b, float sigma) {
    const float quarter_pi = 0.78539816340f;
    for (uint32_t j = 0; j < BLOCK / 2; ++j) {
        uint32_t h1 = hash32(hash32((first_pair + j) ^ seed_a) + seed_b);
        uint32_t h2 = hash32(h1 ^ 0x9e3779b9U);
        float u = ((float)(int32_t)(h1 >> 8) + 0.5f) * (1.0f / 16777216.0f);
        float a = ((float)(int32_t)(h2 >> 8) * (1.0f / 8388608.0f) - 1.0f) * quarter_pi;
        float a2 = a * a;
        float s = a * (1.0f - a2 * (1.0f / 6 - a2 * (1.0f / 120 - a2 * (1.0f / 5040))));
        float c = 1.0f - a2 * (0.5f - a2 * (1.0f / 24 - a2 * (1.0f / 720 - a2 * (1.0f / 40320))));
        float r = sigma * __builtin_sqrtf(-2.0f * log_positive(u));
        /* Quarter turn q of (c, s): (c, s), (-s, c), (-c, -s), (s, -c). */
        uint32_t odd = 0U - (h2 & 1U), half_turn = (h2 & 2U) << 30;
        uint32_t x = (as_bits(c) & ~odd) | ((as_bits(s) ^ 0x80000000U) & odd);
        uint32_t y = (as_bits(s) & ~odd) | (as_bits(c) & odd);
        out[j] = r * as_float(x ^ half_turn);
        out[j + BLOCK / 2] = r * as_float(y ^ half_turn);
    }
}

/* Values start .. start + n - 1 of the stream (seed_a, seed_b), times sigma, into out.
 * start must be a multiple of coolchic_noise_block(); returns -1 (writing nothing) if not. */
int coolchic_gaussian_noise(float *out, int64_t start, int64_t n, uint32_t seed_a,
                            uint32_t seed_b, float sigma) {
    if (start % BLOCK != 0 || start < 0 || n < 0) return -1;
    float partial[BLOCK];
    for (int64_t done = 0; done < n; done += BLOCK) {
        uint32_t first_pair = (uint32_t)((start + done) / 2);
        if (n - done >= BLOCK) {
            gaussian_block(out + done, first_pair, seed_a, seed_b, sigma);
        } else {
            gaussian_block(partial, first_pair, seed_a, seed_b, sigma);
            memcpy(out + done, partial, (size_t)(n - done) * sizeof(float));
        }
    }
    return 0;
}

int coolchic_noise_block(void) { return BLOCK; }
