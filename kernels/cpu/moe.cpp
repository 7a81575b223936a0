// Mixture-of-experts glue on the CPU (moe.h): routing, grouping, the weighted sum.
#include "cpu/moe.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace tpinfer::cpu {

void moe_route(int32_t* ids, float* weights, const float* logits, int T, int E, int k,
               bool normalize) {
  using Entry = std::pair<float, int64_t>;  // torch.topk's (value, index) queue
  const auto greater = [](const Entry& a, const Entry& b) { return a.first > b.first; };
#pragma omp parallel for if (T > 64)
  for (int t = 0; t < T; ++t) {
    const float* x = logits + static_cast<int64_t>(t) * E;
    float mx = x[0];
    for (int e = 1; e < E; ++e) mx = std::max(mx, x[e]);
    std::vector<Entry> q(static_cast<size_t>(E));
    float sum = 0.0f;
    for (int e = 0; e < E; ++e) {
      q[e] = {std::exp(x[e] - mx), e};
      sum += q[e].first;
    }
    const float inv = 1.0f / sum;
    for (Entry& v : q) v.first *= inv;
    // torch's CPU topk (aten topk_impl_loop): partial_sort for small k, else nth_element at k-1
    // and a sort of the k - 1 entries before it. Ties come out as these algorithms leave them.
    if (static_cast<int64_t>(k) * 64 <= E) {
      std::partial_sort(q.begin(), q.begin() + k, q.end(), greater);
    } else {
      std::nth_element(q.begin(), q.begin() + (k - 1), q.end(), greater);
      std::sort(q.begin(), q.begin() + (k - 1), greater);
    }
    float top_sum = 0.0f;
    for (int j = 0; j < k; ++j) top_sum += q[j].first;
    for (int j = 0; j < k; ++j) {
      ids[t * k + j] = static_cast<int32_t>(q[j].second);
      weights[t * k + j] = normalize ? q[j].first / top_sum : q[j].first;
    }
  }
}

bool moe_group(int32_t* order, int32_t* offsets, const int32_t* ids, int T, int k, int E) {
  const int R = T * k;
  std::fill(offsets, offsets + E + 1, 0);
  for (int r = 0; r < R; ++r) {
    if (ids[r] < 0 || ids[r] >= E) return false;
    ++offsets[ids[r] + 1];
  }
  for (int e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  // offsets[e] doubles as expert e's fill cursor, then is shifted back.
  for (int r = 0; r < R; ++r) order[offsets[ids[r]]++] = r;
  for (int e = E; e > 0; --e) offsets[e] = offsets[e - 1];
  offsets[0] = 0;
  return true;
}

void moe_combine(float* out, const float* y, const float* weights, const int32_t* ids,
                 const int32_t* order, int T, int k, int H, int R) {
  // row_of[t * k + j]: the grouped row holding (t, j).
  std::vector<int32_t> row_of(static_cast<size_t>(R));
  for (int r = 0; r < R; ++r) row_of[order[r]] = r;
#pragma omp parallel for if (static_cast <int64_t>(T) * H > 65536)
  for (int t = 0; t < T; ++t) {
    int js[64];
    const int kk = std::min(k, 64);
    for (int j = 0; j < kk; ++j) js[j] = j;
    // A token picks distinct experts: sorting its k slots by expert id is the expert loop's order.
    std::sort(js, js + kk, [&](int a, int b) { return ids[t * k + a] < ids[t * k + b]; });
    float* o = out + static_cast<int64_t>(t) * H;
    std::fill(o, o + H, 0.0f);
    for (int jj = 0; jj < kk; ++jj) {
      const int j = js[jj];
      const float w = weights[t * k + j];
      const float* yr = y + static_cast<int64_t>(row_of[t * k + j]) * H;
      for (int h = 0; h < H; ++h) o[h] += yr[h] * w;
    }
  }
}

}  // namespace tpinfer::cpu
