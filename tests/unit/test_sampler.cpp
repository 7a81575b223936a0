// The sampler: greedy is argmax (lowest id on ties), sampling is reproducible for a seed, top-k and
// top-p restrict the candidates, and the empirical distribution follows the softmax.
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <vector>

#include "core/error.h"
#include "runtime/engine/sampler.h"

using namespace tpinfer;

TEST_CASE("greedy picks the argmax, lowest id on ties", "[sampler]") {
  std::vector<float> logits = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f};
  Sampler s(5, SamplingParams{});
  REQUIRE(s.sample(logits.data()) == 1);
}

TEST_CASE("sampling is reproducible for a seed and differs across seeds", "[sampler]") {
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = std::sin(i * 0.7f) * 2.0f;
  auto draw = [&](uint64_t seed) {
    Sampler s(50, SamplingParams{1.0f, 0, 1.0f, seed});
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.sample(logits.data()));
    return out;
  };
  REQUIRE(draw(42) == draw(42));
  REQUIRE(draw(42) != draw(43));
}

TEST_CASE("top-k and top-p restrict the candidates", "[sampler]") {
  std::vector<float> logits = {5.0f, 4.0f, 1.0f, 0.5f, 0.0f, -1.0f};
  Sampler k2(6, SamplingParams{1.0f, 2, 1.0f, 7});
  for (int i = 0; i < 500; ++i) {
    const int t = k2.sample(logits.data());
    REQUIRE((t == 0 || t == 1));
  }
  // p(0) = 0.71, p(0)+p(1) = 0.97 > 0.9: top_p 0.9 keeps ids 0 and 1 only.
  Sampler p9(6, SamplingParams{1.0f, 0, 0.9f, 7});
  for (int i = 0; i < 500; ++i) {
    const int t = p9.sample(logits.data());
    REQUIRE((t == 0 || t == 1));
  }
  Sampler p5(6, SamplingParams{1.0f, 0, 0.5f, 7});
  for (int i = 0; i < 100; ++i) REQUIRE(p5.sample(logits.data()) == 0);
}

TEST_CASE("the empirical distribution follows softmax(logits / T)", "[sampler]") {
  std::vector<float> logits = {1.0f, 0.0f, -0.5f};
  const float T = 0.7f;
  Sampler s(3, SamplingParams{T, 0, 1.0f, 123});
  std::map<int, int> count;
  const int n = 40000;
  for (int i = 0; i < n; ++i) ++count[s.sample(logits.data())];
  double z = 0;
  for (float l : logits) z += std::exp(l / T);
  for (int i = 0; i < 3; ++i) {
    const double p = std::exp(logits[i] / T) / z;
    REQUIRE(std::abs(count[i] / double(n) - p) < 0.01);
  }
}

TEST_CASE("bad sampling parameters are refused with the value", "[sampler]") {
  REQUIRE_THROWS_WITH(Sampler(4, SamplingParams{-1.0f, 0, 1.0f, 0}),
                      Catch::Contains("temperature must be >= 0"));
  REQUIRE_THROWS_WITH(Sampler(4, SamplingParams{1.0f, 0, 0.0f, 0}),
                      Catch::Contains("top_p must be in (0, 1]"));
}

TEST_CASE("non-finite logits are refused, greedy or sampled, naming the first bad id",
          "[sampler]") {
  std::vector<float> logits(512);
  for (int i = 0; i < 512; ++i) logits[i] = std::sin(0.37f * static_cast<float>(i));
  logits[17] = std::nanf("");
  // Before: greedy returned an id, and temperature sampling returned the last id (511) every
  // time, because NaN made the softmax sum NaN and no draw ever fell below it.
  for (float t : {0.0f, 0.8f}) {
    for (float top_p : {1.0f, 0.9f}) {
      Sampler s(512, SamplingParams{t, 0, top_p, 3});
      REQUIRE_THROWS_WITH(s.sample(logits.data()),
                          Catch::Contains("non-finite logits: NaN at token id 17 (1 of 512"));
    }
  }
  logits[17] = 0.0f;
  logits[200] = INFINITY;
  Sampler inf(512, SamplingParams{0.7f, 40, 1.0f, 3});
  REQUIRE_THROWS_WITH(inf.sample(logits.data()), Catch::Contains("+Inf at token id 200"));
  std::vector<float> all_masked(8, -INFINITY);
  Sampler masked(8, SamplingParams{});
  REQUIRE_THROWS_WITH(masked.sample(all_masked.data()), Catch::Contains("all 8 ids are -Inf"));
}

TEST_CASE("masked (-Inf) ids are never drawn; a tiny temperature is greedy", "[sampler]") {
  std::vector<float> logits = {-INFINITY, 1.0f, -INFINITY, 1.0f, -INFINITY};
  Sampler s(5, SamplingParams{1.0f, 0, 0.95f, 11});
  for (int i = 0; i < 200; ++i) {
    const int32_t id = s.sample(logits.data());
    REQUIRE((id == 1 || id == 3));
  }
  // 1/T overflows to Inf: (max - max) * Inf would be NaN without the exact weight of the best id.
  std::vector<float> peaked = {0.5f, 2.0f, 1.0f};
  Sampler tiny(3, SamplingParams{1e-45f, 0, 1.0f, 5});
  for (int i = 0; i < 20; ++i) REQUIRE(tiny.sample(peaked.data()) == 1);
}

TEST_CASE("ids past the sampler's vocabulary (padding) are never picked", "[sampler]") {
  // A row of 8 logits whose last 3 ids have no token and the largest logits.
  std::vector<float> logits = {0.5f, 1.0f, 0.2f, 0.9f, 0.1f, 9.0f, 8.0f, 7.0f};
  REQUIRE(Sampler(5, SamplingParams{}).sample(logits.data()) == 1);
  for (const SamplingParams& p :
       {SamplingParams{100.0f, 0, 1.0f, 3}, SamplingParams{100.0f, 7, 1.0f, 3},
        SamplingParams{100.0f, 0, 0.99f, 3}}) {
    Sampler s(5, p);
    for (int i = 0; i < 2000; ++i) REQUIRE(s.sample(logits.data()) < 5);
  }
}
