/*
 * Pointwise MLP forward and backward over runs of columns, for coolchic.model.pointwise.
 *
 * Why C: the ARM's and the 1x1 synthesis's MLPs are a few hundred multiply-adds per column on
 * millions of columns. Run as PyTorch operators on cache-sized chunks, each chunk is some
 * thirty tiny operators whose dispatch, serialised by Python's interpreter lock, costs more
 * than the arithmetic. Here one call does a whole band: gather the inputs, every layer,
 * and in the backward the recomputed activations, the weight gradients and the input
 * gradient, BLOCK columns at a time so that everything stays in registers and L1.
 *
 * Layout. Input value k of column j of row r of a run is in[off[k] + r * in_row_stride + j]:
 * for the ARM, `in` is a zero-padded latent grid and off[k] the k-th causal context position;
 * for the synthesis, `in` is a [C, P] feature map and off[k] = k * P. Outputs are channels
 * first, out[o * out_stride + r * width + j]. Weights are the layers' row-major [out, in]
 * matrices one after another, biases likewise. An optional skip matrix [out, in] (NULL for
 * none) maps the inputs straight to the outputs and is added to them: Cool-chic 5's linear
 * "stabiliser" beside the MLP, at the cost of a few products on values already in registers.
 *
 * The backward adds into grad_weights, grad_biases and (when not NULL) grad_in, in a fixed
 * order: a call is deterministic, and the caller sums per-thread accumulators in a fixed
 * order too. With store_input it writes grad_in instead of adding to it, for inputs that no
 * other column reads (the synthesis's feature map): the caller then need not zero the buffer,
 * a pass over it that cost about 2 % of a 1152x768 step. The calls release Python's
 * interpreter lock (ctypes), so two threads run two bands at once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* GCC/Clang vector extensions, with no intrinsics to port: one AVX-512 register, else the
 * width of one AVX2 register. A 16-lane vector lowered to two AVX2 registers measured 1.8x
 * slower than PyTorch on a Zen 3 core; eight lanes run natively there. */
#if defined(__AVX512F__)
#define LANES 16
#else
#define LANES 8
#endif
typedef float vec __attribute__((vector_size(sizeof(float) * LANES)));
typedef int32_t mask __attribute__((vector_size(sizeof(float) * LANES)));

/* x where keep is true (all bits set), else 0: a branch-free select, as C has no vector ?:. */
static inline vec keep_where(mask keep, vec x) { return (vec)((mask)x & keep); }

#define BLOCK 32 /* columns per block, on every target */
#define VECS (BLOCK / LANES) /* vectors per block */
#define MAX_WIDTH 64
#define MAX_LAYERS 8
#define SEGMENT (BLOCK * 16) /* columns whose input gradient is added back in one pass */

typedef vec Block[VECS];
typedef Block Activations[MAX_LAYERS + 1][MAX_WIDTH];

int coolchic_kernel_limits(int32_t *max_width, int32_t *max_layers) {
    *max_width = MAX_WIDTH;
    *max_layers = MAX_LAYERS;
    return 1;
}

/* n columns from source into a block, zeros past n. */
static inline void load_block(const float *source, int32_t n, Block block) {
    if (n == BLOCK) {
        memcpy(block, source, sizeof(Block));
    } else {
        memset(block, 0, sizeof(Block));
        memcpy(block, source, sizeof(float) * (size_t)n);
    }
}

static inline void store_block(float *target, int32_t n, const Block block) {
    memcpy(target, block, sizeof(float) * (size_t)n);
}

static void forward_block(int32_t n_layers, const int32_t *dims, const float *weights,
                          const float *biases, const uint8_t *relu, Activations act) {
    const vec zero = {0};
    for (int32_t layer = 0; layer < n_layers; layer++) {
        const int32_t n_in = dims[layer], n_out = dims[layer + 1];
        for (int32_t o = 0; o < n_out; o++) {
            const float *row = weights + (int64_t)o * n_in;
            Block sum;
            for (int32_t v = 0; v < VECS; v++) sum[v] = zero + biases[o];
            for (int32_t k = 0; k < n_in; k++)
                for (int32_t v = 0; v < VECS; v++) sum[v] += row[k] * act[layer][k][v];
            for (int32_t v = 0; v < VECS; v++)
                act[layer + 1][o][v] = relu[layer] ? keep_where(sum[v] > zero, sum[v]) : sum[v];
        }
        weights += (int64_t)n_out * n_in;
        biases += n_out;
    }
}

/* outputs += skip · inputs, the skip matrix being [n_out, n_in] row-major. */
static void add_skip(int32_t n_in, int32_t n_out, const float *skip, const Block *inputs,
                     Block *outputs) {
    for (int32_t o = 0; o < n_out; o++)
        for (int32_t k = 0; k < n_in; k++) {
            const float s = skip[(int64_t)o * n_in + k];
            for (int32_t v = 0; v < VECS; v++) outputs[o][v] += s * inputs[k][v];
        }
}

void coolchic_mlp_forward(const float *in, const int64_t *off, int64_t in_row_stride,
                          int64_t rows, int64_t width, int32_t n_layers, const int32_t *dims,
                          const float *weights, const float *biases, const uint8_t *relu,
                          const float *skip, float *out, int64_t out_stride) {
    static _Thread_local Activations act;
    const int32_t n_out = dims[n_layers];
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t first = 0; first < width; first += BLOCK) {
            const int32_t n = (int32_t)(width - first < BLOCK ? width - first : BLOCK);
            const int64_t start = r * in_row_stride + first;
            for (int32_t k = 0; k < dims[0]; k++) load_block(in + off[k] + start, n, act[0][k]);
            forward_block(n_layers, dims, weights, biases, relu, act);
            if (skip != NULL) add_skip(dims[0], n_out, skip, act[0], act[n_layers]);
            float *target = out + r * width + first;
            for (int32_t o = 0; o < n_out; o++)
                store_block(target + o * out_stride, n, act[n_layers][o]);
        }
    }
}

/* Per-thread vector accumulators of the weight and bias gradients, grown as needed: summed
 * lane-wise across the blocks of a call and reduced once at its end, since a horizontal sum
 * per weight and block would cost more than the products. */
static _Thread_local vec *lanes = NULL;
static _Thread_local int64_t lanes_size = 0;

static vec *lane_buffer(int64_t size) {
    if (size > lanes_size) {
        free(lanes);
        lanes = aligned_alloc(sizeof(vec), sizeof(vec) * (size_t)size);
        lanes_size = lanes == NULL ? 0 : size;
    }
    if (lanes != NULL) memset(lanes, 0, sizeof(vec) * (size_t)size);
    return lanes;
}

static float lane_sum(vec v) {
    float sum = 0.0f;
    for (int32_t i = 0; i < LANES; i++) sum += v[i];
    return sum;
}

/* Back through every layer of one block: adds to the gradient lanes, and leaves in grad the
 * gradient of the block's inputs when need_input (else of the first layer's outputs). */
static void backward_block(int32_t n_layers, const int32_t *dims, const float *weights,
                           const uint8_t *relu, Activations act, Block grad[MAX_WIDTH],
                           vec *weight_lanes, vec *bias_lanes, const int64_t *weight_start,
                           const int64_t *bias_start, int need_input) {
    static _Thread_local Block grad_below[MAX_WIDTH];
    const vec zero = {0};
    for (int32_t layer = n_layers - 1; layer >= 0; layer--) {
        const int32_t n_in = dims[layer], n_here = dims[layer + 1];
        const float *w = weights + weight_start[layer];
        vec *gw = weight_lanes + weight_start[layer];
        vec *gb = bias_lanes + bias_start[layer];
        for (int32_t o = 0; o < n_here; o++) {
            if (relu[layer])
                for (int32_t v = 0; v < VECS; v++)
                    grad[o][v] = keep_where(act[layer + 1][o][v] > zero, grad[o][v]);
            vec bias_lane = gb[o];
            for (int32_t v = 0; v < VECS; v++) bias_lane += grad[o][v];
            gb[o] = bias_lane;
            vec *row = gw + (int64_t)o * n_in;
            for (int32_t k = 0; k < n_in; k++) {
                vec lane = row[k];
                for (int32_t v = 0; v < VECS; v++) lane += grad[o][v] * act[layer][k][v];
                row[k] = lane;
            }
        }
        if (layer == 0 && !need_input) break;
        for (int32_t k = 0; k < n_in; k++) {
            Block sum = {{0}};
            for (int32_t o = 0; o < n_here; o++) {
                const float wok = w[(int64_t)o * n_in + k];
                for (int32_t v = 0; v < VECS; v++) sum[v] += wok * grad[o][v];
            }
            memcpy(grad_below[k], sum, sizeof(Block));
        }
        memcpy(grad, grad_below, sizeof(Block) * (size_t)n_in);
    }
}

/* The skip matrix's part of the backward for one block: its gradient lanes get
 * grad_out · inputs, and, when the input gradient is wanted, grad_in += skipᵀ · grad_out. */
static void skip_backward(int32_t n_in, int32_t n_out, const float *skip, const Block *inputs,
                          const Block *grad_out, vec *skip_lanes, Block *grad_in) {
    for (int32_t o = 0; o < n_out; o++) {
        vec *row = skip_lanes + (int64_t)o * n_in;
        for (int32_t k = 0; k < n_in; k++) {
            vec lane = row[k];
            for (int32_t v = 0; v < VECS; v++) lane += grad_out[o][v] * inputs[k][v];
            row[k] = lane;
        }
    }
    if (grad_in == NULL) return;
    for (int32_t k = 0; k < n_in; k++)
        for (int32_t o = 0; o < n_out; o++) {
            const float s = skip[(int64_t)o * n_in + k];
            for (int32_t v = 0; v < VECS; v++) grad_in[k][v] += s * grad_out[o][v];
        }
}

int coolchic_mlp_backward(const float *in, const int64_t *off, int64_t in_row_stride,
                          int64_t rows, int64_t width, int32_t n_layers, const int32_t *dims,
                          const float *weights, const float *biases, const uint8_t *relu,
                          const float *skip, const float *grad_out, int64_t grad_out_stride,
                          float *grad_in, int32_t store_input, float *grad_weights,
                          float *grad_biases, float *grad_skip) {
    static _Thread_local Activations act;
    static _Thread_local Block grad[MAX_WIDTH];
    static _Thread_local Block skip_grad[MAX_WIDTH];
    static _Thread_local float input_grad[MAX_WIDTH][SEGMENT];
    int64_t weight_start[MAX_LAYERS], bias_start[MAX_LAYERS];
    int64_t n_weights = 0, n_biases = 0;
    for (int32_t layer = 0; layer < n_layers; layer++) {
        weight_start[layer] = n_weights;
        bias_start[layer] = n_biases;
        n_weights += (int64_t)dims[layer + 1] * dims[layer];
        n_biases += dims[layer + 1];
    }
    const int32_t n_out = dims[n_layers];
    const int64_t n_skip = skip == NULL ? 0 : (int64_t)n_out * dims[0];
    vec *weight_lanes = lane_buffer(n_weights + n_biases + n_skip);
    if (weight_lanes == NULL) return -1;
    vec *bias_lanes = weight_lanes + n_weights;
    vec *skip_lanes = bias_lanes + n_biases;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t segment = 0; segment < width; segment += SEGMENT) {
            const int64_t segment_end = segment + SEGMENT < width ? segment + SEGMENT : width;
            for (int64_t first = segment; first < segment_end; first += BLOCK) {
                const int32_t n = (int32_t)(width - first < BLOCK ? width - first : BLOCK);
                const int64_t start = r * in_row_stride + first;
                for (int32_t k = 0; k < dims[0]; k++)
                    load_block(in + off[k] + start, n, act[0][k]);
                forward_block(n_layers, dims, weights, biases, relu, act);
                /* Columns past n carry a zero gradient, so they add nothing below. */
                for (int32_t o = 0; o < n_out; o++)
                    load_block(grad_out + o * grad_out_stride + r * width + first, n, grad[o]);
                if (skip != NULL) memcpy(skip_grad, grad, sizeof(Block) * (size_t)n_out);
                backward_block(n_layers, dims, weights, relu, act, grad, weight_lanes,
                               bias_lanes, weight_start, bias_start, grad_in != NULL);
                if (skip != NULL)
                    skip_backward(dims[0], n_out, skip, act[0], skip_grad, skip_lanes,
                                  grad_in != NULL ? grad : NULL);
                if (grad_in != NULL)
                    for (int32_t k = 0; k < dims[0]; k++)
                        memcpy(&input_grad[k][first - segment], grad[k], sizeof(Block));
            }
            /* The input gradient goes back one context position at a time over the whole
             * segment: position k + 1 overlaps position k shifted by one value, and adding
             * them block by block would stall on every overlapping load. */
            if (grad_in != NULL)
                for (int32_t k = 0; k < dims[0]; k++) {
                    float *restrict target = grad_in + off[k] + r * in_row_stride + segment;
                    const float *restrict source = input_grad[k];
                    if (store_input)
                        memcpy(target, source, sizeof(float) * (size_t)(segment_end - segment));
                    else
                        for (int64_t j = 0; j < segment_end - segment; j++) target[j] += source[j];
                }
        }
    }
    for (int64_t i = 0; i < n_weights; i++) grad_weights[i] += lane_sum(weight_lanes[i]);
    for (int64_t i = 0; i < n_biases; i++) grad_biases[i] += lane_sum(bias_lanes[i]);
    for (int64_t i = 0; i < n_skip; i++) grad_skip[i] += lane_sum(skip_lanes[i]);
    return 0;
}
