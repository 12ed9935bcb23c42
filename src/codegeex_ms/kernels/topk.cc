// The sampler's top-k for ops.Custom(func_type="aot"): the k highest logits of each row, sorted.
//
//   topk_rows(logits [b, V'] float32, vocab [1] int32) -> values [b, k] float32, indices [b, k] int32
//
// Only the first `vocab` columns count (the padded rows of the embedding are never tokens); k is the outputs'
// width. Order: value descending, equal values by index ascending (as MindSpore's TopK with sorted=True). One pass
// per row with a heap of the k best (MindSpore's CPU TopK took 1.9 ms per decode step for k = 1024 of 50,400).
// Rows are split over the kernels' thread pool (threads.cc).
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "threads.h"

extern "C" int topk_rows(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream,
                         void *extra) {
  if (nparam != 4 || ndims[0] != 2 || ndims[1] != 1 || ndims[2] != 2 || ndims[3] != 2) return 1;
  const int64_t b = shapes[0][0], width = shapes[0][1], k = shapes[2][1];
  const int64_t vocab = std::min<int64_t>(width, *static_cast<const int32_t *>(params[1]));
  if (shapes[2][0] != b || shapes[3][0] != b || shapes[3][1] != k || k < 1 || k > vocab) return 1;
  const float *logits = static_cast<const float *>(params[0]);
  float *values = static_cast<float *>(params[2]);
  int32_t *indices = static_cast<int32_t *>(params[3]);
  codegeex::parallel_for(b, [&](int64_t begin, int64_t end) {
    thread_local std::vector<std::pair<float, int32_t>> pairs;
    auto better = [](const std::pair<float, int32_t> &a, const std::pair<float, int32_t> &c) {
      return a.first > c.first || (a.first == c.first && a.second < c.second);
    };
    for (int64_t r = begin; r < end; ++r) {
      const float *row = logits + r * width;
      // a heap of the k best so far, the worst on top; a later column replaces it only with a strictly higher
      // value (an equal value has a higher index, so it ranks below), which most columns fail at once
      pairs.resize(k);
      for (int64_t i = 0; i < k; ++i) pairs[i] = {row[i], static_cast<int32_t>(i)};
      std::make_heap(pairs.begin(), pairs.end(), better);
      for (int64_t i = k; i < vocab; ++i) {
        if (!(row[i] > pairs.front().first)) continue;
        std::pop_heap(pairs.begin(), pairs.end(), better);
        pairs.back() = {row[i], static_cast<int32_t>(i)};
        std::push_heap(pairs.begin(), pairs.end(), better);
      }
      std::sort_heap(pairs.begin(), pairs.end(), better);
      for (int64_t i = 0; i < k; ++i) {
        values[r * k + i] = pairs[i].first;
        indices[r * k + i] = pairs[i].second;
      }
    }
  });
  return 0;
}
