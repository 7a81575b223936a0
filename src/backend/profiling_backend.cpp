// Per-op timers (see profiling_backend.h).
#include "backend/profiling_backend.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/timer.h"

namespace tpinfer {

namespace {

struct OpStat {
  int64_t calls = 0;
  double ms = 0;
};

class ProfilingBackend final : public Backend {
 public:
  ProfilingBackend(std::unique_ptr<Backend> inner, std::string label)
      : in_(std::move(inner)), label_(std::move(label)) {}
  ~ProfilingBackend() override { report(); }

  BackendKind kind() const override { return in_->kind(); }
  std::string describe() const override { return in_->describe() + ", per-op timers"; }
  DType weight_dtype() const override { return in_->weight_dtype(); }
  DType act_dtype() const override { return in_->act_dtype(); }
  DeviceMemory memory() const override { return in_->memory(); }
  void* alloc(size_t bytes) override { return in_->alloc(bytes); }
  void free(void* p) override { in_->free(p); }
  void copy_to_device(void* d, const void* s, size_t n) override { in_->copy_to_device(d, s, n); }
  void copy_to_host(void* d, const void* s, size_t n) override { in_->copy_to_host(d, s, n); }
  void copy_device(void* d, const void* s, size_t n) override { in_->copy_device(d, s, n); }
  bool host_accessible() const override { return in_->host_accessible(); }
  bool has_lazy_setup() const override { return in_->has_lazy_setup(); }
  void upload_weight(Tensor dst, const void* src, DType t) override {
    in_->upload_weight(dst, src, t);
  }
  bool supports_int8_weights() const override { return in_->supports_int8_weights(); }
  void upload_int8_weight(Tensor dst, const int8_t* q, const float* s) override {
    in_->upload_int8_weight(dst, q, s);
  }
  void synchronize() override { in_->synchronize(); }
  size_t allocated_bytes() const override { return in_->allocated_bytes(); }
  size_t workspace_bytes(const KvLayer& c, int n_heads) const override {
    return in_->workspace_bytes(c, n_heads);
  }
  bool capture_begin() override { return false; }  // eager: every op is timed

  void embed(Tensor o, Tensor t, const int32_t* ids, int off) override {
    if (o.rows == 1) ++decode_steps_;
    timed("embed", o, [&] { in_->embed(o, t, ids, off); });
  }
  void rmsnorm(Tensor o, Tensor i, Tensor w, float eps) override {
    timed("rmsnorm", o, [&] { in_->rmsnorm(o, i, w, eps); });
  }
  void add_rmsnorm(Tensor o, Tensor r, Tensor d, Tensor w, float eps) override {
    timed("add_rmsnorm", o, [&] { in_->add_rmsnorm(o, r, d, w, eps); });
  }
  void matmul(Tensor o, Tensor i, Tensor w) override {
    const std::string name = "matmul " + std::to_string(w.rows) + "x" + std::to_string(w.cols) +
                             " " + dtype_name(w.dtype);
    timed(name, o, [&] { in_->matmul(o, i, w); });
  }
  void qk_norm_rope(Tensor q, Tensor k, Tensor qn, Tensor kn, const BatchView& b, int hd,
                    const RopeTable& rope, float eps) override {
    timed("qk_norm_rope", q, [&] { in_->qk_norm_rope(q, k, qn, kn, b, hd, rope, eps); });
  }
  void add_bias(Tensor o, Tensor bias) override {
    timed("add_bias", o, [&] { in_->add_bias(o, bias); });
  }
  void kv_append(const KvLayer& c, Tensor k, Tensor v, const BatchView& b) override {
    timed("kv_append", k, [&] { in_->kv_append(c, k, v, b); });
  }
  void attention(Tensor o, Tensor q, const KvLayer& c, const BatchView& b, int n_heads, int win,
                 float scale) override {
    timed("attention", o, [&] { in_->attention(o, q, c, b, n_heads, win, scale); });
  }
  void silu_mul(Tensor o, Tensor g, Tensor u) override {
    timed("silu_mul", o, [&] { in_->silu_mul(o, g, u); });
  }
  void silu_mul_fused(Tensor o, Tensor gu) override {
    timed("silu_mul_fused", o, [&] { in_->silu_mul_fused(o, gu); });
  }
  void copy_cols(Tensor o, Tensor i, int64_t first) override {
    timed("copy_cols", o, [&] { in_->copy_cols(o, i, first); });
  }
  void gather_rows(Tensor o, Tensor i, const int32_t* rows) override {
    timed("gather_rows", o, [&] { in_->gather_rows(o, i, rows); });
  }
  void convert(Tensor o, Tensor i) override {
    timed("convert", o, [&] { in_->convert(o, i); });
  }
  void moe_route(Tensor ids, Tensor w, Tensor logits, bool normalize) override {
    timed("moe_route", ids, [&] { in_->moe_route(ids, w, logits, normalize); });
  }
  void moe_experts(Tensor o, Tensor i, const MoeExperts& e, Tensor ids, Tensor w,
                   const MoeScratch& s) override {
    timed("moe_experts", o, [&] { in_->moe_experts(o, i, e, ids, w, s); });
  }

 private:
  template <class F>
  void timed(const std::string& op, const Tensor& rows_of, F&& run) {
    const Clock::time_point t0 = Clock::now();
    run();
    in_->synchronize();
    OpStat& s = stats_[{rows_of.rows == 1 ? 0 : 1, op}];
    ++s.calls;
    s.ms += ms_since(t0);
  }

  // One table per bucket (one token; more), ops by time, with ms per decode step for the first.
  void report() const {
    for (int bucket : {0, 1}) {
      std::vector<std::pair<std::string, OpStat>> rows;
      double total = 0;
      for (const auto& [key, s] : stats_) {
        if (key.first != bucket) continue;
        rows.emplace_back(key.second, s);
        total += s.ms;
      }
      if (rows.empty()) continue;
      std::sort(rows.begin(), rows.end(),
                [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
      std::fprintf(stderr, "tpinfer: per-op timers (%s), %s: %.1f ms in ops%s\n", label_.c_str(),
                   bucket == 0 ? "ops on one token (decode of one sequence)"
                               : "ops on several tokens (prefill, batched decode)",
                   total,
                   bucket == 0 ? (", " + std::to_string(decode_steps_) + " steps").c_str() : "");
      std::fprintf(stderr, "| op | calls | total ms | %s%% |\n|---|---|---|%s---|\n",
                   bucket == 0 ? "ms per step | " : "", bucket == 0 ? "---|" : "");
      for (const auto& [op, s] : rows) {
        if (bucket == 0) {
          std::fprintf(stderr, "| %s | %lld | %.1f | %.3f | %.1f |\n", op.c_str(),
                       static_cast<long long>(s.calls), s.ms,
                       decode_steps_ > 0 ? s.ms / static_cast<double>(decode_steps_) : 0.0,
                       100.0 * s.ms / total);
        } else {
          std::fprintf(stderr, "| %s | %lld | %.1f | %.1f |\n", op.c_str(),
                       static_cast<long long>(s.calls), s.ms, 100.0 * s.ms / total);
        }
      }
    }
  }

  std::unique_ptr<Backend> in_;
  std::string label_;
  std::map<std::pair<int, std::string>, OpStat> stats_;
  int64_t decode_steps_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_profiling_backend(std::unique_ptr<Backend> inner,
                                                const std::string& label) {
  return std::make_unique<ProfilingBackend>(std::move(inner), label);
}

bool op_profiling_requested() {
  const char* v = std::getenv("TPINFER_PROFILE_OPS");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

}  // namespace tpinfer
