/* fp32 y = x w^T + b on CPU with the weight packed once into column panels (evalkit/models/packed_linear.py).

   Each panel holds PANEL output columns for every k; a tile of up to TILE_ROWS input rows keeps its
   2 x TILE_ROWS vector accumulators in registers while the panel streams through once, so the weights
   are read once per group of rows (decoding, a few rows per matrix, is reading the weights). Each
   output is one fused multiply-add chain over k in order, so a row's result does not depend on the
   other rows of the batch (batch-size invariant by construction). Speed against oneDNN and MKL:
   benchmarks/linear_kernels.py; measured figures, by host, in docs/performance.md.

   Portable C: GCC/Clang vector extensions, compiled at first use with -march=native; the panel width
   and the rows per tile follow the machine's vector registers. The caller (panel_kernel.py) checks
   every size, dtype and layout before a pointer reaches these functions; they trust their arguments. */
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#define LANES 16
#define TILE_ROWS 12 /* 12 x 2 accumulators of 32 registers (12 rather than 8: docs/performance.md) */
#elif defined(__AVX__)
#define LANES 8
#define TILE_ROWS 6 /* 6 x 2 accumulators of 16 registers */
#else
#define LANES 4
#define TILE_ROWS 6
#endif
#define PANEL (2 * LANES) /* output columns per panel */

typedef float vec __attribute__((vector_size(LANES * 4), aligned(4)));

int evalkit_panel_width(void) { return PANEL; }

/* p[(q * k_in + k) * PANEL + j] = w[q * PANEL + j, k], zero past n_out; p holds ceil(n_out / PANEL) panels. */
void evalkit_pack(const float *w, int64_t n_out, int64_t k_in, float *p) {
    int64_t panels = (n_out + PANEL - 1) / PANEL;
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < panels; q++)
        for (int64_t j = 0; j < PANEL; j++) {
            int64_t n = q * PANEL + j;
            float *column = p + q * k_in * PANEL + j;
            for (int64_t k = 0; k < k_in; k++) column[k * PANEL] = n < n_out ? w[n * k_in + k] : 0.0f;
        }
}

static inline __attribute__((always_inline)) void tile(const float *x, int64_t k_in, int rows, const float *panel,
                                                       const float *bias, float *y, int64_t n_out, int64_t n0) {
    vec acc[TILE_ROWS][2];
    for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = (vec){0};
    for (int64_t k = 0; k < k_in; k++) {
        vec w0 = *(const vec *)(panel + k * PANEL), w1 = *(const vec *)(panel + k * PANEL + LANES);
        for (int r = 0; r < rows; r++) {
            float s = x[r * k_in + k];
            acc[r][0] += s * w0;
            acc[r][1] += s * w1;
        }
    }
    int64_t width = n_out - n0 < PANEL ? n_out - n0 : PANEL;
    if (width == PANEL) { /* whole panel: vector stores (faster than scalar ones: docs/performance.md) */
        vec b0 = {0}, b1 = {0};
        if (bias) b0 = *(const vec *)(bias + n0), b1 = *(const vec *)(bias + n0 + LANES);
        for (int r = 0; r < rows; r++) {
            *(vec *)(y + r * n_out + n0) = bias ? acc[r][0] + b0 : acc[r][0];
            *(vec *)(y + r * n_out + n0 + LANES) = bias ? acc[r][1] + b1 : acc[r][1];
        }
        return;
    }
    for (int r = 0; r < rows; r++) {
        float out[PANEL];
        memcpy(out, &acc[r][0], sizeof(vec));
        memcpy(out + LANES, &acc[r][1], sizeof(vec));
        float *row = y + r * n_out + n0;
        for (int64_t j = 0; j < width; j++) row[j] = bias ? out[j] + bias[n0 + j] : out[j];
    }
}

/* x: rows x k_in, y: rows x n_out, both contiguous; bias may be NULL. */
void evalkit_linear(const float *x, int64_t rows, int64_t k_in, const float *p, int64_t n_out, const float *bias,
                    float *y, int threads) {
    int64_t panels = (n_out + PANEL - 1) / PANEL;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t q = 0; q < panels; q++) {
        const float *panel = p + q * k_in * PANEL;
        for (int64_t r0 = 0; r0 < rows; r0 += TILE_ROWS) {
            int64_t left = rows - r0;
            const float *xs = x + r0 * k_in;
            float *ys = y + r0 * n_out;
            /* constant row counts let the compiler keep every accumulator in a register */
#define ROWS(n) case n: tile(xs, k_in, n, panel, bias, ys, n_out, q * PANEL); break;
            switch (left < TILE_ROWS ? left : TILE_ROWS) {
            ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6)
#if TILE_ROWS > 6
            ROWS(7) ROWS(8)
#endif
#if TILE_ROWS > 8
            ROWS(9) ROWS(10) ROWS(11) ROWS(12)
#endif
            }
        }
    }
}
