// The sampler for ops.Custom(func_type="aot"): one token id per row from its logits, as generation_graphs.Sampler's
// MindSpore path computes it, in one call (that path is a top-k and about fifteen MindSpore operators, each with the
// runtime's cost per operator; a 350M decode step spent more time on them than on the top-k).
//
//   sample_rows(logits [b, V'] float32, vocab [1] int32, noise [b, K] float32, temperature [b] float32,
//               top_k [b] int32, top_p [b] float32) -> ids [b] int32
//
// For each row:
//   1. the K highest of the first `vocab` logits (the padded rows of the embedding are never tokens), value
//      descending, equal values by index ascending (MindSpore's TopK with sorted=True);
//   2. v = value / temperature; v = -inf at ranks >= top_k;
//   3. p = softmax(v); before = cumsum(p) - p (the probability of the better candidates); v = -inf where
//      before > top_p (inclusive top-p: the smallest set whose probability reaches p);
//   4. the id of the candidate at argmax(v - log(-log(noise))) (a Gumbel-max draw; the first on ties).
// temperature, top_k and top_p may also be one value for every row ([1] or a scalar). Returns non-zero (MindSpore
// raises) on shapes it cannot take. Rows are split over the kernels' thread pool (threads.cc).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "threads.h"

namespace {

using Candidate = std::pair<float, int32_t>;

bool better(const Candidate &a, const Candidate &c) {
  return a.first > c.first || (a.first == c.first && a.second < c.second);
}

// the k best of row[0 .. vocab), best first. One pass with a heap of the k best so far, the worst on top: a later
// column replaces it only with a strictly higher value (an equal one has a higher index, so it ranks below), which
// most columns fail at once (MindSpore's CPU TopK took 1.9 ms per decode step for k = 1024 of 50,400)
void top_k(const float *row, int64_t vocab, int64_t k, std::vector<Candidate> &out) {
  out.resize(k);
  for (int64_t i = 0; i < k; ++i) out[i] = {row[i], static_cast<int32_t>(i)};
  std::make_heap(out.begin(), out.end(), better);
  for (int64_t i = k; i < vocab; ++i) {
    if (!(row[i] > out.front().first)) continue;
    std::pop_heap(out.begin(), out.end(), better);
    out.back() = {row[i], static_cast<int32_t>(i)};
    std::push_heap(out.begin(), out.end(), better);
  }
  std::sort_heap(out.begin(), out.end(), better);
}

// a setting that is one value per row or one for all
template <typename T>
struct PerRow {
  const T *data;
  bool shared;
  T operator[](int64_t r) const { return data[shared ? 0 : r]; }
};

template <typename T>
bool per_row(void *p, int ndim, const int64_t *shape, int64_t b, PerRow<T> &out) {
  out.data = static_cast<const T *>(p);
  if (ndim == 0) return out.shared = true;
  if (ndim != 1 || (shape[0] != b && shape[0] != 1)) return false;
  out.shared = shape[0] == 1 && b != 1;
  return true;
}

}  // namespace

extern "C" int sample_rows(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream,
                           void *extra) {
  if (nparam != 7 || ndims[0] != 2 || ndims[1] != 1 || ndims[2] != 2 || ndims[6] != 1) return 1;
  const int64_t b = shapes[0][0], width = shapes[0][1], k = shapes[2][1];
  const int64_t vocab = std::min<int64_t>(width, *static_cast<const int32_t *>(params[1]));
  if (shapes[2][0] != b || shapes[6][0] != b || k < 1 || k > vocab) return 1;
  PerRow<float> temperature, top_p;
  PerRow<int32_t> top_k_setting;
  if (!per_row(params[3], ndims[3], shapes[3], b, temperature) ||
      !per_row(params[4], ndims[4], shapes[4], b, top_k_setting) || !per_row(params[5], ndims[5], shapes[5], b, top_p))
    return 1;
  const float *logits = static_cast<const float *>(params[0]);
  const float *noise = static_cast<const float *>(params[2]);
  int32_t *ids = static_cast<int32_t *>(params[6]);
  codegeex::parallel_for(b, [&](int64_t begin, int64_t end) {
    thread_local std::vector<Candidate> candidates;
    thread_local std::vector<float> values, weights;
    for (int64_t r = begin; r < end; ++r) {
      // the ranks from top_k on are -inf: they add exact zeros to the softmax's sums and are never drawn, so only
      // the first top_k candidates are found (a greedy row is one pass over its logits)
      const int64_t kept = std::max<int32_t>(1, std::min<int64_t>(top_k_setting[r], k));
      top_k(logits + r * width, vocab, kept, candidates);
      const float t = temperature[r], p = top_p[r];
      values.resize(kept), weights.resize(kept);
      float top = -INFINITY;
      for (int64_t i = 0; i < kept; ++i) top = std::max(top, values[i] = candidates[i].first / t);
      float total = 0.0f;
      for (int64_t i = 0; i < kept; ++i) total += weights[i] = std::exp(values[i] - top);
      float cumulative = 0.0f, best = -INFINITY;
      int64_t choice = 0;
      for (int64_t i = 0; i < kept; ++i) {
        const float probability = weights[i] / total;
        cumulative += probability;
        if (cumulative - probability > p) continue;          // past top_p: -inf
        const float score = values[i] - std::log(-std::log(noise[r * k + i]));
        if (score > best) best = score, choice = i;
      }
      ids[r] = candidates[choice].second;
    }
  });
  return 0;
}
