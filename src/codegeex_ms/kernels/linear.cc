// CPU matmul kernels for MindSpore's ops.Custom(func_type="aot"): y = x @ W^T for the Linears of CodeGeeX.
//
//   linear_int8_*(x [M, K] float32, w [N, K] int8, scale [N] float32[, bias [N] float32]) -> y [M, N] float32
//       y[m, n] = scale[n] * sum_k x[m, k] * w[n, k] (+ bias[n])    (weight-only int8, dequantised in registers)
//   linear_f32_*(x [M, K] float32, w [N, K] float32[, bias [N] float32]) -> y [M, N] float32
//   linear_int8_gelu_*, linear_f32_gelu_*: the same, then y * sigmoid(1.702 y) (the model's fast GELU)
//   linear_w8a8[_gelu]_*(x, w int8, scale[, bias]): x is quantised too, per row and symmetric (sx = max|x| / 127,
//       q = rint(x / sx)), and multiplied in integers: y[m, n] = float(sum_k q[m, k] w[n, k]) * sx[m] * scale[n]
//       (+ bias). Approximate (the activation's rounding), as torch's quantize_dynamic; paths _vnni (AVX-512 VNNI)
//       and _portable, both exact to the same integer sums.
//
// The bias and the activation are applied here because in a decode step MindSpore's CPU runtime spends more time
// between two small ops than in them (about 20 us each): every op folded into the matmul saves that.
//
// Each exists as _avx512 (AVX-512F/BW), _avx2 (AVX2 + FMA) and _portable (plain C++); the unsuffixed name picks
// the best path this CPU supports at run time. Every path is exact up to float summation order.
//
// Batch-1 decoding reads every weight once per token, so the kernels are written for bandwidth: weights are
// streamed row by row and never expanded to float32 in memory. AVX-512: a tile of x (MT rows, kept in L2) is
// multiplied with NR=4 weight rows at a time in registers (up to 4 x NR accumulators), prefetching the weight rows
// two blocks ahead (at batch 8 the FMAs keep up with memory only so); AVX2: the same with 8-float vectors.
// Every output element is summed in the same order whatever M is (one accumulator per (row, weight row), k in
// order), so a row's result does not depend on how many rows share the call: a sample decoded in a batch of 8 is
// the one decoded alone. (The one-row path with four accumulators per dot product that this replaced was no faster
// measurably: 350M int8, int8 head, infer.py batch-1 decoding, 3 alternated rounds on this project's 2-core AMD
// EPYC host: 88.6-107.9 tokens/s with it, 77.7-109.9 without.)
// float16 weights (the tied head of a checkpoint with a float16 embedding) are converted in registers (AVX-512F
// and F16C conversions; the AVX2 path needs F16C, which every AVX2 CPU has).
//
// Threads: the weight rows of every call (one row of x too: two cores read memory faster than one; measured on
// this project's 2-core host, 24 batch-1 350M int8 layers in 9.1-9.6 ms split, 12.7 ms on one thread) are split
// over the thread pool of threads.cc.
#include <algorithm>
#include <functional>
#include <cstdint>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <vector>
#include <immintrin.h>

#include "linear.h"
#include "threads.h"

namespace {

constexpr int64_t NR = 4;     // weight rows per register block
constexpr int64_t MT = 16;    // rows of x per tile

// ---------------------------------------------------------------------------------------------------------
// float16 weights (IEEE half, as MindSpore stores float16): converted in registers, never expanded in memory
struct Half {
  uint16_t bits;
};

inline float half_to_float(uint16_t h) {  // exact: every half is a float
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff, bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);                       // inf, nan
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);           // normal
  } else if (mantissa == 0) {
    bits = sign;                                                         // zero
  } else {                                                               // subnormal: normalise
    exponent = 113;
    while (!(mantissa & 0x400)) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline float as_float(float v) { return v; }
inline float as_float(int8_t v) { return static_cast<float>(v); }
inline float as_float(Half v) { return half_to_float(v.bits); }

// ---------------------------------------------------------------------------------------------------------
// portable

template <typename W>
void rows_portable(const float *x, const W *w, const float *scale, float *y, int64_t M, int64_t N, int64_t K,
                   int64_t n_begin, int64_t n_end) {
  for (int64_t m = 0; m < M; ++m) {
    const float *xm = x + m * K;
    for (int64_t n = n_begin; n < n_end; ++n) {
      const W *wn = w + n * K;
      float acc = 0.0f;
      for (int64_t k = 0; k < K; ++k) acc += xm[k] * as_float(wn[k]);
      y[m * N + n] = scale ? acc * scale[n] : acc;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// AVX-512: 16 floats per vector

__attribute__((target("avx512f,avx512bw"))) inline __m512 load16(const float *p) { return _mm512_loadu_ps(p); }
__attribute__((target("avx512f,avx512bw"))) inline __m512 load16(const Half *p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p)));
}
__attribute__((target("avx512f,avx512bw"))) inline __m512 load16(const int8_t *p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p))));
}

// Prefetch a line of weights. Where the call reads each weight line once (one block of rows of x: batch-1 and small
// batched decode steps), non-temporally: streaming the layers' weights then does not evict the activations, the KV
// cache, or the framework's own data, which MindSpore's runtime touches between two kernels (a decode step was
// faster so, and its time outside the kernels shorter: bench/README.md, "Measurements behind design choices").
// Where later blocks of rows read the line again (prefill, larger batches), into every level.
// Where a caller computes scattered rows (dot_rows_f32), the rows ahead are not the next ones: no prefetch.
enum class Fetch { all, once, none };

template <Fetch kFetch>
inline void prefetch_weights(const void *line) {
  if (kFetch != Fetch::none)
    _mm_prefetch(static_cast<const char *>(line), kFetch == Fetch::once ? _MM_HINT_NTA : _MM_HINT_T0);
}

// one weight row with one row of x: four independent accumulators over 64 elements per step, so that the
// loads and conversions of the next step overlap the FMAs of this one (a chain per row would be latency-bound)
template <typename W, int MR, Fetch kFetch>
__attribute__((target("avx512f,avx512bw")))
void block_avx512(const float *x, const W *w, const float *scale, float *y, int64_t N, int64_t K, int64_t m0,
                  int64_t n0, int64_t nr) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  const W *wr[NR];
  for (int j = 0; j < NR; ++j) wr[j] = w + (n0 + std::min<int64_t>(j, nr - 1)) * K;
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    if (k * sizeof(W) % 64 == 0)   // the weight rows two blocks ahead, a line at a time (batch-8 layers 1.6x faster)
      for (int j = 0; j < NR; ++j) prefetch_weights<kFetch>(wr[j] + 2 * NR * K + k);
    __m512 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = load16(wr[j] + k);
    for (int i = 0; i < MR; ++i) {
      __m512 xv = _mm512_loadu_ps(x + (m0 + i) * K + k);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    const float *xm = x + (m0 + i) * K;
    for (int j = 0; j < nr; ++j) {
      float s = _mm512_reduce_add_ps(acc[i][j]);
      for (int64_t t = k; t < K; ++t) s += xm[t] * as_float(wr[j][t]);
      y[(m0 + i) * N + n0 + j] = scale ? s * scale[n0 + j] : s;
    }
  }
}

// rows m0 .. m_end of x times weight rows n0 .. n0+nr, in blocks of 4, 3, 2 or 1 rows
template <typename W, Fetch kFetch>
__attribute__((target("avx512f,avx512bw")))
void row_blocks_avx512(const float *x, const W *w, const float *scale, float *y, int64_t N, int64_t K, int64_t m0,
                       int64_t m_end, int64_t n0, int64_t nr) {
  int64_t m = m0;
  for (; m + 4 <= m_end; m += 4) block_avx512<W, 4, kFetch>(x, w, scale, y, N, K, m, n0, nr);
  if (m_end - m == 3) block_avx512<W, 3, kFetch>(x, w, scale, y, N, K, m, n0, nr);
  else if (m_end - m == 2) block_avx512<W, 2, kFetch>(x, w, scale, y, N, K, m, n0, nr);
  else if (m_end - m == 1) block_avx512<W, 1, kFetch>(x, w, scale, y, N, K, m, n0, nr);
}

template <typename W>
__attribute__((target("avx512f,avx512bw")))
void rows_avx512(const float *x, const W *w, const float *scale, float *y, int64_t M, int64_t N, int64_t K,
                 int64_t n_begin, int64_t n_end) {
  // two rows or more (batched decoding, prefill): a tile of x (MT rows, kept in L2) times NR weight rows at a
  // time, 4, 3, 2 or 1 rows x NR accumulators in registers (measured, 24 350M int8 layers' matmuls: 2 rows
  // 6.6-9.4 ms and 3 rows 7.7-9.4 ms, against 12.7-14.6 and 18.0-20.9 with per-row dot products sharing each
  // converted weight vector, which had no prefetch)
  for (int64_t mt = 0; mt < M; mt += MT) {
    int64_t mt_end = std::min(M, mt + MT);
    for (int64_t n0 = n_begin; n0 < n_end; n0 += NR) {
      int64_t nr = std::min(NR, n_end - n0);
      if (M <= 4)                                     // one block of rows: each weight line is read once
        row_blocks_avx512<W, Fetch::once>(x, w, scale, y, N, K, mt, mt_end, n0, nr);
      else
        row_blocks_avx512<W, Fetch::all>(x, w, scale, y, N, K, mt, mt_end, n0, nr);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// AVX2 + FMA: 8 floats per vector

__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const float *p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const Half *p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
}
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const int8_t *p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p))));
}

__attribute__((target("avx2,fma,f16c"))) inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

template <typename W, int MR, Fetch kFetch>
__attribute__((target("avx2,fma,f16c")))
void block_avx2(const float *x, const W *w, const float *scale, float *y, int64_t N, int64_t K, int64_t m0,
                int64_t n0, int64_t nr) {
  __m256 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  const W *wr[NR];
  for (int j = 0; j < NR; ++j) wr[j] = w + (n0 + std::min<int64_t>(j, nr - 1)) * K;
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    if (k * sizeof(W) % 64 == 0)   // the weight rows two blocks ahead, as block_avx512
      for (int j = 0; j < NR; ++j) prefetch_weights<kFetch>(wr[j] + 2 * NR * K + k);
    __m256 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = load8(wr[j] + k);
    for (int i = 0; i < MR; ++i) {
      __m256 xv = _mm256_loadu_ps(x + (m0 + i) * K + k);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    const float *xm = x + (m0 + i) * K;
    for (int j = 0; j < nr; ++j) {
      float s = hsum8(acc[i][j]);
      for (int64_t t = k; t < K; ++t) s += xm[t] * as_float(wr[j][t]);
      y[(m0 + i) * N + n0 + j] = scale ? s * scale[n0 + j] : s;
    }
  }
}

// rows m0 .. m_end of x times weight rows n0 .. n0+nr, in blocks of 2 or 1 rows
template <typename W, Fetch kFetch>
__attribute__((target("avx2,fma,f16c")))
void row_blocks_avx2(const float *x, const W *w, const float *scale, float *y, int64_t N, int64_t K, int64_t m0,
                     int64_t m_end, int64_t n0, int64_t nr) {
  int64_t m = m0;
  for (; m + 2 <= m_end; m += 2) block_avx2<W, 2, kFetch>(x, w, scale, y, N, K, m, n0, nr);
  for (; m < m_end; ++m) block_avx2<W, 1, kFetch>(x, w, scale, y, N, K, m, n0, nr);
}

template <typename W>
__attribute__((target("avx2,fma,f16c")))
void rows_avx2(const float *x, const W *w, const float *scale, float *y, int64_t M, int64_t N, int64_t K,
               int64_t n_begin, int64_t n_end) {
  // from two rows, 2 x 4 tiles (measured, 24 350M int8 layers' matmuls: 2 rows 8.2-9.8 ms against 16.5-19.7 with
  // per-row dot products, 8 rows 27-33 ms against 57-63)
  for (int64_t mt = 0; mt < M; mt += MT) {
    int64_t mt_end = std::min(M, mt + MT);
    for (int64_t n0 = n_begin; n0 < n_end; n0 += NR) {
      int64_t nr = std::min(NR, n_end - n0);
      if (M <= 2)                                     // one block of rows: each weight line is read once
        row_blocks_avx2<W, Fetch::once>(x, w, scale, y, N, K, mt, mt_end, n0, nr);
      else
        row_blocks_avx2<W, Fetch::all>(x, w, scale, y, N, K, mt, mt_end, n0, nr);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// int8 activations (w8a8): each row of x quantised to int8, integer dot products

// q[k] = rint(x[k] * (127 / max|x|)) for one row; returns sx = max|x| / 127 (0 for a zero row, whose q is 0)
float quantize_row(const float *x, int64_t K, int8_t *q) {
  float amax = 0.0f;
  for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[k]));
  if (amax == 0.0f) {
    std::memset(q, 0, K);
    return 0.0f;
  }
  const float inv = 127.0f / amax;
  for (int64_t k = 0; k < K; ++k) q[k] = static_cast<int8_t>(std::nearbyint(x[k] * inv));
  return amax / 127.0f;
}

// the same with AVX-512, writing u = q + 128 (vpdpbusd's unsigned operand) directly: the conversion rounds to
// nearest even under the default MXCSR, as nearbyint does, so both paths quantise identically
__attribute__((target("avx512f,avx512bw,avx512vnni")))
float quantize_row_offset_vnni(const float *x, int64_t K, uint8_t *u) {
  __m512 vmax = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(x + k)));
  float amax = _mm512_reduce_max_ps(vmax);
  for (; k < K; ++k) amax = std::max(amax, std::fabs(x[k]));
  if (amax == 0.0f) {
    std::memset(u, 128, K);
    return 0.0f;
  }
  const float inv = 127.0f / amax;
  const __m512 vinv = _mm512_set1_ps(inv);
  const __m512i offset = _mm512_set1_epi32(128);
  for (k = 0; k + 16 <= K; k += 16) {
    __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + k), vinv)), offset);
    _mm_storeu_si128(reinterpret_cast<__m128i *>(u + k), _mm512_cvtepi32_epi8(q));
  }
  for (; k < K; ++k) u[k] = static_cast<uint8_t>(static_cast<int>(std::nearbyint(x[k] * inv)) + 128);
  return amax / 127.0f;
}

void w8a8_portable(const int8_t *q, const float *sx, const int8_t *w, const float *scale, float *y, int64_t M,
                   int64_t N, int64_t K, int64_t n_begin, int64_t n_end) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = n_begin; n < n_end; ++n) {
      const int8_t *qm = q + m * K, *wn = w + n * K;
      int32_t acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += static_cast<int32_t>(qm[k]) * static_cast<int32_t>(wn[k]);
      y[m * N + n] = static_cast<float>(acc) * sx[m] * scale[n];
    }
}

// AVX-512 VNNI: vpdpbusd multiplies unsigned by signed bytes, so x is stored as u = q + 128 and the weight row's
// own sum (one more vpdpbusd against ones, on the same loaded vector) takes the 128s back out:
// sum q w = sum u w - 128 sum w. MR rows of x share every loaded weight vector; the tail is a masked load.
template <int MR>
__attribute__((target("avx512f,avx512bw,avx512vnni")))
void w8a8_dots_vnni(const uint8_t *u, const int8_t *wn, int64_t K, int32_t *out) {
  // four independent accumulators per row (256 weight bytes per step): a single vpdpbusd chain is latency-bound
  // and keeps too few loads in flight to stream weights at the memory's rate
  constexpr int U = 4;
  __m512i acc[MR][U], wsum[U];
  const __m512i ones = _mm512_set1_epi8(1);
  for (int j = 0; j < U; ++j) {
    wsum[j] = _mm512_setzero_si512();
    for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_setzero_si512();
  }
  int64_t k = 0;
  for (; k + 64 * U <= K; k += 64 * U)
    for (int j = 0; j < U; ++j) {
      __m512i wv = _mm512_loadu_si512(wn + k + 64 * j);
      wsum[j] = _mm512_dpbusd_epi32(wsum[j], ones, wv);
      for (int i = 0; i < MR; ++i)
        acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], _mm512_loadu_si512(u + i * K + k + 64 * j), wv);
    }
  for (; k + 64 <= K; k += 64) {
    __m512i wv = _mm512_loadu_si512(wn + k);
    wsum[0] = _mm512_dpbusd_epi32(wsum[0], ones, wv);
    for (int i = 0; i < MR; ++i) acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], _mm512_loadu_si512(u + i * K + k), wv);
  }
  if (k < K) {
    __mmask64 tail = _cvtu64_mask64((~0ULL) >> (64 - (K - k)));
    __m512i wv = _mm512_maskz_loadu_epi8(tail, wn + k);
    wsum[0] = _mm512_dpbusd_epi32(wsum[0], ones, wv);
    for (int i = 0; i < MR; ++i)
      acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], _mm512_maskz_loadu_epi8(tail, u + i * K + k), wv);
  }
  __m512i ws = _mm512_add_epi32(_mm512_add_epi32(wsum[0], wsum[1]), _mm512_add_epi32(wsum[2], wsum[3]));
  const int32_t correction = 128 * _mm512_reduce_add_epi32(ws);
  for (int i = 0; i < MR; ++i) {
    __m512i a = _mm512_add_epi32(_mm512_add_epi32(acc[i][0], acc[i][1]), _mm512_add_epi32(acc[i][2], acc[i][3]));
    out[i] = _mm512_reduce_add_epi32(a) - correction;
  }
}

__attribute__((target("avx512f,avx512bw,avx512vnni")))
void w8a8_vnni(const uint8_t *u, const float *sx, const int8_t *w, const float *scale, float *y, int64_t M, int64_t N,
               int64_t K, int64_t n_begin, int64_t n_end) {
  int32_t out[4];
  for (int64_t n = n_begin; n < n_end; ++n) {
    const int8_t *wn = w + n * K;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) {
      w8a8_dots_vnni<4>(u + m * K, wn, K, out);
      for (int i = 0; i < 4; ++i) y[(m + i) * N + n] = static_cast<float>(out[i]) * sx[m + i] * scale[n];
    }
    for (; m + 2 <= M; m += 2) {
      w8a8_dots_vnni<2>(u + m * K, wn, K, out);
      for (int i = 0; i < 2; ++i) y[(m + i) * N + n] = static_cast<float>(out[i]) * sx[m + i] * scale[n];
    }
    for (; m < M; ++m) {
      w8a8_dots_vnni<1>(u + m * K, wn, K, out);
      y[m * N + n] = static_cast<float>(out[0]) * sx[m] * scale[n];
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// dispatch, threads, MindSpore's aot interface

enum class Path { portable, avx2, avx512, vnni };

bool has_vnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vnni");
}

Path best_path() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return Path::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Path::avx2;
  return Path::portable;
}

// y += bias, then y = y * sigmoid(1.702 y) (the model's fast GELU) if asked, on the rows this part wrote
void epilogue(float *y, int64_t M, int64_t N, int64_t n_begin, int64_t n_end, const float *bias, bool gelu) {
  for (int64_t m = 0; m < M; ++m) {
    float *ym = y + m * N;
    if (bias)
      for (int64_t n = n_begin; n < n_end; ++n) ym[n] += bias[n];
    if (gelu)
      for (int64_t n = n_begin; n < n_end; ++n) ym[n] = ym[n] * (1.0f / (1.0f + std::exp(-1.702f * ym[n])));
  }
}

// rows(begin, end) computes output columns [begin, end) for every row of x; the weight rows are split over the pool
// in multiples of NR (below 64 weight rows per thread, one thread)
template <typename Rows>
void split_rows(int64_t M, int64_t N, const Rows &rows) {
  const int parts = codegeex::thread_count();
  if (parts == 1 || N < 64 * parts) {
    rows(0, N);
    return;
  }
  int64_t per = (N / parts + NR - 1) / NR * NR;
  codegeex::run_parts([&](int part) {
    rows(std::min(N, part * per), part == parts - 1 ? N : std::min(N, (part + 1) * per));
  });
}

template <typename W>
void run(Path path, const float *x, const W *w, const float *scale, const float *bias, bool gelu, float *y, int64_t M,
         int64_t N, int64_t K) {
  auto rows = [=](int64_t begin, int64_t end) {
    if (path == Path::avx512) rows_avx512<W>(x, w, scale, y, M, N, K, begin, end);
    else if (path == Path::avx2) rows_avx2<W>(x, w, scale, y, M, N, K, begin, end);
    else rows_portable<W>(x, w, scale, y, M, N, K, begin, end);
    if (bias || gelu) epilogue(y, M, N, begin, end, bias, gelu);
  };
  split_rows(M, N, rows);
}

// w8a8: quantise every row of x once (into a buffer reused between calls of this thread), then split the weight
// rows as run() does
void run_w8a8(Path path, const float *x, const int8_t *w, const float *scale, const float *bias, bool gelu, float *y,
              int64_t M, int64_t N, int64_t K) {
  thread_local std::vector<int8_t> q;
  thread_local std::vector<float> sx;
  q.resize(M * K);
  sx.resize(M);
  for (int64_t m = 0; m < M; ++m)
    sx[m] = path == Path::vnni  // stored as q + 128 for vpdpbusd's unsigned operand
                ? quantize_row_offset_vnni(x + m * K, K, reinterpret_cast<uint8_t *>(q.data() + m * K))
                : quantize_row(x + m * K, K, q.data() + m * K);
  const int8_t *qd = q.data();
  const float *sd = sx.data();
  auto rows = [=](int64_t begin, int64_t end) {
    if (path == Path::vnni) w8a8_vnni(reinterpret_cast<const uint8_t *>(qd), sd, w, scale, y, M, N, K, begin, end);
    else w8a8_portable(qd, sd, w, scale, y, M, N, K, begin, end);
    if (bias || gelu) epilogue(y, M, N, begin, end, bias, gelu);
  };
  split_rows(M, N, rows);
}

// params: inputs then the output. int8: x [M, K], w [N, K], scale [N], optional bias [N], y [M, N]; f32: x, w,
// optional bias, y. Returns non-zero on a shape it cannot take.
// x [M, K], w [N, K] int8, scale [N], optional bias [N] (then y)
bool int8_shapes_ok(int nparam, const int *ndims, int64_t *const *shapes) {
  return (nparam == 4 || nparam == 5) && ndims[0] == 2 && ndims[1] == 2 && ndims[2] == 1 &&
         shapes[0][1] == shapes[1][1] && shapes[2][0] == shapes[1][0] &&
         (nparam == 4 || (ndims[3] == 1 && shapes[3][0] == shapes[1][0]));
}

int linear_int8(Path path, bool gelu, int nparam, void **params, int *ndims, int64_t **shapes) {
  if (!int8_shapes_ok(nparam, ndims, shapes)) return 1;
  const float *bias = nparam == 5 ? static_cast<const float *>(params[3]) : nullptr;
  run<int8_t>(path, static_cast<const float *>(params[0]), static_cast<const int8_t *>(params[1]),
              static_cast<const float *>(params[2]), bias, gelu, static_cast<float *>(params[nparam - 1]),
              shapes[0][0], shapes[1][0], shapes[0][1]);
  return 0;
}

int linear_w8a8(Path path, bool gelu, int nparam, void **params, int *ndims, int64_t **shapes) {
  if (!int8_shapes_ok(nparam, ndims, shapes)) return 1;
  if (path == Path::vnni && !has_vnni()) return 2;
  const float *bias = nparam == 5 ? static_cast<const float *>(params[3]) : nullptr;
  run_w8a8(path, static_cast<const float *>(params[0]), static_cast<const int8_t *>(params[1]),
           static_cast<const float *>(params[2]), bias, gelu, static_cast<float *>(params[nparam - 1]), shapes[0][0],
           shapes[1][0], shapes[0][1]);
  return 0;
}

int linear_f32(Path path, bool gelu, int nparam, void **params, int *ndims, int64_t **shapes) {
  if ((nparam != 3 && nparam != 4) || ndims[0] != 2 || ndims[1] != 2 || shapes[0][1] != shapes[1][1] ||
      (nparam == 4 && (ndims[2] != 1 || shapes[2][0] != shapes[1][0])))
    return 1;
  const float *bias = nparam == 4 ? static_cast<const float *>(params[2]) : nullptr;
  run<float>(path, static_cast<const float *>(params[0]), static_cast<const float *>(params[1]), nullptr, bias, gelu,
             static_cast<float *>(params[nparam - 1]), shapes[0][0], shapes[1][0], shapes[0][1]);
  return 0;
}

// f16: x [M, K] float32, w [N, K] float16, y [M, N]
int linear_f16(Path path, bool gelu, int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != 3 || gelu || ndims[0] != 2 || ndims[1] != 2 || shapes[0][1] != shapes[1][1]) return 1;
  run<Half>(path, static_cast<const float *>(params[0]), static_cast<const Half *>(params[1]), nullptr, nullptr,
            false, static_cast<float *>(params[2]), shapes[0][0], shapes[1][0], shapes[0][1]);
  return 0;
}

const Path kBest = best_path();
const Path kBestW8A8 = has_vnni() ? Path::vnni : Path::portable;

}  // namespace

namespace codegeex {
bool avx512_path() { return kBest == Path::avx512; }

void linear_int8_best(const float *x, const int8_t *w, const float *scale, const float *bias, bool gelu, float *y,
                      int64_t M, int64_t N, int64_t K) {
  run<int8_t>(kBest, x, w, scale, bias, gelu, y, M, N, K);
}
void linear_f32_best(const float *x, const float *w, const float *bias, bool gelu, float *y, int64_t M, int64_t N,
                     int64_t K) {
  run<float>(kBest, x, w, nullptr, bias, gelu, y, M, N, K);
}
}  // namespace codegeex

namespace {
template <typename W>
void dot_rows(const float *x, const W *w, const int32_t *rows, int64_t count, float *y, int64_t K) {
  for (int64_t i = 0; i < count; ++i) {
    const int64_t r = rows[i];
    if (kBest == Path::avx512) block_avx512<W, 1, Fetch::none>(x, w, nullptr, y, 0, K, 0, r, 1);
    else if (kBest == Path::avx2) block_avx2<W, 1, Fetch::none>(x, w, nullptr, y, 0, K, 0, r, 1);
    else rows_portable<W>(x, w, nullptr, y, 1, 0, K, r, r + 1);
  }
}
}  // namespace

namespace codegeex {
void dot_rows_f32(const float *x, const float *w, const int32_t *rows, int64_t count, float *y, int64_t K) {
  dot_rows(x, w, rows, count, y, K);
}
void dot_rows_f16(const float *x, const uint16_t *w, const int32_t *rows, int64_t count, float *y, int64_t K) {
  static_assert(sizeof(Half) == sizeof(uint16_t), "Half is the bits of an IEEE half");
  dot_rows(x, reinterpret_cast<const Half *>(w), rows, count, y, K);
}
void matmul_f32_one_thread(const float *x, const float *w, float *y, int64_t M, int64_t N, int64_t K) {
  if (kBest == Path::avx512) rows_avx512<float>(x, w, nullptr, y, M, N, K, 0, N);
  else if (kBest == Path::avx2) rows_avx2<float>(x, w, nullptr, y, M, N, K, 0, N);
  else rows_portable<float>(x, w, nullptr, y, M, N, K, 0, N);
}
}  // namespace codegeex

#define AOT_ARGS int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream, void *extra
extern "C" {
#define LINEAR_ENTRY(kind, suffix, path, gelu) \
  int linear_##kind##suffix(AOT_ARGS) { return linear_##kind(path, gelu, nparam, params, ndims, shapes); }
#define LINEAR_PATHS(kind, act, gelu)                      \
  LINEAR_ENTRY(kind, act##_avx512, Path::avx512, gelu)     \
  LINEAR_ENTRY(kind, act##_avx2, Path::avx2, gelu)         \
  LINEAR_ENTRY(kind, act##_portable, Path::portable, gelu) \
  LINEAR_ENTRY(kind, act##_auto, kBest, gelu)
// linear_{int8,f32}[_gelu]_{avx512,avx2,portable,auto}
LINEAR_PATHS(int8, , false)
LINEAR_PATHS(int8, _gelu, true)
LINEAR_PATHS(f32, , false)
LINEAR_PATHS(f32, _gelu, true)
// linear_f16_{avx512,avx2,portable,auto}
LINEAR_PATHS(f16, , false)
// linear_w8a8[_gelu]_{vnni,portable,auto}
LINEAR_ENTRY(w8a8, _vnni, Path::vnni, false)
LINEAR_ENTRY(w8a8, _portable, Path::portable, false)
LINEAR_ENTRY(w8a8, _auto, kBestW8A8, false)
LINEAR_ENTRY(w8a8, _gelu_vnni, Path::vnni, true)
LINEAR_ENTRY(w8a8, _gelu_portable, Path::portable, true)
LINEAR_ENTRY(w8a8, _gelu_auto, kBestW8A8, true)
// whether the w8a8 _auto functions use VNNI on this CPU
int w8a8_has_vnni() { return has_vnni() ? 1 : 0; }
// which path the _auto functions take on this CPU: 0 portable, 1 avx2, 2 avx512
int best_kernel_path() { return static_cast<int>(kBest); }
}
