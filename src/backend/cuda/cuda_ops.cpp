// The op set of the CUDA backend: validate shapes, dtypes and alignment (tier-1 errors that say
// what was expected and what was found), then enqueue the launchers of kernels/cuda on the
// backend's stream. Nothing here reads device data on the host, allocates or synchronizes
// (except attention's one-time workspace reservation, refused under capture), so every op can
// be captured into the decode-step graph.
#include <algorithm>
#include <climits>
#include <string>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "core/error.h"
#include "cuda/kernels.h"

namespace tpinfer {
namespace {

// Batches up to this many tokens (or up to the cache's max_rows, whichever is larger) use the
// flash-decoding kernel: a decode step never has more tokens than sequences (table rows), so a
// captured step always takes that path, and short prompts are cheap on it too.
constexpr int kDecodeKernelMinTokens = 16;

gpu::bf16* bf(const Tensor& t) {
  return static_cast<gpu::bf16*>(t.data);
}

void require(const Tensor& t, DType d, const char* op, const char* what) {
  TPI_CHECK(t.dtype == d, "cuda " << op << ": " << what << " must be " << dtype_name(d)
                                  << ", found " << dtype_name(t.dtype));
  TPI_CHECK(t.data != nullptr || t.numel() == 0, "cuda " << op << ": " << what << " is null");
}

int to_int(int64_t v, const char* op, const char* what) {
  TPI_CHECK(v >= 0 && v <= INT_MAX,
            "cuda " << op << ": " << what << " = " << v << " does not fit the kernels' int sizes");
  return static_cast<int>(v);
}

// The largest batch whose flash-decoding partials must be reserved for this cache. A batch of
// T tokens needs partials only when it gets more than one split, i.e. when T * n_kv_heads *
// head blocks < 2 * n_sms (attention_decode_splits), so T <= 2 * n_sms + 1 bounds every case.
// With a head_dim the prefill kernel takes, the decode kernel sees at most max(max_rows, 16)
// tokens; with any other head_dim it runs every batch (prefills too), so the bound is the full
// 2 * n_sms + 1.
int decode_batch_bound(const KvLayer& cache, int n_sms) {
  const int all = 2 * n_sms + 1;
  if (!gpu::attention_prefill_supports(cache.head_dim)) return all;
  return std::min(std::max(cache.max_rows, kDecodeKernelMinTokens), all);
}

// The paged cache as the kernels see it; one clear line when the pool or the batch's table is
// malformed (the table's entries are the engine's to check, once per step on the host).
gpu::KvPages pages_of(const KvLayer& c, const BatchView& b, const char* op) {
  TPI_CHECK(c.n_blocks > 0 && c.block_size > 0 && (c.block_size & (c.block_size - 1)) == 0 &&
                c.max_seq > 0 && c.max_rows > 0,
            "cuda " << op << ": KV pool of " << c.n_blocks << " blocks of " << c.block_size
                    << " (a power of two), max_seq " << c.max_seq << ", max_rows " << c.max_rows);
  TPI_CHECK(b.n_tokens == 0 || (b.slots != nullptr && b.positions != nullptr &&
                                b.block_tables != nullptr && b.table_stride > 0),
            "cuda " << op << ": rows, positions or the block table is null");
  gpu::KvPages p;
  p.block_tables = b.block_tables;
  p.table_stride = b.table_stride;
  p.n_rows = c.max_rows;
  p.n_blocks = c.n_blocks;
  p.block_size = c.block_size;
  p.max_seq = c.max_seq;
  return p;
}

std::string shape(const Tensor& t) {
  std::string s("[");
  s += std::to_string(t.rows);
  s += ", ";
  s += std::to_string(t.cols);
  s += "]";
  return s;
}

}  // namespace

void CudaBackend::embed(Tensor out, Tensor table, const int32_t* ids, int vocab_offset) {
  require(out, DType::bf16, "embed", "out");
  require(table, DType::bf16, "embed", "table");
  TPI_CHECK(out.cols == table.cols, "cuda embed: out " << shape(out) << " and table "
                                                       << shape(table) << " differ in width");
  TPI_CHECK(ids != nullptr || out.rows == 0, "cuda embed: ids is null");
  CUDA_LAUNCH(gpu::embed(bf(out), bf(table), ids, to_int(out.rows, "embed", "tokens"),
                         to_int(out.cols, "embed", "hidden"), vocab_offset,
                         to_int(table.rows, "embed", "vocab rows"), stream_));
}

void CudaBackend::rmsnorm(Tensor out, Tensor in, Tensor weight, float eps) {
  require(out, DType::bf16, "rmsnorm", "out");
  require(in, DType::bf16, "rmsnorm", "in");
  require(weight, DType::bf16, "rmsnorm", "weight");
  TPI_CHECK(out.rows == in.rows && out.cols == in.cols && weight.numel() == in.cols,
            "cuda rmsnorm: out " << shape(out) << ", in " << shape(in) << ", weight "
                                 << shape(weight) << " do not agree");
  CUDA_LAUNCH(gpu::rmsnorm(bf(out), bf(in), bf(weight), to_int(in.rows, "rmsnorm", "rows"),
                           to_int(in.cols, "rmsnorm", "cols"), eps, stream_));
}

void CudaBackend::add_rmsnorm(Tensor out, Tensor residual, Tensor delta, Tensor weight, float eps) {
  require(out, DType::bf16, "add_rmsnorm", "out");
  require(residual, DType::bf16, "add_rmsnorm", "residual");
  require(delta, DType::bf16, "add_rmsnorm", "delta");
  require(weight, DType::bf16, "add_rmsnorm", "weight");
  TPI_CHECK(out.rows == residual.rows && out.cols == residual.cols && delta.rows == residual.rows &&
                delta.cols == residual.cols && weight.numel() == residual.cols,
            "cuda add_rmsnorm: out " << shape(out) << ", residual " << shape(residual) << ", delta "
                                     << shape(delta) << ", weight " << shape(weight)
                                     << " do not agree");
  CUDA_LAUNCH(gpu::add_rmsnorm(bf(out), bf(residual), bf(delta), bf(weight),
                               to_int(residual.rows, "add_rmsnorm", "rows"),
                               to_int(residual.cols, "add_rmsnorm", "cols"), eps, stream_));
}

void CudaBackend::qk_norm_rope(Tensor q, Tensor k, Tensor q_norm, Tensor k_norm, const BatchView& b,
                               int head_dim, const RopeTable& rope, float eps) {
  require(q, DType::bf16, "qk_norm_rope", "q");
  require(k, DType::bf16, "qk_norm_rope", "k");
  TPI_CHECK(head_dim > 0 && head_dim % 2 == 0 && head_dim <= 256,
            "cuda qk_norm_rope: head_dim " << head_dim << " must be even and <= 256");
  TPI_CHECK(q.cols % head_dim == 0 && k.cols % head_dim == 0 && q.rows == b.n_tokens &&
                k.rows == b.n_tokens,
            "cuda qk_norm_rope: q " << shape(q) << " and k " << shape(k) << " must be [n_tokens="
                                    << b.n_tokens << ", heads * head_dim=" << head_dim << "]");
  TPI_CHECK(q_norm.empty() == k_norm.empty(),
            "cuda qk_norm_rope: q_norm and k_norm must both be given or both be empty");
  if (!q_norm.empty()) {
    require(q_norm, DType::bf16, "qk_norm_rope", "q_norm");
    require(k_norm, DType::bf16, "qk_norm_rope", "k_norm");
    TPI_CHECK(q_norm.numel() == head_dim && k_norm.numel() == head_dim,
              "cuda qk_norm_rope: q_norm " << shape(q_norm) << " / k_norm " << shape(k_norm)
                                           << " must hold head_dim=" << head_dim << " values");
  }
  TPI_CHECK(b.positions != nullptr || b.n_tokens == 0, "cuda qk_norm_rope: positions is null");
  TPI_CHECK(rope.inv_freq != nullptr, "cuda qk_norm_rope: inv_freq is null");
  CUDA_LAUNCH(gpu::qk_norm_rope(bf(q), bf(k), q_norm.empty() ? nullptr : bf(q_norm),
                                k_norm.empty() ? nullptr : bf(k_norm), b.positions, b.n_tokens,
                                to_int(q.cols / head_dim, "qk_norm_rope", "n_heads"),
                                to_int(k.cols / head_dim, "qk_norm_rope", "n_kv_heads"), head_dim,
                                rope.inv_freq, rope.attention_factor, eps, stream_));
}

void CudaBackend::add_bias(Tensor out, Tensor bias) {
  require(out, DType::bf16, "add_bias", "out");
  require(bias, DType::bf16, "add_bias", "bias");
  TPI_CHECK(bias.numel() == out.cols,
            "cuda add_bias: bias " << shape(bias) << " for out " << shape(out));
  CUDA_LAUNCH(gpu::add_bias(bf(out), bf(bias), out.rows, out.cols, stream_));
}

void CudaBackend::kv_append(const KvLayer& c, Tensor k, Tensor v, const BatchView& b) {
  TPI_CHECK(c.dtype == DType::bf16 && c.k != nullptr && c.v != nullptr,
            "cuda kv_append: the KV cache must be bf16 device memory (found " << dtype_name(c.dtype)
                                                                              << ")");
  require(k, DType::bf16, "kv_append", "k");
  require(v, DType::bf16, "kv_append", "v");
  const int64_t width = int64_t{c.n_kv_heads} * c.head_dim;
  TPI_CHECK(k.cols == width && v.cols == width && k.rows == b.n_tokens && v.rows == b.n_tokens,
            "cuda kv_append: k " << shape(k) << " / v " << shape(v) << " must be [n_tokens="
                                 << b.n_tokens << ", n_kv_heads * head_dim=" << width << "]");
  const gpu::KvPages pages = pages_of(c, b, "kv_append");
  CUDA_LAUNCH(gpu::kv_append(static_cast<gpu::bf16*>(c.k), static_cast<gpu::bf16*>(c.v), bf(k),
                             bf(v), b.slots, b.positions, pages, b.n_tokens,
                             to_int(width, "kv_append", "kv width"), stream_));
}

bool CudaBackend::use_prefill_kernel(int n_tokens, const KvLayer& cache) const {
  return gpu::attention_prefill_supports(cache.head_dim) &&
         n_tokens > std::max(cache.max_rows, kDecodeKernelMinTokens);
}

std::string CudaBackend::attention_kernel_for(int n_tokens, const KvLayer& cache,
                                              int n_heads) const {
  if (use_prefill_kernel(n_tokens, cache)) return "prefill";
  return "decode/" + std::to_string(gpu::attention_decode_splits(
                         n_tokens, n_heads, cache.n_kv_heads, cache.max_seq, sm_count_));
}

size_t CudaBackend::workspace_bytes(const KvLayer& cache, int n_heads) const {
  // The same sizing reserve_decode_workspace() applies, without allocating.
  size_t need = 0;
  const int t_max = decode_batch_bound(cache, sm_count_);
  for (int t = 1; t <= t_max; ++t) {
    const int splits =
        gpu::attention_decode_splits(t, n_heads, cache.n_kv_heads, cache.max_seq, sm_count_);
    need =
        std::max(need, gpu::attention_decode_workspace_bytes(t, n_heads, cache.head_dim, splits));
  }
  return blas_workspace_bytes_ + need;
}

// The flash-decoding partials. Reserved, once per cache shape, for the largest need of any
// decode batch this cache can see (a decode step has at most max_rows tokens) on the first
// attention call, whichever kernel that call uses: the eager prefill before a captured decode
// step is then enough, and a captured step never has to grow it.
void CudaBackend::reserve_decode_workspace(const KvLayer& cache, int n_heads, size_t need) {
  const WorkspaceKey key{n_heads, cache.n_kv_heads, cache.head_dim, cache.max_seq, cache.max_rows};
  if (key != workspace_key_ && !capturing_) {  // under capture only this call's need counts
    const int t_max = decode_batch_bound(cache, sm_count_);
    for (int t = 1; t <= t_max; ++t) {
      const int splits =
          gpu::attention_decode_splits(t, n_heads, cache.n_kv_heads, cache.max_seq, sm_count_);
      need =
          std::max(need, gpu::attention_decode_workspace_bytes(t, n_heads, cache.head_dim, splits));
    }
    workspace_key_ = key;
  }
  if (need <= attn_workspace_bytes_) return;
  TPI_CHECK(!capturing_,
            "cuda attention: the flash-decoding workspace ("
                << need
                << " bytes) was not reserved before capture; run one attention call with this KV "
                   "cache eagerly (the prefill, or one eager decode step) before capture_begin()");
  if (attn_workspace_ != nullptr) {
    release_graph();  // a captured step points at the old buffer: it must be captured again
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    CUDA_CHECK(cudaFree(attn_workspace_));
    attn_workspace_ = nullptr;
    attn_workspace_bytes_ = 0;
  }
  attn_workspace_ = static_cast<float*>(device_alloc(need, "flash-decoding workspace"));
  attn_workspace_bytes_ = need;
}

void CudaBackend::attention(Tensor out, Tensor q, const KvLayer& c, const BatchView& b, int n_heads,
                            int sliding_window, float scale) {
  require(out, DType::bf16, "attention", "out");
  require(q, DType::bf16, "attention", "q");
  TPI_CHECK(c.dtype == DType::bf16 && c.k != nullptr && c.v != nullptr,
            "cuda attention: the KV cache must be bf16 device memory (found " << dtype_name(c.dtype)
                                                                              << ")");
  TPI_CHECK(c.head_dim > 0 && c.head_dim % 8 == 0 && c.head_dim <= 256,
            "cuda attention: head_dim " << c.head_dim << " must be a multiple of 8 and <= 256");
  TPI_CHECK(
      c.n_kv_heads > 0 && n_heads > 0 && n_heads % c.n_kv_heads == 0,
      "cuda attention: n_heads " << n_heads << " is not a multiple of n_kv_heads " << c.n_kv_heads);
  const int64_t width = int64_t{n_heads} * c.head_dim;
  TPI_CHECK(q.cols == width && out.cols == width && q.rows == b.n_tokens && out.rows == b.n_tokens,
            "cuda attention: q " << shape(q) << " / out " << shape(out) << " must be [n_tokens="
                                 << b.n_tokens << ", n_heads * head_dim=" << width << "]");
  const gpu::KvPages pages = pages_of(c, b, "attention");
  if (b.n_tokens == 0) return;
  gpu::AttentionShape s;
  s.n_tokens = b.n_tokens;
  s.n_heads = n_heads;
  s.n_kv_heads = c.n_kv_heads;
  s.head_dim = c.head_dim;
  s.sliding_window = sliding_window;
  s.scale = scale;
  const auto* kc = static_cast<const gpu::bf16*>(c.k);
  const auto* vc = static_cast<const gpu::bf16*>(c.v);
  const bool prefill = use_prefill_kernel(b.n_tokens, c);
  const int splits = prefill ? 1
                             : gpu::attention_decode_splits(b.n_tokens, n_heads, c.n_kv_heads,
                                                            c.max_seq, sm_count_);
  reserve_decode_workspace(
      c, n_heads, gpu::attention_decode_workspace_bytes(b.n_tokens, n_heads, c.head_dim, splits));
  if (prefill) {
    CUDA_LAUNCH(
        gpu::attention_prefill(bf(out), bf(q), kc, vc, b.slots, b.positions, pages, s, stream_));
    return;
  }
  TPI_CHECK(b.n_tokens <= 65535, "cuda attention: " << b.n_tokens
                                                    << " tokens in one decode-kernel call (at "
                                                       "most 65535 with head_dim "
                                                    << c.head_dim << ")");
  CUDA_LAUNCH(gpu::attention_decode(bf(out), attn_workspace_, bf(q), kc, vc, b.slots, b.positions,
                                    pages, s, splits, stream_));
}

void CudaBackend::silu_mul(Tensor out, Tensor gate, Tensor up) {
  require(out, DType::bf16, "silu_mul", "out");
  require(gate, DType::bf16, "silu_mul", "gate");
  require(up, DType::bf16, "silu_mul", "up");
  TPI_CHECK(gate.numel() == up.numel() && out.numel() == gate.numel(),
            "cuda silu_mul: out " << shape(out) << ", gate " << shape(gate) << ", up " << shape(up)
                                  << " differ in size");
  CUDA_LAUNCH(gpu::silu_mul(bf(out), bf(gate), bf(up), out.numel(), stream_));
}

void CudaBackend::silu_mul_fused(Tensor out, Tensor gate_up) {
  require(out, DType::bf16, "silu_mul_fused", "out");
  require(gate_up, DType::bf16, "silu_mul_fused", "gate_up");
  TPI_CHECK(gate_up.rows == out.rows && gate_up.cols == 2 * out.cols,
            "cuda silu_mul_fused: out " << shape(out) << ", gate_up " << shape(gate_up)
                                        << " (expected [T, 2 * out.cols])");
  CUDA_LAUNCH(gpu::silu_mul_fused(bf(out), bf(gate_up), out.rows, out.cols, stream_));
}

void CudaBackend::copy_cols(Tensor out, Tensor in, int64_t first) {
  TPI_CHECK(
      out.rows == in.rows && out.dtype == in.dtype && first >= 0 && first + out.cols <= in.cols,
      "cuda copy_cols: columns [" << first << ", " << first + out.cols << ") of " << shape(in)
                                  << " into " << shape(out));
  if (out.rows == 0 || out.cols == 0) return;
  const size_t es = dtype_size(in.dtype);
  CUDA_CHECK(cudaMemcpy2DAsync(out.data, static_cast<size_t>(out.cols) * es,
                               static_cast<const char*>(in.data) + static_cast<size_t>(first) * es,
                               static_cast<size_t>(in.cols) * es,
                               static_cast<size_t>(out.cols) * es, static_cast<size_t>(out.rows),
                               cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackend::gather_rows(Tensor out, Tensor in, const int32_t* rows) {
  TPI_CHECK(out.dtype == in.dtype && out.cols == in.cols,
            "cuda gather_rows: out " << shape(out) << " " << dtype_name(out.dtype) << " and in "
                                     << shape(in) << " " << dtype_name(in.dtype) << " differ");
  TPI_CHECK(rows != nullptr || out.rows == 0, "cuda gather_rows: rows is null");
  CUDA_LAUNCH(gpu::gather_rows(out.data, in.data, rows, to_int(out.rows, "gather_rows", "rows"),
                               to_int(in.rows, "gather_rows", "input rows"),
                               static_cast<size_t>(in.cols) * dtype_size(in.dtype), stream_));
}

void CudaBackend::convert(Tensor out, Tensor in) {
  TPI_CHECK(out.numel() == in.numel(),
            "cuda convert: out " << shape(out) << " and in " << shape(in) << " differ in size");
  if (out.numel() == 0) return;
  if (out.dtype == in.dtype) {
    if (out.data != in.data) {
      CUDA_CHECK(cudaMemcpyAsync(out.data, in.data, in.bytes(), cudaMemcpyDeviceToDevice, stream_));
    }
    return;
  }
  TPI_CHECK(out.dtype != DType::i32 && in.dtype != DType::i32,
            "cuda convert: " << dtype_name(in.dtype) << " -> " << dtype_name(out.dtype)
                             << " (i32 converts only to i32)");
  const auto et = [](DType d) {
    return d == DType::f32 ? gpu::ElemType::f32
                           : (d == DType::f16 ? gpu::ElemType::f16 : gpu::ElemType::bf16);
  };
  CUDA_LAUNCH(gpu::convert(out.data, et(out.dtype), in.data, et(in.dtype), in.numel(), stream_));
}

void CudaBackend::argmax(Tensor index, Tensor value, Tensor logits, int vocab_offset) {
  require(logits, DType::f32, "argmax", "logits");
  require(index, DType::i32, "argmax", "index");
  TPI_CHECK(index.numel() >= logits.rows, "cuda argmax: index holds "
                                              << index.numel() << " values for " << logits.rows
                                              << " rows");
  if (!value.empty()) {
    require(value, DType::f32, "argmax", "value");
    TPI_CHECK(value.numel() >= logits.rows, "cuda argmax: value holds "
                                                << value.numel() << " values for " << logits.rows
                                                << " rows");
  }
  CUDA_LAUNCH(gpu::argmax_rows(
      static_cast<int32_t*>(index.data), value.empty() ? nullptr : static_cast<float*>(value.data),
      static_cast<const float*>(logits.data), to_int(logits.rows, "argmax", "rows"),
      to_int(logits.cols, "argmax", "cols"), vocab_offset, stream_));
}

// --- Mixture of experts -----------------------------------------------------------------------

void CudaBackend::moe_route(Tensor ids, Tensor weights, Tensor logits, bool normalize) {
  require(ids, DType::i32, "moe_route", "ids");
  require(weights, DType::f32, "moe_route", "weights");
  require(logits, DType::f32, "moe_route", "logits");
  TPI_CHECK(ids.rows == logits.rows && weights.rows == logits.rows && weights.cols == ids.cols &&
                ids.cols >= 1 && ids.cols <= 32 && ids.cols <= logits.cols && logits.cols <= 8192,
            "cuda moe_route: ids " << shape(ids) << ", weights " << shape(weights) << ", logits "
                                   << shape(logits) << " (k <= 32, experts <= 8192)");
  CUDA_LAUNCH(gpu::moe_route(
      static_cast<int32_t*>(ids.data), static_cast<float*>(weights.data),
      static_cast<const float*>(logits.data), to_int(logits.rows, "moe_route", "tokens"),
      static_cast<int>(logits.cols), static_cast<int>(ids.cols), normalize, stream_));
}

void CudaBackend::moe_experts(Tensor out, Tensor in, const MoeExperts& ex, Tensor ids,
                              Tensor weights, const MoeScratch& s) {
  require(out, DType::bf16, "moe_experts", "out");
  require(in, DType::bf16, "moe_experts", "in");
  require(ids, DType::i32, "moe_experts", "ids");
  require(weights, DType::f32, "moe_experts", "weights");
  const bool int8 = ex.gate.dtype == DType::i8;
  for (const Tensor* w : {&ex.gate, &ex.up, &ex.down}) {
    TPI_CHECK(w->dtype == ex.gate.dtype && (int8 || w->dtype == DType::bf16) &&
                  (!int8 || (w->scales != nullptr && w->group > 0 && w->group <= INT_MAX)),
              "cuda moe_experts: expert weights must be all bf16 or all int8 with scales, found "
                  << dtype_name(ex.gate.dtype) << "/" << dtype_name(ex.up.dtype) << "/"
                  << dtype_name(ex.down.dtype) << " (gate/up/down)");
  }
  const int64_t E = ex.n_experts;
  TPI_CHECK(E > 0 && ex.gate.rows % E == 0,
            "cuda moe_experts: " << ex.gate.rows << " gate rows for " << E << " experts");
  const int64_t I = ex.gate.rows / E, H = in.cols, T = in.rows, k = ids.cols;
  TPI_CHECK(out.rows == T && out.cols == H && ids.rows == T && weights.rows == T &&
                weights.cols == k && ex.up.rows == ex.gate.rows && ex.gate.cols == H &&
                ex.up.cols == H && ex.down.rows == E * H && ex.down.cols == I &&
                s.gate.dtype == DType::bf16 && s.y.dtype == DType::bf16 && s.gate.rows >= T * k &&
                s.gate.cols == I && s.y.rows >= T * k && s.y.cols == H,
            "cuda moe_experts: out " << shape(out) << ", in " << shape(in) << ", ids " << shape(ids)
                                     << ", gate " << shape(ex.gate) << ", down " << shape(ex.down)
                                     << " do not agree");
  const int t = to_int(T, "moe_experts", "tokens"), h = to_int(H, "moe_experts", "hidden"),
            i = to_int(I, "moe_experts", "expert width");
  const auto* route = static_cast<const int32_t*>(ids.data);
  const auto* w = static_cast<const float*>(weights.data);
  if (int8) {
    const auto q8 = [](const Tensor& m) {
      return gpu::Int8Experts{static_cast<const int8_t*>(m.data),
                              static_cast<const float*>(m.scales), static_cast<int>(m.group)};
    };
    CUDA_LAUNCH(gpu::moe_experts_int8(bf(out), bf(in), q8(ex.gate), q8(ex.up), q8(ex.down), route,
                                      w, bf(s.gate), bf(s.y), t, static_cast<int>(k), h, i,
                                      stream_));
    return;
  }
  CUDA_LAUNCH(gpu::moe_experts(bf(out), bf(in), bf(ex.gate), bf(ex.up), bf(ex.down), route, w,
                               bf(s.gate), bf(s.y), t, static_cast<int>(k), h, i, stream_));
}

}  // namespace tpinfer
