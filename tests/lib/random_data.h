// Random test data shared by the kernel and op tests: reproducible normal draws from a seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

// n values from N(0, scale^2), the same for the same seed on every machine (mt19937_64).
inline std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}
