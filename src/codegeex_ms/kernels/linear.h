// The matmuls of linear.cc for the other kernels of this library (decode_stack.cc, screened_head.cc): the best path
// this CPU supports, the weight rows split over the thread pool (threads.h) as its own entry points do.
#pragma once
#include <cstdint>

namespace codegeex {

// y [M, N] = x [M, K] @ (w [N, K] * scale [N])^T (+ bias [N]), then y * sigmoid(1.702 y) with gelu
void linear_int8_best(const float *x, const int8_t *w, const float *scale, const float *bias, bool gelu, float *y,
                      int64_t M, int64_t N, int64_t K);
// y [M, N] = x [M, K] @ w [N, K]^T (+ bias [N]), then the fast GELU with gelu
void linear_f32_best(const float *x, const float *w, const float *bias, bool gelu, float *y, int64_t M, int64_t N,
                     int64_t K);
// whether the best path of this CPU (the one linear_*_best take) is the AVX-512 one
bool avx512_path();
// y[rows[i]] = x [K] . w[rows[i]] [K] for count listed rows, on the calling thread, each summed exactly as
// linear_f32_best sums that output (the same bits)
void dot_rows_f32(const float *x, const float *w, const int32_t *rows, int64_t count, float *y, int64_t K);
// the same with float16 weights (the bits of IEEE halves), summed as the float16 head kernel sums them
void dot_rows_f16(const float *x, const uint16_t *w, const int32_t *rows, int64_t count, float *y, int64_t K);
// y [M, N] = x [M, K] @ w [N, K]^T on the calling thread only (for callers that split the work themselves)
void matmul_f32_one_thread(const float *x, const float *w, float *y, int64_t M, int64_t N, int64_t K);

}  // namespace codegeex
