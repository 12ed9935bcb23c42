// The matmuls of linear.cc for the other kernels of this library (decode_layer.cc): the best path this CPU
// supports, rows of x split over linear.cc's thread pool as its own entry points do.
#pragma once
#include <cstdint>
#include <functional>

namespace codegeex {

// y [M, N] = x [M, K] @ (w [N, K] * scale [N])^T (+ bias [N]), then y * sigmoid(1.702 y) with gelu
void linear_int8_best(const float *x, const int8_t *w, const float *scale, const float *bias, bool gelu, float *y,
                      int64_t M, int64_t N, int64_t K);
// y [M, N] = x [M, K] @ w [N, K]^T (+ bias [N]), then the fast GELU with gelu
void linear_f32_best(const float *x, const float *w, const float *bias, bool gelu, float *y, int64_t M, int64_t N,
                     int64_t K);

// body(begin, end) over [0, count) in parts on linear.cc's thread pool (the calling thread takes the first part);
// one part when count < 2 or the pool has one thread
void parallel_for(int64_t count, const std::function<void(int64_t, int64_t)> &body);

}  // namespace codegeex
