// Helpers of the CUDA comparison tests: the two backends (CPU reference, CUDA under test),
// tensors filled from host floats in each backend's own dtype, read-back to floats, and the
// tolerance check |got - ref| <= atol + rtol * |ref| that reports the worst element.
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "core/dtype.h"

namespace tpinfer::test {

// One CPU and one CUDA backend for the whole binary (creating a CUDA context per test is slow).
Backend& cpu_backend();
CudaBackend& cuda_backend();

// Owns the tensors a test allocates on one backend.
class Arena {
 public:
  explicit Arena(Backend& be) : be_(be) {}
  ~Arena() {
    for (void* p : ptrs_) be_.free(p);
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  Backend& backend() { return be_; }

  Tensor empty(DType dtype, int64_t rows, int64_t cols) {
    Tensor t{nullptr, dtype, rows, cols};
    t.data = be_.alloc(t.bytes());
    ptrs_.push_back(t.data);
    return t;
  }
  // Activations in the backend's activation dtype.
  Tensor act(int64_t rows, int64_t cols, const std::vector<float>& v) {
    return from_floats(be_.act_dtype(), rows, cols, v);
  }
  // Weights through upload_weight (from f32 host data), as the loader does.
  Tensor weight(int64_t rows, int64_t cols, const std::vector<float>& v) {
    Tensor t = empty(be_.weight_dtype(), rows, cols);
    REQUIRE(static_cast<int64_t>(v.size()) == t.numel());
    be_.upload_weight(t, v.data(), DType::f32);
    return t;
  }
  Tensor from_floats(DType dtype, int64_t rows, int64_t cols, const std::vector<float>& v) {
    Tensor t = empty(dtype, rows, cols);
    REQUIRE(static_cast<int64_t>(v.size()) == t.numel());
    std::vector<unsigned char> raw(t.bytes());
    for (size_t i = 0; i < v.size(); ++i) {
      switch (dtype) {
        case DType::f32:
          std::memcpy(raw.data() + 4 * i, &v[i], 4);
          break;
        case DType::bf16: {
          const uint16_t h = f32_to_bf16(v[i]);
          std::memcpy(raw.data() + 2 * i, &h, 2);
          break;
        }
        case DType::f16: {
          const uint16_t h = f32_to_f16(v[i]);
          std::memcpy(raw.data() + 2 * i, &h, 2);
          break;
        }
        case DType::i32: {
          const int32_t x = static_cast<int32_t>(v[i]);
          std::memcpy(raw.data() + 4 * i, &x, 4);
          break;
        }
        case DType::i8:
          raw[i] = static_cast<unsigned char>(static_cast<int8_t>(v[i]));
          break;
      }
    }
    be_.copy_to_device(t.data, raw.data(), raw.size());
    return t;
  }
  int32_t* ints(const std::vector<int32_t>& v) {
    void* p = be_.alloc(v.size() * sizeof(int32_t));
    ptrs_.push_back(p);
    be_.copy_to_device(p, v.data(), v.size() * sizeof(int32_t));
    return static_cast<int32_t*>(p);
  }
  void write_ints(int32_t* dst, const std::vector<int32_t>& v) {
    be_.copy_to_device(dst, v.data(), v.size() * sizeof(int32_t));
  }
  std::vector<float> read(const Tensor& t) {
    std::vector<unsigned char> raw(t.bytes());
    be_.copy_to_host(raw.data(), t.data, raw.size());
    std::vector<float> out(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t h = 0;
      int32_t x = 0;
      switch (t.dtype) {
        case DType::f32:
          std::memcpy(&out[i], raw.data() + 4 * i, 4);
          break;
        case DType::bf16:
          std::memcpy(&h, raw.data() + 2 * i, 2);
          out[i] = bf16_to_f32(h);
          break;
        case DType::f16:
          std::memcpy(&h, raw.data() + 2 * i, 2);
          out[i] = f16_to_f32(h);
          break;
        case DType::i32:
          std::memcpy(&x, raw.data() + 4 * i, 4);
          out[i] = static_cast<float>(x);
          break;
        case DType::i8:
          out[i] = static_cast<float>(static_cast<int8_t>(raw[i]));
          break;
      }
    }
    return out;
  }

 private:
  Backend& be_;
  std::vector<void*> ptrs_;
};

// Uniform in [lo, hi), rounded to bf16 so both backends start from identical values.
inline std::vector<float> random_bf16(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(dist(rng)));
  return v;
}

struct Mismatch {
  size_t n_bad = 0;
  size_t worst = 0;
  double worst_excess = -1.0;
  double max_abs = 0.0;
};

inline Mismatch compare(const std::vector<float>& got, const std::vector<float>& ref, double atol,
                        double rtol) {
  Mismatch m;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - ref[i]);
    const double allowed = atol + rtol * std::fabs(static_cast<double>(ref[i]));
    m.max_abs = std::max(m.max_abs, std::isnan(d) ? INFINITY : d);
    const double excess = std::isnan(d) ? INFINITY : d - allowed;
    if (excess > 0) ++m.n_bad;
    if (excess > m.worst_excess) {
      m.worst_excess = excess;
      m.worst = i;
    }
  }
  return m;
}

// REQUIREs that every element is within tolerance; on failure says which and by how much.
#define REQUIRE_CLOSE(what, got, ref, atol, rtol)                                          \
  do {                                                                                     \
    const auto& g_ = (got);                                                                \
    const auto& r_ = (ref);                                                                \
    REQUIRE(g_.size() == r_.size());                                                       \
    const ::tpinfer::test::Mismatch m_ = ::tpinfer::test::compare(g_, r_, (atol), (rtol)); \
    INFO(what << ": " << m_.n_bad << " of " << r_.size() << " outside |a-b| <= " << (atol) \
              << " + " << (rtol) << "*|ref|; max |a-b| " << m_.max_abs << "; worst at "    \
              << m_.worst << ": got " << (r_.empty() ? 0.0f : g_[m_.worst]) << ", ref "    \
              << (r_.empty() ? 0.0f : r_[m_.worst]));                                      \
    REQUIRE(m_.n_bad == 0);                                                                \
  } while (0)

}  // namespace tpinfer::test
