#include "runtime/engine/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "core/watchdog.h"
#include "io/model_dir.h"
#include "io/shard_loader.h"
#include "model/rope.h"
#include "model/sharding.h"

namespace tpinfer {

KvLayer kv_layer_shape(const EngineShape& shape, const ShardDims& dims, DType act_dtype) {
  KvLayer L;
  L.dtype = act_dtype;
  L.n_blocks = shape.pool_blocks();
  L.block_size = shape.block_size;
  L.n_kv_heads = dims.n_kv_heads;
  L.head_dim = dims.head_dim;
  L.max_seq = shape.max_seq;
  L.max_rows = shape.n_slots;
  return L;
}

Engine::Engine(const ModelConfig& cfg, const ShardDims& dims, const EngineShape& shape,
               Backend& backend, Communicator& comm)
    : cfg_(cfg),
      dims_(dims),
      shape_(shape),
      be_(backend),
      comm_(comm),
      model_(cfg_, dims_, backend, comm) {
  TPI_CHECK(shape_.max_seq > 0, "engine: max_seq must be positive");
  TPI_CHECK(shape_.max_tokens >= shape_.n_slots && shape_.max_logit_rows >= shape_.n_slots,
            "engine: max_tokens and max_logit_rows must cover n_slots");
  TPI_CHECK(
      shape_.block_size > 0 && shape_.block_size <= 1024 &&
          (shape_.block_size & (shape_.block_size - 1)) == 0,
      "engine: the KV block size must be a power of two in [1, 1024], found " << shape_.block_size);
  TPI_CHECK(shape_.n_blocks >= 0,
            "engine: n_blocks must be >= 0 (0: the default pool), found " << shape_.n_blocks);
  allocate_weights();

  // KV cache: every layer, a pool of blocks, allocated once.
  const DType act = be_.act_dtype();
  const size_t kv_layer_bytes = static_cast<size_t>(shape_.pool_blocks()) * shape_.block_size *
                                dims_.kv_dim() * dtype_size(act);
  kv_.resize(dims_.n_layers);
  for (KvLayer& L : kv_) {
    L = kv_layer_shape(shape_, dims_, act);
    L.k = be_.alloc(kv_layer_bytes);
    L.v = be_.alloc(kv_layer_bytes);
    owned_.push_back(L.k);
    owned_.push_back(L.v);
    kv_bytes_ += 2 * kv_layer_bytes;
  }

  // Scratch.
  const int T = shape_.max_tokens, R = shape_.max_logit_rows;
  const size_t before = be_.allocated_bytes();
  act_.max_tokens = T;
  act_.max_logit_rows = R;
  act_.x = alloc_tensor(act, T, dims_.hidden);
  act_.h = alloc_tensor(act, T, dims_.hidden);
  act_.delta = alloc_tensor(act, T, dims_.hidden);
  act_.qkv = alloc_tensor(act, T, dims_.q_dim() + 2 * dims_.kv_dim());
  act_.q = alloc_tensor(act, T, dims_.q_dim());
  act_.k = alloc_tensor(act, T, dims_.kv_dim());
  act_.v = alloc_tensor(act, T, dims_.kv_dim());
  act_.att = alloc_tensor(act, T, dims_.q_dim());
  act_.gate_up = alloc_tensor(act, T, 2 * dims_.intermediate);
  act_.mlp = alloc_tensor(act, T, dims_.intermediate);
  act_.last = alloc_tensor(act, R, dims_.hidden);
  act_.logits = alloc_tensor(DType::f32, R, dims_.vocab);
  act_.logits_all = alloc_tensor(DType::f32, static_cast<int64_t>(dims_.tp) * R, dims_.vocab);
  act_.ids = static_cast<int32_t*>(alloc_tensor(DType::i32, 1, T).data);
  act_.positions = static_cast<int32_t*>(alloc_tensor(DType::i32, 1, T).data);
  act_.slots = static_cast<int32_t*>(alloc_tensor(DType::i32, 1, T).data);
  act_.logit_rows = static_cast<int32_t*>(alloc_tensor(DType::i32, 1, R).data);
  if (dims_.n_experts > 0) {
    const int k = dims_.experts_per_tok;
    const int64_t routed = static_cast<int64_t>(T) * k;
    act_.router_logits = alloc_tensor(DType::f32, T, dims_.n_experts);
    act_.topk_ids = alloc_tensor(DType::i32, T, k);
    act_.topk_weights = alloc_tensor(DType::f32, T, k);
    act_.moe.x = alloc_tensor(act, routed, dims_.hidden);
    act_.moe.y = alloc_tensor(act, routed, dims_.hidden);
    act_.moe.gate = alloc_tensor(act, routed, dims_.moe_intermediate);
    act_.moe.up = alloc_tensor(act, routed, dims_.moe_intermediate);
    act_.moe.order = static_cast<int32_t*>(alloc_tensor(DType::i32, 1, routed).data);
    act_.moe.offsets = static_cast<int32_t*>(alloc_tensor(DType::i32, 1, dims_.n_experts + 1).data);
  }
  const int64_t table_entries = int64_t{shape_.n_slots} * shape_.blocks_per_seq();
  act_.block_tables = static_cast<int32_t*>(alloc_tensor(DType::i32, 1, table_entries).data);
  act_bytes_ = be_.allocated_bytes() - before;

  // A communicator that stages through host memory (MPI) cannot be captured into a graph.
  // Nor can a step whose RoPE table depends on the positions (dynamic, longrope): the table is
  // chosen on the host per forward, as transformers does.
  // Pipeline stages send and receive mid-forward: eager steps (see set_pipe).
  graph_.enabled = comm_.capturable() && !rope_depends_on_length(cfg_) && dims_.pp == 1;
  host_gathered_.resize(static_cast<size_t>(dims_.tp) * R * dims_.vocab);
  host_logits_.resize(static_cast<size_t>(R) * cfg_.vocab_size);
  host_table_.resize(static_cast<size_t>(table_entries));
  row_lo_.resize(static_cast<size_t>(shape_.n_slots));
  row_hi_.resize(static_cast<size_t>(shape_.n_slots));
}

void Engine::set_pipe(PipeLink* pipe) {
  TPI_CHECK(dims_.pp == 1 || pipe != nullptr,
            "engine: pipeline stage " << dims_.pp_rank << " of " << dims_.pp << " needs a link");
  pipe_ = pipe;
  model_.set_pipe(pipe);
}

Engine::~Engine() {
  for (void* p : owned_) be_.free(p);
}

Tensor Engine::alloc_tensor(DType dtype, int64_t rows, int64_t cols) {
  Tensor t;
  t.dtype = dtype;
  t.rows = rows;
  t.cols = cols;
  t.data = be_.alloc(t.bytes());
  owned_.push_back(t.data);
  return t;
}

// Every tensor of the sharding table this rank runs gets its device memory now: 2-D matrices in
// the backend's weight dtype, 1-D norm weights in its activation dtype.
void Engine::allocate_weights() {
  const size_t before = be_.allocated_bytes();
  allocate_experts();
  for (const TensorSpec& spec : sharding_table(cfg_)) {
    Tensor* slot = model_.weights.find(spec.name);
    if (slot == nullptr || !slot->empty()) continue;  // not run, or an expert allocated above
    const std::vector<int64_t> shape = spec.local_shape(dims_.tp);
    if (shape.size() == 1) {
      *slot = alloc_tensor(be_.act_dtype(), 1, shape[0]);
    } else if (shape_.int8_group >= 0 && int8_quantized(spec)) {
      *slot = alloc_tensor(DType::i8, shape[0], shape[1]);
      slot->group = shape_.int8_group > 0 ? shape_.int8_group : shape[1];
      slot->scales = alloc_tensor(DType::f32, shape[0], slot->n_groups()).data;
    } else {
      *slot = alloc_tensor(be_.weight_dtype(), shape[0], shape[1]);
    }
  }
  ModelWeights& w = model_.weights;
  w.rope_inv_freq = alloc_tensor(DType::f32, 1, dims_.head_dim / 2);
  if (cfg_.rope_scaling.kind == RopeKind::longrope) {
    w.rope_inv_freq_long = alloc_tensor(DType::f32, 1, dims_.head_dim / 2);
  }
  weight_bytes_ = be_.allocated_bytes() - before;
}

// An MoE layer's experts live in three stacked tensors (one matmul kernel can then reach any
// expert from one base pointer); the sharding table's per-expert tensors are views into them.
void Engine::allocate_experts() {
  if (dims_.n_experts == 0) return;
  const int E = dims_.n_experts, I = dims_.moe_intermediate, H = dims_.hidden;
  const bool int8 = shape_.int8_group >= 0;
  auto stacked = [&](int64_t rows, int64_t cols) {
    if (!int8) return alloc_tensor(be_.weight_dtype(), rows, cols);
    Tensor t = alloc_tensor(DType::i8, rows, cols);
    t.group = shape_.int8_group > 0 ? shape_.int8_group : cols;
    t.scales = alloc_tensor(DType::f32, rows, t.n_groups()).data;
    return t;
  };
  for (int l = 0; l < dims_.n_layers; ++l) {
    const int global = dims_.stage.layer_begin + l;  // pipeline stages: the model's index
    if (!cfg_.is_moe_layer(global)) continue;
    LayerWeights& L = model_.weights.layers[l];
    L.experts.n_experts = E;
    L.experts.gate = stacked(int64_t{E} * I, H);
    L.experts.up = stacked(int64_t{E} * I, H);
    L.experts.down = stacked(int64_t{E} * H, I);
    const std::string p = "model.layers." + std::to_string(global) + ".mlp.experts.";
    for (int e = 0; e < E; ++e) {
      const std::string x = p + std::to_string(e) + ".";
      *model_.weights.find(x + "gate_proj.weight") = L.experts.gate.slice_rows(int64_t{e} * I, I);
      *model_.weights.find(x + "up_proj.weight") = L.experts.up.slice_rows(int64_t{e} * I, I);
      *model_.weights.find(x + "down_proj.weight") = L.experts.down.slice_rows(int64_t{e} * H, H);
    }
  }
}

void Engine::finish_weights() {
  ModelWeights& w = model_.weights;
  if (cfg_.tie_word_embeddings) w.lm_head = w.embed;
  model_.init_rope();
  // Pipeline stages: the embedding on the first, the final norm and lm_head on the last.
  TPI_CHECK((!dims_.first_stage() || !w.embed.empty()) &&
                (!dims_.last_stage() || (!w.lm_head.empty() && !w.final_norm.empty())),
            "model weights incomplete: embed_tokens, lm_head or norm missing");
  be_.synchronize();
}

void Engine::load(const ModelDir& dir, int world_rank_for_messages, bool verify_sha256) {
  load_shard(
      dir, dims_.tp_rank, dims_.pp_rank,
      [&](const TensorSpec& spec, const std::vector<int64_t>& local_shape, const void* data,
          DType dtype) {
        Tensor* slot = model_.weights.find(spec.name);
        if (slot == nullptr) return;  // a layer the `layers` option leaves out
        int64_t n = 1;
        for (int64_t s : local_shape) n *= s;
        TPI_CHECK(n == slot->numel(), dir.shard_path(dims_.tp_rank, dims_.pp_rank)
                                          << ": tensor " << spec.name << " has " << n
                                          << " elements, the engine expects " << slot->numel());
        be_.upload_weight(*slot, data, dtype);
        watch_beat();  // a big shard loads for long, but tensor by tensor
      },
      [&](const TensorSpec& spec, const std::vector<int64_t>& local_shape, const int8_t* q,
          const float* scales, int64_t group) {
        Tensor* slot = model_.weights.find(spec.name);
        if (slot == nullptr) return;
        TPI_CHECK(slot->dtype == DType::i8 && slot->rows == local_shape[0] &&
                      slot->cols == local_shape[1] && slot->group == group,
                  dir.shard_path(dims_.tp_rank, dims_.pp_rank)
                      << ": tensor " << spec.name << " is int8 with group " << group
                      << ", the engine expects " << dtype_name(slot->dtype) << " with group "
                      << slot->group);
        be_.upload_int8_weight(*slot, q, scales);
        watch_beat();
      },
      verify_sha256);
  finish_weights();
}

void Engine::load_dummy(uint64_t seed) {
  // Normal(0, 0.02) weights (HF's initializer_range), norms at 1. Only speed and memory matter,
  // so one random block per rank, drawn in the dtype the device keeps, is tiled by memcpy: a
  // 7B shape fills in seconds. The block length is prime, so rows are not copies of each other.
  constexpr size_t kBlock = 65537;
  std::mt19937_64 rng(seed * 1000003ull + static_cast<uint64_t>(dims_.tp_rank));
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> block_f32(kBlock);
  for (float& v : block_f32) v = normal(rng);
  std::vector<uint16_t> block_bf16(kBlock);
  for (size_t i = 0; i < kBlock; ++i) block_bf16[i] = f32_to_bf16(block_f32[i]);

  // int8: uniform integers in [-127, 127] with scale 0.02 * sqrt(3) / 127 (the same spread).
  std::vector<int8_t> block_i8(kBlock);
  std::uniform_int_distribution<int> uniform(-127, 127);
  for (int8_t& v : block_i8) v = static_cast<int8_t>(uniform(rng));

  std::vector<char> host;
  std::vector<float> ones;
  for (const TensorSpec& spec : sharding_table(cfg_)) {
    Tensor* slot = model_.weights.find(spec.name);
    if (slot == nullptr) continue;
    if (slot->rows == 1) {
      ones.assign(static_cast<size_t>(slot->numel()), 1.0f);
      be_.upload_weight(*slot, ones.data(), DType::f32);
      continue;
    }
    if (slot->dtype == DType::i8) {
      host.resize(static_cast<size_t>(slot->numel()));
      for (size_t off = 0; off < host.size(); off += kBlock) {
        std::memcpy(host.data() + off, block_i8.data(), std::min(kBlock, host.size() - off));
      }
      ones.assign(static_cast<size_t>(slot->rows * slot->n_groups()), 0.02f * 1.7320508f / 127.f);
      be_.upload_int8_weight(*slot, reinterpret_cast<const int8_t*>(host.data()), ones.data());
      watch_beat();
      continue;
    }
    const bool bf16 = slot->dtype == DType::bf16;
    const DType src_dtype = bf16 ? DType::bf16 : DType::f32;
    const char* block = bf16 ? reinterpret_cast<const char*>(block_bf16.data())
                             : reinterpret_cast<const char*>(block_f32.data());
    const size_t block_bytes = kBlock * dtype_size(src_dtype);
    host.resize(static_cast<size_t>(slot->numel()) * dtype_size(src_dtype));
    for (size_t off = 0; off < host.size(); off += block_bytes) {
      std::memcpy(host.data() + off, block, std::min(block_bytes, host.size() - off));
    }
    be_.upload_weight(*slot, host.data(), src_dtype);
    watch_beat();
  }
  finish_weights();
}

void Engine::warm_up() {
  // A prompt of n tokens at positions [0, n), then one decode token at n, in one table row of
  // blocks 0, 1, ... (as many as the pool has).
  const int bs = shape_.block_size;
  const int n =
      std::min({shape_.max_tokens, shape_.max_seq - 1, 16, shape_.pool_blocks() * bs - 1});
  if (n < 1) return;
  const int stride = shape_.blocks_per_seq();
  std::vector<int32_t> table(static_cast<size_t>(stride), -1);
  for (int b = 0; b <= n / bs; ++b) table[static_cast<size_t>(b)] = b;
  std::vector<int32_t> ids(n, 0), positions(n), slots(n, 0);
  for (int i = 0; i < n; ++i) positions[i] = i;
  const int32_t last = n - 1, first = 0;
  step(ids.data(), positions.data(), slots.data(), n, table.data(), 1, stride, &last, 1, true);
  step(ids.data(), &n, slots.data(), 1, table.data(), 1, stride, &first, 1, true);
}

const std::vector<int32_t>& Engine::identity_block_table() const {
  if (identity_table_.empty()) {
    const int stride = shape_.blocks_per_seq();
    identity_table_.resize(static_cast<size_t>(shape_.n_slots) * stride);
    for (size_t i = 0; i < identity_table_.size(); ++i)
      identity_table_[i] = static_cast<int32_t>(i);
  }
  return identity_table_;
}

void Engine::copy_block(int dst, int src) {
  const int n = shape_.pool_blocks();
  TPI_CHECK(dst >= 0 && dst < n && src >= 0 && src < n,
            "copy_block: block " << (dst >= 0 && dst < n ? src : dst) << " outside the KV pool [0, "
                                 << n << ")");
  if (dst == src) return;
  const size_t bytes =
      static_cast<size_t>(shape_.block_size) * dims_.kv_dim() * dtype_size(be_.act_dtype());
  for (const KvLayer& L : kv_) {
    be_.copy_device(static_cast<char*>(L.k) + bytes * dst, static_cast<char*>(L.k) + bytes * src,
                    bytes);
    be_.copy_device(static_cast<char*>(L.v) + bytes * dst, static_cast<char*>(L.v) + bytes * src,
                    bytes);
  }
}

// The first decode step of a batch size runs eagerly (it sizes workspaces, plans cuBLAS calls and
// opens NCCL connections); the second is captured and replayed, and every later one only replays.
// A new batch size drops the graph and starts over.
void Engine::forward_decode_graph(const BatchView& b, int n_logit_rows) {
  if (graph_.n != b.n_tokens) {
    graph_.n = b.n_tokens;
    graph_.captured = false;
    graph_.eager_steps = 0;
  }
  if (graph_.captured && be_.graph_ready()) {
    be_.replay();
    return;
  }
  graph_.captured = false;  // never captured, or the backend dropped it: capture (again) below
  if (graph_.eager_steps >= 1) {
    if (be_.capture_begin()) {
      try {
        model_.forward(kv_, act_, b, n_logit_rows);
      } catch (...) {
        be_.capture_abort();  // the op's own error is the one reported, and the next step can run
        throw;
      }
      be_.capture_end();
      graph_.captured = true;
      be_.replay();
      return;
    }
    graph_.enabled = false;  // this backend has no graphs
  }
  ++graph_.eager_steps;
  model_.forward(kv_, act_, b, n_logit_rows);
}

const float* Engine::step(const int32_t* ids, const int32_t* positions, const int32_t* slots, int n,
                          const int32_t* logit_rows, int n_logit_rows, bool want_host_logits,
                          int rope_seq_len) {
  TPI_CHECK(shape_.pool_blocks() >= shape_.n_slots * shape_.blocks_per_seq(),
            "step: the identity block table needs " << shape_.n_slots * shape_.blocks_per_seq()
                                                    << " KV blocks, the pool has "
                                                    << shape_.pool_blocks());
  return step(ids, positions, slots, n, identity_block_table().data(), shape_.n_slots,
              shape_.blocks_per_seq(), logit_rows, n_logit_rows, want_host_logits, rope_seq_len);
}

void Engine::check_block_table(const int32_t* positions, const int32_t* slots, int n,
                               const int32_t* block_table, int n_table_rows, int table_stride) {
  TPI_CHECK(
      block_table != nullptr && n_table_rows > 0 && n_table_rows <= shape_.n_slots,
      "step: " << n_table_rows << " block-table rows, the engine holds 1 to " << shape_.n_slots);
  TPI_CHECK(table_stride > 0 && table_stride <= shape_.blocks_per_seq(),
            "step: block-table stride "
                << table_stride << ", expected 1 to " << shape_.blocks_per_seq() << " (max_seq "
                << shape_.max_seq << " / block size " << shape_.block_size << ", rounded up)");
  // Per row, the blocks the step writes or reads: from the first key of the earliest window to
  // the last position.
  std::fill(row_lo_.begin(), row_lo_.begin() + n_table_rows, shape_.max_seq);
  std::fill(row_hi_.begin(), row_hi_.begin() + n_table_rows, -1);
  const int window = cfg_.sliding_window;
  for (int i = 0; i < n; ++i) {
    TPI_CHECK(slots[i] >= 0 && slots[i] < n_table_rows,
              "step: token " << i << " uses block-table row " << slots[i] << ", the table has "
                             << n_table_rows);
    const int lo = window > 0 ? std::max(0, positions[i] - window + 1) : 0;
    row_lo_[slots[i]] = std::min(row_lo_[slots[i]], lo);
    row_hi_[slots[i]] = std::max(row_hi_[slots[i]], positions[i]);
  }
  const int bs = shape_.block_size, pool = shape_.pool_blocks();
  for (int r = 0; r < n_table_rows; ++r) {
    if (row_hi_[r] < 0) continue;
    TPI_CHECK(row_hi_[r] / bs < table_stride,
              "step: position " << row_hi_[r] << " of block-table row " << r
                                << " is past the row's " << table_stride << " blocks");
    const int32_t* row = block_table + static_cast<int64_t>(r) * table_stride;
    for (int b = row_lo_[r] / bs; b <= row_hi_[r] / bs; ++b) {
      TPI_CHECK(row[b] >= 0 && row[b] < pool,
                "step: block-table row " << r << " entry " << b << " (positions " << b * bs
                                         << " to " << b * bs + bs - 1 << ") is block " << row[b]
                                         << ", outside the KV pool [0, " << pool << ")");
    }
  }
}

const float* Engine::step(const int32_t* ids, const int32_t* positions, const int32_t* slots, int n,
                          const int32_t* block_table, int n_table_rows, int table_stride,
                          const int32_t* logit_rows, int n_logit_rows, bool want_host_logits,
                          int rope_seq_len) {
  const bool sends_logits = dims_.pp > 1 && dims_.last_stage() && dims_.tp_rank == 0;
  const float* logits =
      forward(ids, positions, slots, n, block_table, n_table_rows, table_stride, logit_rows,
              n_logit_rows, want_host_logits || sends_logits, rope_seq_len);
  if (dims_.pp == 1) return logits;
  // Pipeline stages: the last stage's tp rank 0 sends the step's logits to the first stage's tp
  // rank 0 (the replica leader, which samples); every other rank has none.
  TPI_CHECK(pipe_ != nullptr, "step: pipeline stage " << dims_.pp_rank << " has no link");
  const size_t bytes = sizeof(float) * static_cast<size_t>(n_logit_rows) * cfg_.vocab_size;
  if (n_logit_rows == 0 || dims_.tp_rank != 0) return nullptr;
  if (dims_.last_stage()) {
    pipe_->send_reply(logits, bytes);
    return nullptr;
  }
  if (!dims_.first_stage()) return nullptr;
  pipe_->post_reply(host_logits_.data(), bytes);
  pipe_->wait_reply();
  return want_host_logits ? host_logits_.data() : nullptr;
}

const float* Engine::forward(const int32_t* ids, const int32_t* positions, const int32_t* slots,
                             int n, const int32_t* block_table, int n_table_rows, int table_stride,
                             const int32_t* logit_rows, int n_logit_rows, bool want_host_logits,
                             int rope_seq_len) {
  TPI_CHECK(n > 0 && n <= shape_.max_tokens,
            "step: " << n << " tokens, the engine holds " << shape_.max_tokens);
  int max_pos = 0;
  for (int i = 0; i < n; ++i) {
    TPI_CHECK(positions[i] >= 0 && positions[i] < shape_.max_seq,
              "step: position " << positions[i] << " outside the KV cache (max_seq "
                                << shape_.max_seq << ")");
    TPI_CHECK(
        ids[i] >= 0 && ids[i] < cfg_.vocab_size,
        "step: token id " << ids[i] << " outside the vocabulary [0, " << cfg_.vocab_size << ")");
    max_pos = std::max(max_pos, positions[i]);
  }
  TPI_CHECK(n_logit_rows >= 0 && n_logit_rows <= shape_.max_logit_rows,
            "step: " << n_logit_rows << " logit rows, the engine holds " << shape_.max_logit_rows);
  for (int r = 0; r < n_logit_rows; ++r) {
    TPI_CHECK(logit_rows[r] >= 0 && logit_rows[r] < n,
              "step: logit row " << logit_rows[r] << " outside the batch of " << n << " tokens");
  }
  check_block_table(positions, slots, n, block_table, n_table_rows, table_stride);
  // The device table has a fixed stride (blocks_per_seq), so a captured decode step replays
  // with whatever table the next step brings; only the rows this step uses are copied.
  const int stride = shape_.blocks_per_seq();
  const int32_t* table = block_table;
  if (table_stride != stride) {
    for (int r = 0; r < n_table_rows; ++r) {
      int32_t* dst = host_table_.data() + static_cast<size_t>(r) * stride;
      std::copy_n(block_table + static_cast<size_t>(r) * table_stride, table_stride, dst);
      std::fill(dst + table_stride, dst + stride, -1);
    }
    table = host_table_.data();
  }
  be_.copy_to_device(act_.ids, ids, sizeof(int32_t) * n);
  be_.copy_to_device(act_.positions, positions, sizeof(int32_t) * n);
  be_.copy_to_device(act_.slots, slots, sizeof(int32_t) * n);
  be_.copy_to_device(act_.logit_rows, logit_rows, sizeof(int32_t) * n_logit_rows);
  be_.copy_to_device(act_.block_tables, table, sizeof(int32_t) * n_table_rows * stride);
  BatchView b;
  b.n_tokens = n;
  b.positions = act_.positions;
  b.slots = act_.slots;
  b.block_tables = act_.block_tables;
  b.table_stride = stride;
  b.max_position = max_pos;
  b.rope_seq_len = rope_seq_len;
  const bool decode_shape = n == n_logit_rows && n <= shape_.n_slots;
  if (graph_.enabled && decode_shape) {
    forward_decode_graph(b, n_logit_rows);
  } else {
    model_.forward(kv_, act_, b, n_logit_rows);
  }
  // Pipeline stages: only the last stage has logits; its tp rank 0 assembles them (with
  // want_host_logits) for the caller to hand to the replica leader.
  const bool has_logits = dims_.pp == 1 || (dims_.last_stage() && dims_.tp_rank == 0);
  if (!want_host_logits || n_logit_rows == 0 || !has_logits) {
    be_.synchronize();
    return nullptr;
  }
  return assemble_host_logits(n_logit_rows);
}

const float* Engine::assemble_host_logits(int n_logit_rows) {
  // Gathered layout is (tp, rows, vocab_local); reassemble (rows, vocab) and drop the padding.
  const size_t vl = static_cast<size_t>(dims_.vocab);
  be_.copy_to_host(host_gathered_.data(), act_.logits_all.data,
                   sizeof(float) * dims_.tp * n_logit_rows * vl);
  const size_t V = static_cast<size_t>(cfg_.vocab_size);
  for (int r = 0; r < n_logit_rows; ++r) {
    float* dst = host_logits_.data() + r * V;
    for (int t = 0; t < dims_.tp; ++t) {
      const size_t begin = t * vl;
      if (begin >= V) break;
      const size_t count = std::min(vl, V - begin);
      std::memcpy(dst + begin,
                  host_gathered_.data() + (static_cast<size_t>(t) * n_logit_rows + r) * vl,
                  sizeof(float) * count);
    }
  }
  return host_logits_.data();
}

}  // namespace tpinfer
