/*
 * The latent wavefront's per-step work in C, for coolchic.bitstream.latents.
 *
 * Why C: at 1920x1080 the latents take about 5,000 wavefront steps of a few hundred positions
 * each. In numpy every step is some twenty small operations (gather the contexts, the
 * inter-feature maps, each ARM layer, the table lookups), and their dispatch costs more than
 * the arithmetic; the tables of positions that feed them take another 0.4 s to build. Here
 * one call does the steps' positions, contexts, inter-feature values, ARM and table lookups;
 * only the range coder stays in Python (constriction).
 *
 * Same results as the numpy path, bit for bit: the ARM and the inter-feature maps run the
 * float64 form of the integer network (fixed_point.py), whose every operand and partial sum
 * is an integer times a power of two below 2^53, exact in any order, with or without FMA.
 * The caller uses this kernel only when that bound is proven.
 *
 * Positions. Step t holds, for each coded grid in coded order (coarsest first), the positions
 * (y, x) with x + y * row_step + delay == t, row by row. A position's flat index in the padded
 * buffer is origin + y * stride + x; its spatial contexts are at fixed flat offsets; its
 * coarser contexts and inter-feature inputs are the values at (y >> s, x >> s) of other grids
 * (origin, s), or the buffer's zero slot.
 *
 * Grid rows (int64, GRID_FIELDS + 2 * (n_coarser + max_inputs) each):
 *   h, w, origin, delay, inter-feature map (-1: none, features are 0), its number of inputs,
 *   then n_coarser (origin, shift) pairs (origin -1: the zero slot), then max_inputs
 *   (origin, shift) pairs.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define GRID_FIELDS 6
#define BLOCK 64

typedef struct {
    const int64_t *grids;
    int64_t n_grids, n_coarser, max_inputs;
    int64_t row_step, stride, zero_slot;
    const int64_t *offsets; /* the spatial contexts' flat offsets */
    int64_t n_spatial;
    /* ARM: n_layers layers, dims[0] = contexts ... dims[n_layers] = 2; weights [in, out] and
     * biases one layer after another, already scaled (hidden 2^-16, output 2^-24); the
     * stabiliser [contexts, 2] or NULL. */
    int64_t n_layers;
    const int64_t *dims;
    const double *weights, *biases, *stabiliser;
    /* Inter-feature maps: map m's weights [n_in, n_features] start at map_offsets[m], its
     * biases at m * n_features; scaled by 2^-32 with the rounding half in the bias. */
    int64_t n_features;
    const double *map_weights, *map_biases;
    const int64_t *map_offsets;
    const double *mu_table, *scale_table;
    int64_t mu_last, scale_last;
} plan;

static inline double clip(double x, double low, double high) {
    return x < low ? low : (x > high ? high : x);
}

/* Scratch rows of BLOCK doubles: the ARM's inputs, the inter-feature inputs, two layers. */
typedef struct {
    double *in, *values, *a, *b;
    int64_t pos[BLOCK], y[BLOCK], x[BLOCK];
} scratch;

/* Inputs of the n positions in s->pos / y / x of one grid: contexts, then inter-feature
 * values computed BLOCK-wide (the map's products vectorise across positions). */
static void gather(const plan *p, const int64_t *grid, const int8_t *buffer, scratch *s,
                   int64_t n) {
    double *restrict in = s->in;
    int64_t k = 0;
    for (int64_t c = 0; c < p->n_spatial; c++, k++) {
        const int8_t *at = buffer + p->offsets[c];
        for (int64_t j = 0; j < n; j++) in[k * BLOCK + j] = at[s->pos[j]];
    }
    const int64_t *pairs = grid + GRID_FIELDS;
    for (int64_t c = 0; c < p->n_coarser; c++, k++) {
        const int64_t origin = pairs[2 * c], shift = pairs[2 * c + 1];
        for (int64_t j = 0; j < n; j++) {
            const int64_t at = origin < 0 ? p->zero_slot
                                          : origin + (s->y[j] >> shift) * p->stride +
                                                (s->x[j] >> shift);
            in[k * BLOCK + j] = buffer[at];
        }
    }
    if (p->n_features == 0) return;
    const int64_t map = grid[4], n_inputs = grid[5];
    if (map < 0) {
        for (int64_t f = 0; f < p->n_features; f++)
            for (int64_t j = 0; j < n; j++) in[(k + f) * BLOCK + j] = 0.0;
        return;
    }
    const int64_t *inputs = pairs + 2 * p->n_coarser;
    double *restrict values = s->values;
    for (int64_t i = 0; i < n_inputs; i++) {
        const int64_t origin = inputs[2 * i], shift = inputs[2 * i + 1];
        for (int64_t j = 0; j < n; j++)
            values[i * BLOCK + j] =
                buffer[origin + (s->y[j] >> shift) * p->stride + (s->x[j] >> shift)];
    }
    const double *weight = p->map_weights + p->map_offsets[map];
    const double *bias = p->map_biases + map * p->n_features;
    for (int64_t f = 0; f < p->n_features; f++) {
        double *restrict out = in + (k + f) * BLOCK;
        for (int64_t j = 0; j < BLOCK; j++) out[j] = bias[f];
        for (int64_t i = 0; i < n_inputs; i++) {
            const double w = weight[i * p->n_features + f];
            for (int64_t j = 0; j < BLOCK; j++) out[j] += w * values[i * BLOCK + j];
        }
        for (int64_t j = 0; j < BLOCK; j++) {
            const double r = floor(out[j]);
            out[j] = r < -64.0 ? -64.0 : (r > 63.0 ? 63.0 : r);
        }
    }
}

/* The ARM on the first n columns of s->in; table values into mu and scale. */
static void arm(const plan *p, scratch *s, int64_t n, double *restrict mu,
                double *restrict scale) {
    const double *restrict in = s->in;
    const double *x = in, *weight = p->weights, *bias = p->biases;
    double *y = s->a;
    for (int64_t l = 0; l < p->n_layers; l++) {
        const int64_t n_in = p->dims[l], n_out = p->dims[l + 1];
        const int last = l == p->n_layers - 1;
        for (int64_t o = 0; o < n_out; o++) {
            double *restrict out = y + o * BLOCK;
            for (int64_t j = 0; j < BLOCK; j++) out[j] = bias[o];
            for (int64_t i = 0; i < n_in; i++) {
                const double w = weight[i * n_out + o];
                const double *restrict column = x + i * BLOCK;
                for (int64_t j = 0; j < BLOCK; j++) out[j] += w * column[j];
            }
            if (last && p->stabiliser != NULL) {
                for (int64_t i = 0; i < p->dims[0]; i++) {
                    const double w = p->stabiliser[i * 2 + o];
                    for (int64_t j = 0; j < BLOCK; j++) out[j] += w * in[i * BLOCK + j];
                }
            }
            for (int64_t j = 0; j < BLOCK; j++) {
                const double r = floor(out[j]);
                out[j] = last || r > 0.0 ? r : 0.0;
            }
        }
        weight += n_in * n_out;
        bias += n_out;
        x = y;
        y = y == s->a ? s->b : s->a;
    }
    for (int64_t j = 0; j < n; j++) {
        mu[j] = p->mu_table[(int64_t)clip(x[j], 0.0, (double)p->mu_last)];
        scale[j] = p->scale_table[(int64_t)clip(x[BLOCK + j], 0.0, (double)p->scale_last)];
    }
}

/* ---- Range decoding, as constriction's queue RangeDecoder<u32, u64> with its
 * QuantizedLaplace(-64, 63) at 24-bit precision codes the latents (the encoder is constriction
 * itself). A symbol's left cumulative is floor(FREE_WEIGHT * F(s - 0.5)) + (s + 64), F the
 * Laplace CDF evaluated with the same float operations as the Rust `probability` crate, the
 * first symbol's is 0 and the end's 2^24. Products stay unfused (no FMA), as in Rust. */
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

#define PRECISION 24
#define SYMBOL_MIN (-64)
#define SYMBOL_MAX 63
#define FREE_WEIGHT ((double)((1u << PRECISION) - 1u - (SYMBOL_MAX - SYMBOL_MIN)))

typedef struct {
    const uint32_t *words;
    int64_t n_words, next;
    uint64_t lower, range, point;
} range_decoder;

static double laplace_cdf(double x, double mu, double b) {
    return x <= mu ? 0.5 * exp((x - mu) / b) : 1.0 - 0.5 * exp(-(x - mu) / b);
}

static uint32_t left_cumulative(int32_t symbol, double mu, double b) {
    if (symbol <= SYMBOL_MIN) return 0;
    if (symbol > SYMBOL_MAX) return 1u << PRECISION;
    return (uint32_t)(FREE_WEIGHT * laplace_cdf(symbol - 0.5, mu, b)) +
           (uint32_t)(symbol - SYMBOL_MIN);
}

static void start_decoder(range_decoder *d, const uint32_t *words, int64_t n_words) {
    d->words = words;
    d->n_words = n_words;
    d->next = 0;
    d->lower = 0;
    d->range = UINT64_MAX;
    d->point = 0;
    int64_t read = 0;
    for (; read < 2 && d->next < n_words; read++) d->point = (d->point << 32) | words[d->next++];
    if (read == 1) d->point <<= 32;
}

/* One symbol; 0, or -1 for data no encoder can have written. */
static int decode_symbol(range_decoder *d, double mu, double b, int8_t *symbol) {
    const uint64_t scale = d->range >> PRECISION;
    const uint64_t quantile = (d->point - d->lower) / scale;
    if (quantile >= (1u << PRECISION)) return -1;
    const uint32_t q = (uint32_t)quantile;
    /* start from the continuous inverse CDF, then step to left(s) <= q < left(s + 1) */
    const double p = (q + 0.5) / (double)(1u << PRECISION);
    const double guess = p > 0.5 ? mu - b * log(2.0 - 2.0 * p) : mu + b * log(2.0 * p);
    int32_t s = !(guess > SYMBOL_MIN) ? SYMBOL_MIN : guess > SYMBOL_MAX ? SYMBOL_MAX : (int32_t)guess;
    uint32_t left = left_cumulative(s, mu, b), right;
    if (left > q) {
        do {
            right = left;
            left = left_cumulative(--s, mu, b);
        } while (left > q);
    } else {
        while ((right = left_cumulative(s + 1, mu, b)) <= q) {
            left = right;
            s++;
        }
    }
    d->lower += scale * left;
    d->range = scale * (right - left);
    if (d->range < (1ull << 32)) {
        d->lower <<= 32;
        d->range <<= 32;
        d->point <<= 32;
        if (d->next < d->n_words) d->point |= d->words[d->next++];
    }
    *symbol = (int8_t)s;
    return 0;
}

#pragma GCC pop_options

/*
 * Steps first .. last - 1. Without a decoder: for each position, in coding order, its flat
 * index, the μ and scale its symbol is coded with, and the value the buffer holds there (the
 * symbol, when encoding); the caller sizes these outputs. With one: each step's symbols are
 * decoded into the buffer (outputs unused). Returns the number of positions, -1 when out of
 * memory, -2 for invalid data.
 */
static int64_t walk(const plan *p, int8_t *buffer, int64_t first, int64_t last,
                    range_decoder *decoder, int64_t *positions, double *mu, double *scale,
                    int32_t *symbols) {
    int64_t width = 2;
    for (int64_t l = 0; l <= p->n_layers; l++) width = p->dims[l] > width ? p->dims[l] : width;
    const int64_t rows = 3 * width + (p->max_inputs > 0 ? p->max_inputs : 1);
    double *memory = calloc((size_t)(rows * BLOCK + 2 * BLOCK), sizeof(double));
    if (memory == NULL) return -1;
    scratch s = {.in = memory, .a = memory + width * BLOCK, .b = memory + 2 * width * BLOCK,
                 .values = memory + 3 * width * BLOCK};
    double *own_mu = memory + rows * BLOCK, *own_scale = own_mu + BLOCK;
    const int64_t row = GRID_FIELDS + 2 * (p->n_coarser + p->max_inputs);
    int64_t count = 0;
    for (int64_t t = first; t < last; t++) {
        for (int64_t g = 0; g < p->n_grids; g++) {
            const int64_t *grid = p->grids + g * row;
            const int64_t h = grid[0], w = grid[1], u = t - grid[3];
            if (u < 0) continue;
            /* rows whose x = u - y * row_step lies in [0, w), BLOCK at a time */
            int64_t y = u >= w ? (u - w + p->row_step) / p->row_step : 0;
            const int64_t y_end = u / p->row_step + 1 < h ? u / p->row_step + 1 : h;
            while (y < y_end) {
                const int64_t n = y_end - y < BLOCK ? y_end - y : BLOCK;
                for (int64_t j = 0; j < n; j++, y++) {
                    s.y[j] = y;
                    s.x[j] = u - y * p->row_step;
                    s.pos[j] = grid[2] + y * p->stride + s.x[j];
                }
                gather(p, grid, buffer, &s, n);
                if (decoder == NULL) {
                    arm(p, &s, n, mu + count, scale + count);
                    for (int64_t j = 0; j < n; j++) {
                        positions[count + j] = s.pos[j];
                        symbols[count + j] = buffer[s.pos[j]];
                    }
                } else {
                    arm(p, &s, n, own_mu, own_scale);
                    for (int64_t j = 0; j < n; j++) {
                        if (decode_symbol(decoder, own_mu[j], own_scale[j], buffer + s.pos[j])) {
                            free(memory);
                            return -2;
                        }
                    }
                }
                count += n;
            }
        }
    }
    free(memory);
    return count;
}

/* Steps first .. last - 1 of an encoder: see walk(). */
int64_t coolchic_wavefront(const plan *p, int8_t *buffer, int64_t first, int64_t last,
                           int64_t *positions, double *mu, double *scale, int32_t *symbols) {
    return walk(p, buffer, first, last, NULL, positions, mu, scale, symbols);
}

/* Every step, decoding the n_words words into the buffer: see walk(). */
int64_t coolchic_wavefront_decode(const plan *p, int8_t *buffer, int64_t n_steps,
                                  const uint32_t *words, int64_t n_words) {
    range_decoder decoder;
    start_decoder(&decoder, words, n_words);
    return walk(p, buffer, 0, n_steps, &decoder, NULL, NULL, NULL, NULL);
}
