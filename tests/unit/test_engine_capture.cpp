// The engine without a GPU: graph capture under failure, and the warm-up step. Capture: a backend
// that "captures" (it runs the ops as it records them, like the CPU backend, and keeps the CUDA
// backend's rule that only one capture may be open) fails one op in the middle of a capture. The
// op's own error must be the one reported, the capture must be closed, and the next step must run
// and give the same logits as an engine that never failed. Before capture_abort existed, the next
// step failed with "a capture is already open".
#include <catch2/catch.hpp>
#include <memory>
#include <vector>

#include "../lib/tiny_model_config.h"
#include "backend/backend.h"
#include "comm/communicator.h"
#include "core/error.h"
#include "model/model_config.h"
#include "model/transformer.h"
#include "runtime/engine/engine.h"

using namespace tpinfer;

namespace {

// Forwards to the CPU backend; capture_begin/end/abort keep the state a graph backend keeps.
// Ops run as they are recorded and nothing is kept to replay (graph_ready() stays false), so the
// engine captures every decode step again and every step computes.
class CapturingBackend final : public Backend {
 public:
  CapturingBackend() : inner_(make_backend(BackendKind::cpu, BackendOptions{0, 1})) {}

  bool fail_in_next_capture = false;
  int captures = 0, aborts = 0;

  BackendKind kind() const override { return inner_->kind(); }
  std::string describe() const override { return "capturing test backend"; }
  DType weight_dtype() const override { return inner_->weight_dtype(); }
  DType act_dtype() const override { return inner_->act_dtype(); }
  DeviceMemory memory() const override { return inner_->memory(); }
  void* alloc(size_t bytes) override { return inner_->alloc(bytes); }
  void free(void* p) override { inner_->free(p); }
  void copy_to_device(void* d, const void* s, size_t n) override {
    inner_->copy_to_device(d, s, n);
  }
  void copy_to_host(void* d, const void* s, size_t n) override { inner_->copy_to_host(d, s, n); }
  void copy_device(void* d, const void* s, size_t n) override { inner_->copy_device(d, s, n); }
  bool host_accessible() const override { return inner_->host_accessible(); }
  void upload_weight(Tensor dst, const void* src, DType t) override {
    inner_->upload_weight(dst, src, t);
  }
  void synchronize() override { inner_->synchronize(); }
  size_t allocated_bytes() const override { return inner_->allocated_bytes(); }

  bool capture_begin() override {
    TPI_CHECK(!capturing_, "capture_begin: a capture is already open");
    capturing_ = true;
    ++captures;
    return true;
  }
  void capture_end() override {
    TPI_CHECK(capturing_, "capture_end without capture_begin");
    capturing_ = false;
    closed_ = true;
  }
  void capture_abort() override {
    if (capturing_) ++aborts;
    capturing_ = false;
  }
  void replay() override { TPI_CHECK(closed_ && !capturing_, "replay: no capture was closed"); }
  bool graph_ready() const override { return false; }

  void embed(Tensor o, Tensor t, const int32_t* ids, int off) override {
    inner_->embed(o, t, ids, off);
  }
  void rmsnorm(Tensor o, Tensor i, Tensor w, float eps) override { inner_->rmsnorm(o, i, w, eps); }
  void add_rmsnorm(Tensor o, Tensor r, Tensor d, Tensor w, float eps) override {
    inner_->add_rmsnorm(o, r, d, w, eps);
  }
  void matmul(Tensor o, Tensor i, Tensor w) override { inner_->matmul(o, i, w); }
  void qk_norm_rope(Tensor q, Tensor k, Tensor qn, Tensor kn, const BatchView& b, int hd,
                    const RopeTable& rope, float eps) override {
    inner_->qk_norm_rope(q, k, qn, kn, b, hd, rope, eps);
  }
  void add_bias(Tensor o, Tensor bias) override { inner_->add_bias(o, bias); }
  void kv_append(const KvLayer& c, Tensor k, Tensor v, const BatchView& b) override {
    inner_->kv_append(c, k, v, b);
  }
  void attention(Tensor o, Tensor q, const KvLayer& c, const BatchView& b, int n_heads, int win,
                 float scale) override {
    if (capturing_ && fail_in_next_capture) {
      fail_in_next_capture = false;
      TPI_FAIL("injected failure inside the captured step");
    }
    inner_->attention(o, q, c, b, n_heads, win, scale);
  }
  void silu_mul(Tensor o, Tensor g, Tensor u) override { inner_->silu_mul(o, g, u); }
  void silu_mul_fused(Tensor o, Tensor gu) override { inner_->silu_mul_fused(o, gu); }
  void copy_cols(Tensor o, Tensor i, int64_t first) override { inner_->copy_cols(o, i, first); }
  void gather_rows(Tensor o, Tensor i, const int32_t* rows) override {
    inner_->gather_rows(o, i, rows);
  }
  void convert(Tensor o, Tensor i) override { inner_->convert(o, i); }

 private:
  std::unique_ptr<Backend> inner_;
  bool capturing_ = false, closed_ = false;
};

ModelConfig tiny_config() {
  return tiny_model_config(64);
}

// Decode steps of one slot: prompt token 3 at position 0, then tokens 5, 6, ... at 1, 2, ...
std::vector<float> decode(Engine& e, int pos) {
  const int32_t id = pos == 0 ? 3 : 4 + pos, slot = 0, row = 0;
  const float* l = e.step(&id, &pos, &slot, 1, &row, 1, true);
  return std::vector<float>(l, l + e.config().vocab_size);
}

}  // namespace

TEST_CASE("engine: an op failing inside a capture is the error reported; the next step runs",
          "[engine][graph]") {
  const ModelConfig cfg = tiny_config();
  const ShardDims dims = ShardDims::make(cfg, 1, 0, 0);
  const EngineShape shape{16, 1, 8, 1};

  std::unique_ptr<Backend> ref_be = make_backend(BackendKind::cpu, BackendOptions{0, 1});
  std::unique_ptr<Communicator> ref_comm = make_single_rank_communicator(*ref_be);
  Engine ref(cfg, dims, shape, *ref_be, *ref_comm);
  ref.load_dummy(7);

  CapturingBackend be;
  std::unique_ptr<Communicator> comm = make_single_rank_communicator(be);
  Engine e(cfg, dims, shape, be, *comm);
  e.load_dummy(7);

  CHECK(decode(e, 0) == decode(ref, 0));  // eager: the first step of a batch size
  be.fail_in_next_capture = true;
  CHECK_THROWS_WITH(decode(e, 1), Catch::Contains("injected failure inside the captured step"));
  CHECK(be.aborts == 1);
  // The failed step is redone (same position), then more: captures again, and the logits are
  // those of an engine that never failed.
  for (int pos = 1; pos < 5; ++pos) {
    INFO("position " << pos);
    CHECK(decode(e, pos) == decode(ref, pos));
  }
  CHECK(be.captures == 5);  // the failed one and one per later step
}

TEST_CASE("engine: warm_up changes no later result", "[engine]") {
  const ModelConfig cfg = tiny_config();
  const ShardDims dims = ShardDims::make(cfg, 1, 0, 0);
  const EngineShape shape{16, 1, 8, 1};
  std::unique_ptr<Backend> be_a = make_backend(BackendKind::cpu, BackendOptions{0, 1});
  std::unique_ptr<Backend> be_b = make_backend(BackendKind::cpu, BackendOptions{0, 1});
  std::unique_ptr<Communicator> comm_a = make_single_rank_communicator(*be_a);
  std::unique_ptr<Communicator> comm_b = make_single_rank_communicator(*be_b);
  Engine a(cfg, dims, shape, *be_a, *comm_a), b(cfg, dims, shape, *be_b, *comm_b);
  a.load_dummy(3);
  b.load_dummy(3);
  a.warm_up();
  for (int pos = 0; pos < 12; ++pos) {
    INFO("position " << pos);
    CHECK(decode(a, pos) == decode(b, pos));
  }
}
