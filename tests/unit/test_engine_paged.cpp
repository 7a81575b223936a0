// The engine over the paged KV cache (CPU backend): a step's block table is honoured (shuffled
// tables, sequences in any table row, a pool smaller than the identity reservation give the
// same logits, bit for bit, as the identity table), blocks wholly before a sliding window may be
// -1, copy_block forks a sequence (shared full blocks, a copied partial block), and a bad table
// is refused with one line naming what is wrong.
#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <numeric>
#include <random>
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

ModelConfig tiny_config(int sliding_window = 0) {
  return tiny_model_config(128, sliding_window);
}

// One engine on its own CPU backend, dummy weights (the same for every seed-7 engine).
struct Rig {
  std::unique_ptr<Backend> be = make_backend(BackendKind::cpu, BackendOptions{0, 1});
  std::unique_ptr<Communicator> comm = make_single_rank_communicator(*be);
  std::unique_ptr<Engine> e;
  Rig(const ModelConfig& cfg, const EngineShape& shape) {
    e = std::make_unique<Engine>(cfg, ShardDims::make(cfg, 1, 0, 0), shape, *be, *comm);
    e->load_dummy(7);
  }
};

// A token of sequence `seq` at `pos`, in a step.
struct Tok {
  int seq, pos, id;
};

// Runs the tokens as one step with every token wanting logits; seq_row maps a sequence to its
// table row; returns the logits.
std::vector<float> run(Engine& e, const std::vector<Tok>& toks, const std::vector<int32_t>& table,
                       int n_rows, int stride, const std::vector<int>& seq_row) {
  std::vector<int32_t> ids, pos, rows, logit_rows;
  for (const Tok& t : toks) {
    ids.push_back(t.id);
    pos.push_back(t.pos);
    rows.push_back(seq_row[t.seq]);
    logit_rows.push_back(static_cast<int32_t>(logit_rows.size()));
  }
  const int n = static_cast<int>(toks.size());
  const float* l = e.step(ids.data(), pos.data(), rows.data(), n, table.data(), n_rows, stride,
                          logit_rows.data(), n, true);
  return std::vector<float>(l, l + static_cast<size_t>(n) * e.config().vocab_size);
}

// Steps of three sequences: prompts of 23, 9 and 40 tokens prefilled in mixed chunks, then
// decode steps of all three (different lengths) and of two.
std::vector<std::vector<Tok>> schedule() {
  std::vector<std::vector<Tok>> steps;
  auto prompt = [](int seq, int from, int to) {
    std::vector<Tok> v;
    for (int p = from; p < to; ++p) v.push_back({seq, p, (7 * p + 11 * seq + 3) % 64});
    return v;
  };
  auto cat = [](std::vector<Tok> a, const std::vector<Tok>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  steps.push_back(cat(prompt(0, 0, 15), prompt(1, 0, 9)));
  steps.push_back(cat(prompt(0, 15, 23), prompt(2, 0, 20)));
  steps.push_back(prompt(2, 20, 40));
  for (int k = 0; k < 6; ++k) {
    std::vector<Tok> d = {{0, 23 + k, 5 + k}, {1, 9 + k, 9 + k}, {2, 40 + k, 13 + k}};
    if (k >= 4) d.erase(d.begin() + 1);
    steps.push_back(d);
  }
  return steps;
}

}  // namespace

TEST_CASE(
    "engine: shuffled block tables, any row order and a small pool give the identity "
    "table's bits",
    "[engine][paged]") {
  for (int window : {0, 6}) {
    INFO("sliding window " << window);
    const ModelConfig cfg = tiny_config(window);
    // Identity: 3 rows of max_seq 64 in blocks of 4 (16 blocks each, 48 in all).
    const EngineShape id_shape{64, 3, 48, 48, -1, 4, 0};
    Rig ref(cfg, id_shape);
    // Paged: a pool of 30 blocks (less than the 48 of the identity table), sequences in rows
    // 2, 0, 1, blocks shuffled; each sequence gets the blocks it needs as it grows.
    EngineShape paged_shape = id_shape;
    paged_shape.n_blocks = 30;
    Rig paged(cfg, paged_shape);
    CHECK(paged.e->kv_bytes() * 48 == ref.e->kv_bytes() * 30);
    const int stride = id_shape.blocks_per_seq();
    std::vector<int32_t> free_blocks(30);
    std::iota(free_blocks.begin(), free_blocks.end(), 0);
    std::shuffle(free_blocks.begin(), free_blocks.end(), std::mt19937(window + 1));
    std::vector<int32_t> table(3 * stride, -1);
    const std::vector<int> row_of = {2, 0, 1}, identity = {0, 1, 2};
    for (const std::vector<Tok>& step : schedule()) {
      for (const Tok& t : step) {  // grow: a new block when a position starts one
        int32_t& entry = table[row_of[t.seq] * stride + t.pos / 4];
        if (entry < 0) {
          REQUIRE(!free_blocks.empty());
          entry = free_blocks.back();
          free_blocks.pop_back();
        }
      }
      const auto want = run(*ref.e, step, ref.e->identity_block_table(), 3, stride, identity);
      const auto got = run(*paged.e, step, table, 3, stride, row_of);
      REQUIRE(got == want);
    }
  }
}

TEST_CASE("engine: blocks wholly before the sliding window may be -1", "[engine][paged]") {
  const ModelConfig cfg = tiny_config(6);
  const EngineShape shape{64, 1, 32, 32, -1, 4, 0};
  Rig a(cfg, shape), b(cfg, shape);
  const int stride = shape.blocks_per_seq();
  std::vector<int32_t> full(stride), dropped(stride);
  std::iota(full.begin(), full.end(), 0);
  dropped = full;
  std::vector<Tok> prompt;
  for (int p = 0; p < 20; ++p) prompt.push_back({0, p, (3 * p + 1) % 64});
  REQUIRE(run(*b.e, prompt, dropped, 1, stride, {0}) == run(*a.e, prompt, full, 1, stride, {0}));
  for (int p = 20; p < 40; ++p) {
    // The window of a token at p starts at p - 5: blocks ending before it are released (-1).
    for (int blk = 0; (blk + 1) * 4 <= p - 5; ++blk) dropped[blk] = -1;
    const std::vector<Tok> d = {{0, p, p % 64}};
    INFO("position " << p);
    REQUIRE(run(*b.e, d, dropped, 1, stride, {0}) == run(*a.e, d, full, 1, stride, {0}));
  }
  // But a block inside the window must be there: one line naming the entry.
  dropped[(40 - 5) / 4] = -1;
  CHECK_THROWS_WITH(run(*b.e, {{0, 40, 1}}, dropped, 1, stride, {0}),
                    Catch::Contains("block-table row 0 entry 8 (positions 32 to 35) is block -1"));
}

TEST_CASE("engine: copy_block forks a sequence that then decodes on its own", "[engine][paged]") {
  // A prompt of 10 tokens in blocks of 4: blocks 5 and 2 are full, block 7 holds positions 8-9.
  // The fork shares blocks 5 and 2 and gets a copy of block 7 (in block 3); both then decode
  // different tokens. Each must match a sequence prefilled alone with the same tokens.
  const ModelConfig cfg = tiny_config();
  const EngineShape shape{32, 2, 16, 16, -1, 4, 12}, identity_shape{32, 2, 16, 16, -1, 4, 0};
  Rig fork(cfg, shape), alone(cfg, identity_shape);
  const int stride = shape.blocks_per_seq();
  std::vector<int32_t> table(2 * stride, -1);
  table[0] = 5, table[1] = 2, table[2] = 7;
  std::vector<Tok> prompt;
  for (int p = 0; p < 10; ++p) prompt.push_back({0, p, (5 * p + 2) % 64});
  run(*fork.e, prompt, table, 1, stride, {0});
  fork.e->copy_block(3, 7);
  table[stride + 0] = 5, table[stride + 1] = 2, table[stride + 2] = 3;
  std::vector<float> got;
  for (int k = 0; k < 4; ++k) {  // row 0 decodes ids 10+k, row 1 ids 30+k; blocks 9 and 4 next
    if (k == 2) table[3] = 9, table[stride + 3] = 4;
    const auto l =
        run(*fork.e, {{0, 10 + k, 10 + k}, {1, 10 + k, 30 + k}}, table, 2, stride, {0, 1});
    got.insert(got.end(), l.begin(), l.end());
  }
  // The same two sequences, each prefilled alone in its own identity row.
  std::vector<float> want(got.size());
  const size_t V = cfg.vocab_size;
  for (int seq = 0; seq < 2; ++seq) {
    std::vector<Tok> p = prompt;
    for (Tok& t : p) t.seq = seq;
    run(*alone.e, p, alone.e->identity_block_table(), 2, stride, {0, 1});
  }
  for (int k = 0; k < 4; ++k) {
    const auto l = run(*alone.e, {{0, 10 + k, 10 + k}, {1, 10 + k, 30 + k}},
                       alone.e->identity_block_table(), 2, stride, {0, 1});
    std::copy(l.begin(), l.end(), want.begin() + static_cast<ptrdiff_t>(2 * k * V));
  }
  REQUIRE(got == want);
  CHECK_THROWS_WITH(fork.e->copy_block(12, 0),
                    Catch::Contains("block 12 outside the KV pool [0, 12)"));
  CHECK_THROWS_WITH(fork.e->copy_block(0, -1), Catch::Contains("block -1 outside the KV pool"));
}

TEST_CASE("engine: a bad block table or pool shape is refused with one clear line",
          "[engine][paged]") {
  const ModelConfig cfg = tiny_config();
  const EngineShape shape{32, 2, 16, 2, -1, 4, 10};
  Rig r(cfg, shape);
  Engine& e = *r.e;
  const int stride = shape.blocks_per_seq();  // 8
  std::vector<int32_t> table(2 * stride, -1);
  table[0] = 1, table[1] = 9, table[stride] = 4;
  const int32_t id = 1, row = 0, pos = 3, one_row = 1;
  auto step = [&](int32_t p, int32_t r_, int n_rows, int s) {
    e.step(&id, &p, &r_, 1, table.data(), n_rows, s, &row, 1, true);
  };
  CHECK_NOTHROW(step(pos, one_row, 2, stride));
  const int32_t bad_row = 1;
  CHECK_THROWS_WITH(e.step(&id, &pos, &row, 1, table.data(), 2, stride, &bad_row, 1, true),
                    Catch::Contains("logit row 1 outside the batch of 1 tokens"));
  CHECK_THROWS_WITH(e.step(&id, &pos, &row, 1, table.data(), 2, stride, &row, 3, true),
                    Catch::Contains("3 logit rows, the engine holds 2"));
  CHECK_NOTHROW(step(7, 0, 2, stride));
  CHECK_THROWS_WITH(step(pos, 2, 2, stride),
                    Catch::Contains("token 0 uses block-table row 2, the table has 2"));
  CHECK_THROWS_WITH(step(pos, 0, 3, stride),
                    Catch::Contains("3 block-table rows, the engine holds 1 to 2"));
  CHECK_THROWS_WITH(step(pos, 0, 2, stride + 1),
                    Catch::Contains("block-table stride 9, expected 1 to 8"));
  CHECK_THROWS_WITH(step(8, 0, 2, stride),
                    Catch::Contains("entry 2 (positions 8 to 11) is block -1, outside the KV pool "
                                    "[0, 10)"));
  table[1] = 10;
  CHECK_THROWS_WITH(step(7, 0, 2, stride), Catch::Contains("is block 10, outside the KV pool"));
  table[1] = 9;
  // A narrower table (stride 2) is accepted and means the same thing.
  const std::vector<int32_t> narrow = {1, 9, 4, -1};
  CHECK_NOTHROW(e.step(&id, &pos, &one_row, 1, narrow.data(), 2, 2, &row, 1, true));
  CHECK_THROWS_WITH(e.step(&id, &pos, &one_row, 1, narrow.data(), 2, 0, &row, 1, true),
                    Catch::Contains("block-table stride 0"));
  // The identity overload needs the default pool (2 rows x 8 blocks = 16 > 10).
  CHECK_THROWS_WITH(
      e.step(&id, &pos, &row, 1, &row, 1, true),
      Catch::Contains("the identity block table needs 16 KV blocks, the pool has 10"));
  EngineShape odd = shape;
  odd.block_size = 12;
  CHECK_THROWS_WITH(Rig(cfg, odd), Catch::Contains("KV block size must be a power of two"));
}

TEST_CASE("engine: the pool is sized by n_blocks, or by n_slots x max_seq by default",
          "[engine][paged]") {
  const ModelConfig cfg = tiny_config();
  EngineShape shape{100, 3, 16, 3};  // block 16: ceil(100 / 16) = 7 blocks per sequence
  CHECK(shape.block_size == kKvBlockSize);
  CHECK(shape.blocks_per_seq() == 7);
  CHECK(shape.pool_blocks() == 21);
  const size_t per_block = 2 * 2 * size_t{16} * 2 * 8 * sizeof(float);  // K+V, layers, bs, kv dim
  CHECK(Rig(cfg, shape).e->kv_bytes() == 21 * per_block);
  shape.n_blocks = 5;
  CHECK(Rig(cfg, shape).e->kv_bytes() == 5 * per_block);
}
