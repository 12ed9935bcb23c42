// The CodeGeeX transformer stack for a decode step or a prefill chunk, as one ops.Custom(func_type="aot") call: every
// layer, the final LayerNorm and the top query layer.
//
// A batch-1 decode step of the 350M model ran 473 MindSpore operators, and MindSpore's CPU runtime spends about
// 20 us between two of them: 11 ms of a 36 ms step. One call per layer still left about 21 us of the runtime's
// work between two layers' calls (0.5 ms of a 350M batch-1 step), so the whole stack is one call. Each layer:
//
//   h   = LayerNorm1(x)
//   q   = (top ? query_input : h) @ Wq^T + bq;  k = h @ Wk^T + bk;  v = h @ Wv^T + bv       (int8 or float32 weights)
//   q  *= d^-1/4;  k *= d^-1/4                    (as the model: the cache keeps keys already scaled)
//   key_cache[c, :, pos[r], :] = k;  value_cache[c, :, pos[r], :] = v    (c = r / s; written in place, all rows
//   ctx = softmax(q . key_cache[c, :, j, :] for j <= pos[r]) @ value_cache                 first; per row and head)
//   x  += ctx @ Wo^T + bo
//   x  += gelu(LayerNorm2(x) @ W1^T + b1) @ W2^T + b2                     (fast GELU: y * sigmoid(1.702 y))
//
// and between the last layer and the top query layer (whose queries come from the top query embedding, its keys,
// values and residual from the normalised stream) x = FinalLayerNorm(x).
//
// The same maths as the graph's path (model.py) in float32 up to summation order: the graph adds -10000 to the
// scores of positions after pos[r], whose exp is exactly 0 in float32, so skipping them changes nothing.
//
// Rows: a decode step has one row per cache row (s = 1); a prefill chunk of s tokens has s consecutive rows per
// cache row, at consecutive positions: every row's key and value are in the cache before any row attends, so a
// row sees the chunk's earlier tokens and, through the mask of positions, none of its later ones.
//
// Inputs (LayerNorm parameters and biases float32 or float16):
//   x [b * s, h] (the embeddings), top_queries [b * s, h] (the top query embedding),
//   then for each layer, the top query layer last, its Parameters in the order of the layer table
//   (layout.LAYER_MODULES; the Linears' scale tensors only in the int8 entry):
//     ln1 weight [h], ln1 bias [h], query, key, value, dense: weight [h, h] (int8 with scale [h], or float32),
//     bias [h], ln2 weight [h], ln2 bias [h], dense_h_to_4h: weight [f, h] (+ scale [f]), bias [f],
//     dense_4h_to_h: weight [h, f] (+ scale [h]), bias [h],
//   and its key_cache [b, n, L, d] float32, value_cache (the same);
//   final LayerNorm weight [h], bias [h], positions [b * s] int32 (where each row's token goes, < L),
//   constants [2] float32 (LayerNorm eps, d^-1/4)
// Output: the top query layer's output [b * s, h] float32. Returns non-zero (MindSpore raises) on shapes it cannot
// take, a position outside the cache, or a chunk whose rows' positions are not consecutive.
//
// Attention: a decode step attends per (row, head), a dot product per cached position; a chunk attends per (cache
// row, head) through two matmuls of the linear kernels, as the graph's batched matmuls do (one query row at a time
// made a 1,000-token prefill 0.83x the graph path's speed).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#include <immintrin.h>

#include "linear.h"
#include "threads.h"

namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE half -> float, exactly (subnormals, infinities and NaNs included)
float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  if (exponent == 0x1f) return from_bits(sign | 0x7f800000 | (mantissa << 13));
  if (exponent == 0) {
    float value = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -value : value;
  }
  return from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

struct Inputs {
  void **params;
  int *ndims;
  int64_t **shapes;
  const char **dtypes;
  int index = 0;
  bool ok = true;

  void *next(int dims) {
    if (ndims[index] != dims) ok = false;
    return params[index++];
  }
  int64_t dim(int input, int axis) const { return shapes[input][axis]; }
};

// a vector of n floats that may be stored as float16: converted into storage owned by the caller
struct Vector {
  const float *data = nullptr;
  std::vector<float> converted;
};

void read_vector(Inputs &in, int64_t n, Vector &out) {
  int i = in.index;
  const void *p = in.next(1);
  if (in.shapes[i][0] != n) in.ok = false;
  if (std::strcmp(in.dtypes[i], "float16") == 0) {
    out.converted.resize(n);
    const uint16_t *h = static_cast<const uint16_t *>(p);
    for (int64_t k = 0; k < n; ++k) out.converted[k] = half_to_float(h[k]);
    out.data = out.converted.data();
  } else {
    if (std::strcmp(in.dtypes[i], "float32") != 0) in.ok = false;
    out.data = static_cast<const float *>(p);
  }
}

template <typename W>
struct Linear {
  const W *weight = nullptr;
  const float *scale = nullptr;
  Vector bias;
  int64_t out = 0, in = 0;

  void read(Inputs &in_, int64_t expect_out, int64_t expect_in) {
    int i = in_.index;
    weight = static_cast<const W *>(in_.next(2));
    out = in_.dim(i, 0);
    in = in_.dim(i, 1);
    if (out != expect_out || in != expect_in) in_.ok = false;
    if (sizeof(W) == 1) {
      int s = in_.index;
      scale = static_cast<const float *>(in_.next(1));
      if (in_.dim(s, 0) != out) in_.ok = false;
    }
    read_vector(in_, out, bias);
  }

  void apply(const float *x, float *y, int64_t rows, bool gelu) const;
};

template <>
void Linear<int8_t>::apply(const float *x, float *y, int64_t rows, bool gelu) const {
  codegeex::linear_int8_best(x, weight, scale, bias.data, gelu, y, rows, out, in);
}

template <>
void Linear<float>::apply(const float *x, float *y, int64_t rows, bool gelu) const {
  codegeex::linear_f32_best(x, weight, bias.data, gelu, y, rows, out, in);
}

// y = (x - mean) / sqrt(var + eps) * weight + bias over each row of h (biased variance, as MindSpore's LayerNorm)
void layer_norm(const float *x, const float *weight, const float *bias, float eps, float *y, int64_t rows, int64_t h) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * h;
    double sum = 0.0;
    for (int64_t k = 0; k < h; ++k) sum += xr[k];
    const float mean = static_cast<float>(sum / h);
    double squares = 0.0;
    for (int64_t k = 0; k < h; ++k) {
      const float c = xr[k] - mean;
      squares += static_cast<double>(c) * c;
    }
    const float inv = 1.0f / std::sqrt(static_cast<float>(squares / h) + eps);
    float *yr = y + r * h;
    for (int64_t k = 0; k < h; ++k) yr[k] = (xr[k] - mean) * inv * weight[k] + bias[k];
  }
}

// out [d] = softmax(q . keys[j] for j <= pos) @ values[0..pos] for one row and head (q already scaled). The dot
// products keep 16 partial sums, a loop the compiler vectorises in each clone: AVX-512, AVX2 + FMA, SSE2.
__attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
void attend_head(const float *q, const float *keys, const float *values, int64_t pos, int64_t d, float *scores,
                 float *out) {
  constexpr int kLanes = 16;
  float top = -INFINITY;
  for (int64_t j = 0; j <= pos; ++j) {
    const float *kj = keys + j * d;
    float lanes[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= d; i += kLanes)
      for (int l = 0; l < kLanes; ++l) lanes[l] += q[i + l] * kj[i + l];
    float s = 0.0f;
    for (int l = 0; l < kLanes; ++l) s += lanes[l];
    for (; i < d; ++i) s += q[i] * kj[i];
    scores[j] = s;
    top = std::max(top, s);
  }
  float total = 0.0f;
  for (int64_t j = 0; j <= pos; ++j) {
    scores[j] = std::exp(scores[j] - top);
    total += scores[j];
  }
  std::fill(out, out + d, 0.0f);
  for (int64_t j = 0; j <= pos; ++j) {
    const float p = scores[j] / total;
    const float *vj = values + j * d;
    for (int64_t i = 0; i < d; ++i) out[i] += p * vj[i];
  }
}

// exp(x) of 16 floats, x <= 0 (scores minus their maximum): x = n ln2 + r with |r| <= ln2 / 2, exp(r) by Cephes'
// expf polynomial (about 1 ulp), times 2^n (scalef, which gives 0 where exp underflows)
__attribute__((target("avx512f"))) inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));                 // exp(-104) is below float's smallest subnormal
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
  return _mm512_scalef_ps(_mm512_add_ps(p, _mm512_set1_ps(1.0f)), n);
}

// attend_head with AVX-512 for a head size of V x 16 floats: q and the context in V registers each, a dot product
// per position reduced in registers, the exponentials 16 at a time (the scalar path's per-position std::exp and
// lane sums made a 350M decode step's attention run at half the rate its matmuls read memory)
template <int V>
__attribute__((target("avx512f")))
void attend_head_avx512(const float *q, const float *keys, const float *values, int64_t pos, float *scores,
                        float *out) {
  constexpr int64_t d = 16 * V;
  __m512 qv[V];
  for (int v = 0; v < V; ++v) qv[v] = _mm512_loadu_ps(q + 16 * v);
  __m512 top = _mm512_set1_ps(-INFINITY);
  const int64_t n = pos + 1;
  for (int64_t j = 0; j < n; ++j) {
    const float *kj = keys + j * d;
    __m512 acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kj));
    for (int v = 1; v < V; ++v) acc = _mm512_fmadd_ps(qv[v], _mm512_loadu_ps(kj + 16 * v), acc);
    scores[j] = _mm512_reduce_add_ps(acc);
  }
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(scores + j));
  float best = _mm512_reduce_max_ps(top);
  for (; j < n; ++j) best = std::max(best, scores[j]);
  const __m512 shift = _mm512_set1_ps(best);
  __m512 sum = _mm512_setzero_ps();
  for (j = 0; j + 16 <= n; j += 16) {
    const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(scores + j), shift));
    _mm512_storeu_ps(scores + j, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (j < n) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (n - j)) - 1);
    const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, scores + j), shift));
    _mm512_mask_storeu_ps(scores + j, tail, e);
    sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(tail, e));
  }
  const float inv = 1.0f / _mm512_reduce_add_ps(sum);
  __m512 ctx[V];
  for (int v = 0; v < V; ++v) ctx[v] = _mm512_setzero_ps();
  for (j = 0; j < n; ++j) {
    const __m512 p = _mm512_set1_ps(scores[j] * inv);
    const float *vj = values + j * d;
    for (int v = 0; v < V; ++v) ctx[v] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vj + 16 * v), ctx[v]);
  }
  for (int v = 0; v < V; ++v) _mm512_storeu_ps(out + 16 * v, ctx[v]);
}

// one (row, head) of a decode step: where the matmuls take their AVX-512 path, the AVX-512 one for head sizes of
// 16 to 256 floats in steps of 16; else the portable one
void attend_decode(const float *q, const float *keys, const float *values, int64_t pos, int64_t d, float *scores,
                   float *out) {
  if (codegeex::avx512_path() && d % 16 == 0) {
    switch (d / 16) {
      case 4: return attend_head_avx512<4>(q, keys, values, pos, scores, out);      // 350M and smaller: 64
      case 8: return attend_head_avx512<8>(q, keys, values, pos, scores, out);      // 13B: 128
      case 1: return attend_head_avx512<1>(q, keys, values, pos, scores, out);
      case 2: return attend_head_avx512<2>(q, keys, values, pos, scores, out);
      case 16: return attend_head_avx512<16>(q, keys, values, pos, scores, out);
      default: break;
    }
  }
  attend_head(q, keys, values, pos, d, scores, out);
}

// The same for a chunk's s query rows of one cache row and head at positions p0 .. p0+s-1 (q row i at q + i * stride,
// its context at out + i * stride), as two matmuls on this thread: scores [s, p0+s] = q @ keys^T, then, each row's
// softmax over its positions j <= p0+i (the later ones 0), context = scores @ values.
void attend_chunk(const float *q, int64_t stride, const float *keys, const float *values, int64_t p0, int64_t s,
                  int64_t d, float *out) {
  thread_local std::vector<float> queries, scores, values_t, context;
  const int64_t J = p0 + s;
  queries.resize(s * d), scores.resize(s * J), values_t.resize(d * J), context.resize(s * d);
  for (int64_t i = 0; i < s; ++i) std::memcpy(queries.data() + i * d, q + i * stride, d * sizeof(float));
  codegeex::matmul_f32_one_thread(queries.data(), keys, scores.data(), s, J, d);
  for (int64_t i = 0; i < s; ++i) {
    float *row = scores.data() + i * J;
    const int64_t valid = p0 + i + 1;
    float top = -INFINITY;
    for (int64_t j = 0; j < valid; ++j) top = std::max(top, row[j]);
    float total = 0.0f;
    for (int64_t j = 0; j < valid; ++j) {
      row[j] = std::exp(row[j] - top);
      total += row[j];
    }
    const float inv = 1.0f / total;
    for (int64_t j = 0; j < valid; ++j) row[j] *= inv;
    std::fill(row + valid, row + J, 0.0f);
  }
  for (int64_t j = 0; j < J; ++j)
    for (int64_t k = 0; k < d; ++k) values_t[k * J + j] = values[j * d + k];
  codegeex::matmul_f32_one_thread(scores.data(), values_t.data(), context.data(), s, d, J);
  for (int64_t i = 0; i < s; ++i) std::memcpy(out + i * stride, context.data() + i * d, d * sizeof(float));
}

// One layer's inputs (the layer table's Parameters, then its key and value caches) and its maths.
template <typename W>
struct Layer {
  Vector ln1_w, ln1_b, ln2_w, ln2_b;
  Linear<W> query, key, value, dense, fc1, fc2;
  float *key_cache = nullptr, *value_cache = nullptr;
  int64_t heads = 0, length = 0, head_dim = 0, cache_rows = 0;

  // reads the inputs in.index onwards; false on a shape that does not fit h and b rows
  bool read(Inputs &in, int64_t h, int64_t b) {
    read_vector(in, h, ln1_w);
    read_vector(in, h, ln1_b);
    query.read(in, h, h);
    key.read(in, h, h);
    value.read(in, h, h);
    dense.read(in, h, h);
    read_vector(in, h, ln2_w);
    read_vector(in, h, ln2_b);
    const int64_t f = in.dim(in.index, 0);
    fc1.read(in, f, h);
    fc2.read(in, h, f);
    const int kc = in.index;
    key_cache = static_cast<float *>(in.next(4));
    value_cache = static_cast<float *>(in.next(4));
    if (!in.ok) return false;
    cache_rows = in.dim(kc, 0), heads = in.dim(kc, 1), length = in.dim(kc, 2), head_dim = in.dim(kc, 3);
    return cache_rows >= 1 && b % cache_rows == 0 && heads * head_dim == h &&
           std::memcmp(in.shapes[kc], in.shapes[kc + 1], 4 * sizeof(int64_t)) == 0 &&
           std::strcmp(in.dtypes[kc], "float32") == 0 && std::strcmp(in.dtypes[kc + 1], "float32") == 0;
  }

  // y [b, h] = the layer on x [b, h] (queries from query_input in the top layer); y may be x
  void run(bool top, const float *x, const float *query_input, float *y, const int32_t *positions, int64_t b,
           int64_t h, float eps, float scale) const {
    const int64_t n = heads, L = length, d = head_dim, f = fc1.out, s = b / cache_rows;
    thread_local std::vector<float> normed, q, k, v, ctx, attn, wide;
    normed.resize(b * h), q.resize(b * h), k.resize(b * h), v.resize(b * h), ctx.resize(b * h), attn.resize(b * h);
    wide.resize(b * f);

    layer_norm(x, ln1_w.data, ln1_b.data, eps, normed.data(), b, h);
    query.apply(top ? query_input : normed.data(), q.data(), b, false);
    key.apply(normed.data(), k.data(), b, false);
    value.apply(normed.data(), v.data(), b, false);

    for (int64_t r = 0; r < b; ++r) {                  // scale q and k; the new key and value go into the caches
      const int64_t pos = positions[r], c = r / s;
      for (int64_t head = 0; head < n; ++head) {
        const int64_t off = r * h + head * d, at = ((c * n + head) * L + pos) * d;
        for (int64_t i = 0; i < d; ++i) {
          q[off + i] *= scale;
          key_cache[at + i] = k[off + i] * scale;
          value_cache[at + i] = v[off + i];
        }
      }
    }
    const float *qs = q.data();
    float *context = ctx.data();
    if (s == 1) {
      codegeex::parallel_for(b * n, [&](int64_t begin, int64_t end) {     // (row, head) pairs over the threads
        thread_local std::vector<float> scores;
        scores.resize(L);
        for (int64_t pair = begin; pair < end; ++pair) {
          const int64_t r = pair / n, head = pair % n, off = r * h + head * d, cache = (r * n + head) * L * d;
          attend_decode(qs + off, key_cache + cache, value_cache + cache, positions[r], d, scores.data(),
                        context + off);
        }
      });
    } else {
      codegeex::parallel_for(cache_rows * n, [&](int64_t begin, int64_t end) {   // (cache row, head) pairs
        for (int64_t pair = begin; pair < end; ++pair) {
          const int64_t c = pair / n, head = pair % n, cache = pair * L * d;
          attend_chunk(qs + c * s * h + head * d, h, key_cache + cache, value_cache + cache, positions[c * s], s, d,
                       context + c * s * h + head * d);
        }
      });
    }

    dense.apply(ctx.data(), attn.data(), b, false);
    for (int64_t i = 0; i < b * h; ++i) y[i] = x[i] + attn[i];                   // the residual after attention
    layer_norm(y, ln2_w.data, ln2_b.data, eps, normed.data(), b, h);
    fc1.apply(normed.data(), wide.data(), b, true);
    fc2.apply(wide.data(), attn.data(), b, false);
    for (int64_t i = 0; i < b * h; ++i) y[i] += attn[i];                         // and after the MLP
  }
};

// The whole stack (see the top of this file for the inputs): the layers in turn on one residual stream, the final
// LayerNorm, then the top query layer into the output.
template <typename W>
int decode_stack(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  constexpr int kBlock = sizeof(W) == 1 ? 24 : 18;    // a layer's inputs: the layer table's Parameters, two caches
  const int blocks = (nparam - 7) / kBlock;
  if (nparam < 7 + 2 * kBlock || (nparam - 7) % kBlock != 0) return 1;
  Inputs in{params, ndims, shapes, dtypes};
  const float *x = static_cast<const float *>(in.next(2));
  const int64_t b = shapes[0][0], h = shapes[0][1];
  const float *top_queries = static_cast<const float *>(in.next(2));
  if (shapes[1][0] != b || shapes[1][1] != h) return 1;
  std::vector<Layer<W>> layers(blocks);
  for (auto &layer : layers)
    if (!layer.read(in, h, b) || layer.length != layers[0].length) return 1;
  Vector final_w, final_b;
  read_vector(in, h, final_w);
  read_vector(in, h, final_b);
  const int pi = in.index;
  const int32_t *positions = static_cast<const int32_t *>(in.next(1));
  const float *constants = static_cast<const float *>(in.next(1));
  if (!in.ok || shapes[pi][0] != b || shapes[pi + 1][0] != 2) return 1;
  const int64_t cache_rows = layers[0].cache_rows, s = b / cache_rows;   // rows per cache row: 1 in a decode step
  for (const auto &layer : layers)
    if (layer.cache_rows != cache_rows) return 1;
  for (int64_t r = 0; r < b; ++r)
    if (positions[r] < 0 || positions[r] >= layers[0].length) return 2;
  for (int64_t c = 0; c < cache_rows; ++c)              // a chunk's rows hold consecutive positions
    for (int64_t i = 1; i < s; ++i)
      if (positions[c * s + i] != positions[c * s] + i) return 3;
  const float eps = constants[0], scale = constants[1];
  float *y = static_cast<float *>(params[nparam - 1]);

  thread_local std::vector<float> stream, normed;
  stream.assign(x, x + b * h);
  normed.resize(b * h);
  for (int i = 0; i + 1 < blocks; ++i)
    layers[i].run(false, stream.data(), nullptr, stream.data(), positions, b, h, eps, scale);
  layer_norm(stream.data(), final_w.data, final_b.data, eps, normed.data(), b, h);
  layers.back().run(true, normed.data(), top_queries, y, positions, b, h, eps, scale);
  return 0;
}

}  // namespace

#define AOT_ARGS int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream, void *extra
extern "C" {
int decode_stack_int8(AOT_ARGS) { return decode_stack<int8_t>(nparam, params, ndims, shapes, dtypes); }
int decode_stack_f32(AOT_ARGS) { return decode_stack<float>(nparam, params, ndims, shapes, dtypes); }
}
