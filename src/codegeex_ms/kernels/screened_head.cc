// The float tied head of a decode step, read through an int8 copy of its table first, for ops.Custom(func_type="aot"):
//
//   screened_head(x [b, h] float32, screen [V', h] int8, screen_scale [V'] float32, table [V', h] float32 or
//                 float16, vocab [1] int32, top_k [b] int32, noise [b, K] float32) -> logits [b, V'] float32
//
// A sampler draws row r's token from its min(top_k[r], K) highest logits (K = the noise's width, the sampler's
// candidates; sampler.cc), so only rows that can be among those need their float32 logit. For each row of x:
//   1. y8 = x . screen[v] * screen_scale[v] for every v (the int8 kernel: a quarter of a float32 table's bytes,
//      half of a float16 one's);
//   2. e[v] bounds |y8[v] - y32[v]|, y32 being the logit the float head kernel computes (float32 sums; below);
//   3. L = the kept-th highest of y8[v] - e[v] over v < vocab (kept = min(top_k, K));
//   4. every v < vocab with y8[v] + e[v] >= L gets y32[v] = x . table[v], summed exactly as the float32 or float16
//      head kernel sums it (linear.h, dot_rows_f32/f16: the same bits); every other v gets -inf.
// At least kept rows have y32 >= L, so the kept-th highest y32 is >= L, and each of the kept best rows has
// y8 + e >= y32 >= L: all of them get their exact logit, and the sampler draws what it draws from the whole float
// head. A greedy row (top_k 1) computes a handful of float rows instead of all V'.
//
// The bound: with screen[v] = rint(table[v] / s), s = screen_scale[v] = max|table[v]| / 127 (the caller's
// quantisation), |table - s screen| <= s / 2 per element, so the exact dot products differ by at most
// s/2 * |x|_1; each float32 evaluation adds at most gamma_h * 127 s |x|_1 (gamma_h = h u / (1 - h u), u = 2^-24,
// |table| <= 127 s), and the final scaling of y8 one rounding: e = s |x|_1 (1/2 + 2 * 127 gamma_h) (1 + 2^-10)
// + 2^-20 |y8|. Returns non-zero (MindSpore raises) on shapes it cannot take.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "linear.h"
#include "threads.h"

extern "C" int screened_head(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                             void *stream, void *extra) {
  if (nparam != 8 || ndims[0] != 2 || ndims[1] != 2 || ndims[2] != 1 || ndims[3] != 2 || ndims[4] != 1 ||
      ndims[5] != 1 || ndims[6] != 2 || ndims[7] != 2)
    return 1;
  const int64_t b = shapes[0][0], h = shapes[0][1], V = shapes[1][0], K = shapes[6][1];
  if (shapes[1][1] != h || shapes[2][0] != V || shapes[3][0] != V || shapes[3][1] != h || shapes[5][0] != b ||
      shapes[6][0] != b || shapes[7][0] != b || shapes[7][1] != V)
    return 1;
  const float *x = static_cast<const float *>(params[0]);
  const int8_t *screen = static_cast<const int8_t *>(params[1]);
  const float *screen_scale = static_cast<const float *>(params[2]);
  const bool half = std::strcmp(dtypes[3], "float16") == 0;
  if (!half && std::strcmp(dtypes[3], "float32") != 0) return 1;
  const void *table = params[3];
  const int64_t vocab = std::min<int64_t>(V, *static_cast<const int32_t *>(params[4]));
  const int32_t *top_k = static_cast<const int32_t *>(params[5]);
  float *y = static_cast<float *>(params[nparam - 1]);
  if (vocab < 1 || K < 1) return 1;

  codegeex::linear_int8_best(x, screen, screen_scale, nullptr, false, y, b, V, h);        // y8, every row at once
  const double u = std::ldexp(1.0, -24), gamma = h * u / (1.0 - h * u);
  const double factor = (0.5 + 2.0 * 127.0 * gamma) * (1.0 + std::ldexp(1.0, -10));
  // in float, with margins for its roundings: the per-row constant rounded up by 2^-20 relative, and 2^-19 |y8|
  // where the bound needs 2^-20 |y8| (the rest covers the roundings of y8 - e and y8 + e)
  const float slack = std::ldexp(1.0f, -19);
  thread_local std::vector<float> lower;
  thread_local std::vector<int32_t> rows;
  for (int64_t r = 0; r < b; ++r) {
    const float *xr = x + r * h;
    float *yr = y + r * V;
    double l1 = 0.0;
    for (int64_t k = 0; k < h; ++k) l1 += std::fabs(static_cast<double>(xr[k]));
    const float c = static_cast<float>(l1 * factor * (1.0 + std::ldexp(1.0, -20)));
    auto error = [&](int64_t v) { return screen_scale[v] * c + std::fabs(yr[v]) * slack; };   // e[v], above
    const int64_t kept = std::max<int64_t>(1, std::min<int64_t>({static_cast<int64_t>(top_k[r]), K, vocab}));
    lower.resize(vocab);
    for (int64_t v = 0; v < vocab; ++v) lower[v] = yr[v] - error(v);
    float threshold;
    if (kept == 1) {
      threshold = *std::max_element(lower.begin(), lower.end());
    } else {
      std::nth_element(lower.begin(), lower.begin() + (kept - 1), lower.end(), std::greater<float>());
      threshold = lower[kept - 1];
    }
    rows.clear();
    for (int64_t v = 0; v < vocab; ++v)
      if (yr[v] + error(v) >= threshold) rows.push_back(static_cast<int32_t>(v));
    std::fill(yr, yr + V, -INFINITY);                 // y8 is read no more: the row takes the exact logits
    const int64_t count = static_cast<int64_t>(rows.size());
    const int32_t *listed = rows.data();              // (the pool's threads have thread_locals of their own)
    codegeex::parallel_for(count, [&](int64_t begin, int64_t end) {
      if (half)
        codegeex::dot_rows_f16(xr, static_cast<const uint16_t *>(table), listed + begin, end - begin, yr, h);
      else
        codegeex::dot_rows_f32(xr, static_cast<const float *>(table), listed + begin, end - begin, yr, h);
    });
  }
  return 0;
}
