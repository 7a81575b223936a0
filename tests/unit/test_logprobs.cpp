// token_logprobs against a plain reference: log_softmax in double over the whole row, the chosen
// id's value, and the top n by a full sort (ties to the lower id).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "runtime/engine/logprobs.h"

using namespace tpinfer;

namespace {

std::vector<double> reference_log_softmax(const std::vector<float>& l) {
  double mx = *std::max_element(l.begin(), l.end());
  double sum = 0.0;
  for (float v : l) sum += std::exp(v - mx);
  std::vector<double> out(l.size());
  for (size_t i = 0; i < l.size(); ++i) out[i] = l[i] - mx - std::log(sum);
  return out;
}

}  // namespace

TEST_CASE("token_logprobs equals a plain log_softmax and top-n", "[logprobs]") {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  for (int n_vocab : {1, 2, 7, 1000, 151936}) {
    std::vector<float> l(static_cast<size_t>(n_vocab));
    for (float& v : l) v = dist(rng);
    if (n_vocab > 10) l[5] = l[9] = 30.0f;  // a tie at the top: the lower id first
    const std::vector<double> ref = reference_log_softmax(l);
    std::vector<int32_t> order(static_cast<size_t>(n_vocab));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    for (int top_n : {0, 1, 5, 20}) {
      const int32_t chosen = n_vocab / 2;
      const TokenLogprob lp = token_logprobs(l.data(), n_vocab, chosen, top_n);
      CHECK(lp.id == chosen);
      CHECK(lp.logprob == Approx(ref[chosen]).margin(1e-5));
      REQUIRE(static_cast<int>(lp.top.size()) == std::min(top_n, n_vocab));
      for (size_t k = 0; k < lp.top.size(); ++k) {
        CHECK(lp.top[k].first == order[k]);
        CHECK(lp.top[k].second == Approx(ref[order[k]]).margin(1e-5));
      }
    }
  }
}

TEST_CASE("token_logprobs refuses ids and counts out of range", "[logprobs]") {
  const std::vector<float> l = {0.0f, 1.0f, 2.0f};
  CHECK_THROWS_WITH(token_logprobs(l.data(), 3, 3, 0),
                    Catch::Contains("token 3 outside the vocabulary of 3"));
  CHECK_THROWS_WITH(token_logprobs(l.data(), 3, 0, 21),
                    Catch::Contains("top_logprobs 21 outside [0, 20]"));
}
