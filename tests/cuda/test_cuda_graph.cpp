// CUDA-graph capture of a decode step: a miniature layer (embed, add_rmsnorm, GEMV projections,
// q/k norm + RoPE, KV append, attention, SwiGLU, f32 logits, argmax) is captured once and
// replayed at new token ids, positions and block tables written in place (the second replay
// moves every KV block elsewhere in the pool); every replay must equal the same step run
// eagerly. Also: what is refused inside a capture, that a refused op leaves the
// capture closable, and that capture_abort after a failed op leaves the stream usable.
#include <cmath>

#include "cuda_test_util.h"

namespace tpinfer::test {
namespace {

struct MiniModel {
  static constexpr int kVocab = 300, kHidden = 256, kHeads = 4, kKvHeads = 2, kHd = 64;
  static constexpr int kInter = 512, kSlots = 2, kMaxSeq = 256, kBlock = 16;
  static constexpr int kStride = kMaxSeq / kBlock, kBlocks = 2 * kSlots * kStride;
  Tensor embed, norm, wq, wk, wv, wo, q_norm, k_norm, w_gate, w_up, w_down, lm_head;
  KvLayer cache;
  // Step state at fixed addresses (what the engine rewrites before each replay).
  int32_t *ids, *positions, *slots, *table;  // table: [kSlots, kStride] block ids
  Tensor x, h, q, k, v, attn, o, gate, up, act, logits, index, inv_freq;

  explicit MiniModel(Arena& a) {
    uint32_t s = 500;
    auto w = [&](int rows, int cols) {
      const float sc = 1.0f / std::sqrt(static_cast<float>(cols));
      return a.weight(rows, cols, random_bf16(static_cast<size_t>(rows) * cols, ++s, -sc, sc));
    };
    embed = w(kVocab, kHidden);
    norm = a.weight(1, kHidden, random_bf16(kHidden, ++s, 0.5f, 1.5f));
    wq = w(kHeads * kHd, kHidden);
    wk = w(kKvHeads * kHd, kHidden);
    wv = w(kKvHeads * kHd, kHidden);
    wo = w(kHidden, kHeads * kHd);
    q_norm = a.weight(1, kHd, random_bf16(kHd, ++s, 0.5f, 1.5f));
    k_norm = a.weight(1, kHd, random_bf16(kHd, ++s, 0.5f, 1.5f));
    w_gate = w(kInter, kHidden);
    w_up = w(kInter, kHidden);
    w_down = w(kHidden, kInter);
    lm_head = w(kVocab, kHidden);
    // A pool with room for every slot twice: the table can move a sequence's blocks.
    cache.k = a.empty(DType::bf16, kBlocks * kBlock, kKvHeads * kHd).data;
    cache.v = a.empty(DType::bf16, kBlocks * kBlock, kKvHeads * kHd).data;
    cache.dtype = DType::bf16;
    cache.n_blocks = kBlocks;
    cache.block_size = kBlock;
    cache.max_seq = kMaxSeq;
    cache.max_rows = kSlots;
    cache.n_kv_heads = kKvHeads;
    cache.head_dim = kHd;
    ids = a.ints(std::vector<int32_t>(kSlots, 0));
    positions = a.ints(std::vector<int32_t>(kSlots, 0));
    slots = a.ints(std::vector<int32_t>(kSlots, 0));
    table = a.ints(table_at(0));
    x = a.empty(DType::bf16, kSlots, kHidden);
    h = a.empty(DType::bf16, kSlots, kHidden);
    q = a.empty(DType::bf16, kSlots, kHeads * kHd);
    k = a.empty(DType::bf16, kSlots, kKvHeads * kHd);
    v = a.empty(DType::bf16, kSlots, kKvHeads * kHd);
    attn = a.empty(DType::bf16, kSlots, kHeads * kHd);
    o = a.empty(DType::bf16, kSlots, kHidden);
    gate = a.empty(DType::bf16, kSlots, kInter);
    up = a.empty(DType::bf16, kSlots, kInter);
    act = a.empty(DType::bf16, kSlots, kInter);
    logits = a.empty(DType::f32, kSlots, kVocab);
    index = a.empty(DType::i32, kSlots, 1);
    std::vector<float> freq(kHd / 2);
    for (int i = 0; i < kHd / 2; ++i) freq[i] = 1.0f / std::pow(1e6f, 2.0f * i / kHd);
    inv_freq = a.from_floats(DType::f32, 1, kHd / 2, freq);
  }

  // A block table: slot s owns blocks (odd * s + i) * ... interleaved across the pool; shift
  // picks the first or the second half of the pool (the same sequence, its blocks moved).
  static std::vector<int32_t> table_at(int shift) {
    std::vector<int32_t> t(kSlots * kStride);
    for (int s = 0; s < kSlots; ++s)
      for (int i = 0; i < kStride; ++i)
        t[s * kStride + i] = shift * kSlots * kStride + (kStride - 1 - i) * kSlots + s;
    return t;
  }

  // One decode step for n tokens (one per slot): reads ids/positions/slots and the block table
  // from the device only.
  void step(CudaBackend& be, int n) {
    const BatchView b{n, positions, slots, table, kStride, 0};
    be.embed(x.first_rows(n), embed, ids, 0);
    be.rmsnorm(h.first_rows(n), x.first_rows(n), norm, 1e-6f);
    be.matmul(q.first_rows(n), h.first_rows(n), wq);
    be.matmul(k.first_rows(n), h.first_rows(n), wk);
    be.matmul(v.first_rows(n), h.first_rows(n), wv);
    be.qk_norm_rope(q.first_rows(n), k.first_rows(n), q_norm, k_norm, b, kHd,
                    RopeTable{static_cast<const float*>(inv_freq.data), 1.0f}, 1e-6f);
    be.kv_append(cache, k.first_rows(n), v.first_rows(n), b);
    be.attention(attn.first_rows(n), q.first_rows(n), cache, b, kHeads, 0,
                 1.0f / std::sqrt(static_cast<float>(kHd)));
    be.matmul(o.first_rows(n), attn.first_rows(n), wo);
    be.add_rmsnorm(h.first_rows(n), x.first_rows(n), o.first_rows(n), norm, 1e-6f);
    be.matmul(gate.first_rows(n), h.first_rows(n), w_gate);
    be.matmul(up.first_rows(n), h.first_rows(n), w_up);
    be.silu_mul(act.first_rows(n), gate.first_rows(n), up.first_rows(n));
    be.matmul(o.first_rows(n), act.first_rows(n), w_down);
    be.rmsnorm(h.first_rows(n), o.first_rows(n), norm, 1e-6f);
    be.matmul(logits.first_rows(n), h.first_rows(n), lm_head);
    be.argmax(index.first_rows(n), Tensor{}, logits.first_rows(n), 0);
  }
};

TEST_CASE("cuda graph: a captured decode step replays like the eager step", "[cuda][graph]") {
  CudaBackend& be = cuda_backend();
  Arena a(be);
  MiniModel m(a);
  for (int n : {1, 2}) {
    CAPTURE(n);
    // History: eager prefill-like steps fill positions 0..39 of each slot one token at a time.
    std::vector<int32_t> slots(n), pos(n), ids(n);
    for (int i = 0; i < n; ++i) slots[i] = i;
    a.write_ints(m.slots, slots);
    for (int p = 0; p < 40; ++p) {
      for (int i = 0; i < n; ++i) {
        pos[i] = p;
        ids[i] = (7 * p + 13 * i) % MiniModel::kVocab;
      }
      a.write_ints(m.positions, pos);
      a.write_ints(m.ids, ids);
      m.step(be, n);
    }
    // Eager reference for positions 40 and 41, remembering logits; then recompute with the graph.
    std::vector<std::vector<float>> eager_logits;
    std::vector<std::vector<float>> eager_index;
    for (int p = 40; p < 42; ++p) {
      for (int i = 0; i < n; ++i) {
        pos[i] = p;
        ids[i] = (5 * p + i) % MiniModel::kVocab;
      }
      a.write_ints(m.positions, pos);
      a.write_ints(m.ids, ids);
      m.step(be, n);
      eager_logits.push_back(a.read(m.logits.first_rows(n)));
      eager_index.push_back(a.read(m.index.first_rows(n)));
    }
    REQUIRE(be.capture_begin());
    m.step(be, n);  // recorded, not run
    be.capture_end();
    for (int p = 40; p < 42; ++p) {
      for (int i = 0; i < n; ++i) {
        pos[i] = p;
        ids[i] = (5 * p + i) % MiniModel::kVocab;
      }
      a.write_ints(m.positions, pos);
      a.write_ints(m.ids, ids);
      if (p == 41) {
        // Move every block of the sequences to the other half of the pool and replay with the
        // new table: the graph reads the table from its fixed address, so nothing changes.
        const size_t block_bytes = size_t{MiniModel::kBlock} * MiniModel::kKvHeads *
                                   MiniModel::kHd * dtype_size(DType::bf16);
        const size_t half = size_t{MiniModel::kSlots} * MiniModel::kStride * block_bytes;
        for (void* pool : {m.cache.k, m.cache.v}) {
          be.copy_device(static_cast<char*>(pool) + half, pool, half);
        }
        a.write_ints(m.table, MiniModel::table_at(1));
      }
      be.replay();
      // Same kernels, same inputs, same cache contents: bit-identical results.
      REQUIRE_CLOSE("replayed logits", a.read(m.logits.first_rows(n)), eager_logits[p - 40], 0.0,
                    0.0);
      REQUIRE_CLOSE("replayed argmax", a.read(m.index.first_rows(n)), eager_index[p - 40], 0.0,
                    0.0);
    }
    be.release_graph();
    a.write_ints(m.table, MiniModel::table_at(0));
  }
}

TEST_CASE("cuda graph: host copies, allocation and sync are refused inside a capture",
          "[cuda][graph]") {
  CudaBackend& be = cuda_backend();
  Arena a(be);
  int32_t* dev = a.ints({1, 2, 3});
  int32_t host[3] = {0, 0, 0};
  REQUIRE(be.capture_begin());
  CHECK_THROWS_WITH(be.alloc(64), Catch::Contains("captured step"));
  CHECK_THROWS_WITH(be.copy_to_host(host, dev, sizeof(host)), Catch::Contains("captured step"));
  CHECK_THROWS_WITH(be.copy_to_device(dev, host, sizeof(host)), Catch::Contains("captured step"));
  CHECK_THROWS_WITH(be.synchronize(), Catch::Contains("captured step"));
  CHECK_THROWS(be.capture_begin());
  be.capture_end();  // an empty graph
  be.replay();
  be.synchronize();
  be.release_graph();
  CHECK_THROWS_WITH(be.replay(), Catch::Contains("no captured step"));
}

TEST_CASE("cuda graph: after an op throws inside a capture, capture_abort leaves the stream usable",
          "[cuda][graph]") {
  CudaBackend& be = cuda_backend();
  Arena a(be);
  const auto xs = random_bf16(2 * 64, 71);
  Tensor x = a.act(2, 64, xs);
  Tensor y = a.empty(be.act_dtype(), 2, 64);
  Tensor bad_weight = a.weight(1, 63, random_bf16(63, 72));
  REQUIRE(be.capture_begin());
  CHECK_THROWS(be.rmsnorm(y, x, bad_weight, 1e-5f));  // refused before anything is enqueued
  be.capture_abort();
  CHECK_FALSE(be.capturing());
  CHECK_FALSE(be.graph_ready());
  be.capture_abort();  // a no-op now
  // Eager work runs, and a new capture records and replays.
  be.copy_device(y.data, x.data, x.bytes());
  REQUIRE_CLOSE("eager copy_device", a.read(y), xs, 0.0, 0.0);
  Tensor z = a.empty(be.act_dtype(), 2, 64);
  REQUIRE(be.capture_begin());
  be.copy_device(z.data, y.data, y.bytes());
  be.capture_end();
  const auto ys = random_bf16(2 * 64, 73);
  be.copy_device(y.data, a.act(2, 64, ys).data, y.bytes());
  be.replay();
  REQUIRE_CLOSE("replayed copy_device", a.read(z), ys, 0.0, 0.0);
  be.release_graph();
}

}  // namespace
}  // namespace tpinfer::test
