#include "backend/cpu/cpu_backend.h"

#include <omp.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "backend/cpu/guarded_memory.h"
#include "core/error.h"
#include "core/log.h"
#include "cpu/cpu_kernels.h"
#include "cpu/gemm.h"
#include "cpu/gemm_int8.h"
#include "cpu/moe.h"

namespace tpinfer {
namespace {

float* f32(const Tensor& t) {
  return static_cast<float*>(t.data);
}

void require_f32(const Tensor& t, const char* op, const char* what) {
  TPI_CHECK(t.dtype == DType::f32,
            "cpu " << op << ": " << what << " must be f32, found " << dtype_name(t.dtype));
}

// The shape checks of the paged ops (the table's entries are the engine's to check, per step).
void require_paged(const KvLayer& c, const BatchView& b, const char* op) {
  TPI_CHECK(c.block_size > 0 && c.n_blocks > 0, "cpu " << op << ": empty KV pool (" << c.n_blocks
                                                       << " blocks of " << c.block_size << ")");
  TPI_CHECK(b.n_tokens == 0 || (b.block_tables != nullptr && b.slots != nullptr &&
                                b.positions != nullptr && b.table_stride > 0),
            "cpu " << op << ": the batch has no block table, rows or positions");
}

// The matmul path: the portable kernel in deterministic mode, TPINFER_CPU_ISA when set, else the
// fastest this CPU supports.
cpu::Isa pick_isa(bool deterministic) {
  if (deterministic) return cpu::Isa::portable;
  const char* env = std::getenv("TPINFER_CPU_ISA");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "auto") == 0) return cpu::best_isa();
  cpu::Isa isa{};
  TPI_CHECK(cpu::parse_isa(env, &isa),
            "TPINFER_CPU_ISA: expected auto, portable, avx2, avx512 or "
            "avx512bf16, found '"
                << env << "'");
  TPI_CHECK(cpu::isa_supported(isa), "TPINFER_CPU_ISA=" << env
                                                        << ": this CPU (or build) cannot run it; "
                                                           "the best it can is "
                                                        << cpu::isa_name(cpu::best_isa()));
  return isa;
}

// The cpus this rank's threads may run on: OpenMP's places when it binds threads (by then the
// calling thread itself is pinned to the first place), else the affinity mask.
std::vector<int> rank_cpus() {
  std::vector<int> cpus;
  if (omp_get_proc_bind() != omp_proc_bind_false && omp_get_num_places() > 0) {
    for (int p = 0; p < omp_get_num_places(); ++p) {
      std::vector<int> ids(omp_get_place_num_procs(p));
      omp_get_place_proc_ids(p, ids.data());
      cpus.insert(cpus.end(), ids.begin(), ids.end());
    }
  } else {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
      for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) cpus.push_back(c);
    }
  }
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

// "on cpu(s) 0-1 (2), threads bound close": the rank's cpus and OpenMP's binding.
std::string thread_layout() {
  const std::vector<int> cpus = rank_cpus();
  std::ostringstream os;
  os << "on cpu(s) ";
  for (size_t i = 0; i < cpus.size(); ++i) {
    size_t e = i;
    while (e + 1 < cpus.size() && cpus[e + 1] == cpus[e] + 1) ++e;
    os << (i > 0 ? "," : "") << cpus[i];
    if (e > i) os << "-" << cpus[e];
    i = e;
  }
  static const char* const kBind[] = {"not bound", "bound", "bound master", "bound close",
                                      "bound spread"};
  const int b = static_cast<int>(omp_get_proc_bind());
  os << " (" << cpus.size() << "), threads " << (b >= 0 && b <= 4 ? kBind[b] : "bound");
  return os.str();
}

constexpr size_t kHugePage = size_t{2} << 20;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& opts)
      : weight_dtype_(opts.stored_weight_dtype == DType::bf16 ? DType::bf16 : DType::f32) {
    if (opts.n_threads > 0) omp_set_num_threads(opts.n_threads);
    n_threads_ = omp_get_max_threads();
    isa_ = pick_isa(opts.deterministic);
    // Every int8 path returns the portable path's bits (gemm_int8.h), so deterministic mode keeps
    // the fastest one; TPINFER_CPU_ISA still picks it (portable, avx2, avx512*: avx512vnni).
    int8_ = opts.int8_weights;
    int8_path_ = cpu::int8_path_for(pick_isa(false));
    const int cpus = static_cast<int>(rank_cpus().size());
    if (cpus > 0 && n_threads_ > cpus) {
      TPI_LOG_WARN << "cpu backend: " << n_threads_ << " OpenMP threads but this rank may run on "
                   << cpus << " cpu(s) only (launcher binding?): threads will share cores; "
                   << "use scripts/mpirun.sh or --bind-to none / --map-by slot:PE=" << n_threads_;
    }
    const char* guard = std::getenv("TPINFER_CPU_GUARD_MEMORY");
    if (opts.guard_memory || (guard != nullptr && std::strcmp(guard, "1") == 0)) {
      guard_ = std::make_unique<cpu::GuardedMemory>();
    }
  }
  ~CpuBackend() override {
    if (!guard_) {
      for (auto& [p, bytes] : sizes_) std::free(p);
    }
  }

  BackendKind kind() const override { return BackendKind::cpu; }
  std::string describe() const override {
    return "cpu (" + std::to_string(n_threads_) + " OpenMP thread" + (n_threads_ == 1 ? "" : "s") +
           " " + thread_layout() + ", " + dtype_name(weight_dtype_) + " weights, matmul " +
           cpu::isa_name(isa_) + (isa_ == cpu::Isa::portable ? " (deterministic)" : "") +
           (int8_ ? std::string(", int8 linear weights, int8 matmul ") +
                        cpu::int8_path_name(int8_path_)
                  : std::string()) +
           (guard_ ? ", guarded memory" : "") + ")";
  }
  DType weight_dtype() const override { return weight_dtype_; }
  DType act_dtype() const override { return DType::f32; }
  DeviceMemory memory() const override {
    struct sysinfo si {};
    sysinfo(&si);
    DeviceMemory m;
    m.total_bytes = static_cast<size_t>(si.totalram) * si.mem_unit;
    m.free_bytes = static_cast<size_t>(si.freeram + si.bufferram) * si.mem_unit;
    return m;
  }

  void* alloc(size_t bytes) override {
    if (guard_) {
      void* p = guard_->alloc(bytes);
      sizes_[p] = bytes;
      allocated_ += bytes;
      return p;
    }
    // Big buffers (weights, KV cache) on 2 MiB boundaries with transparent huge pages asked for
    // (the kernel's default is often "madvise"): a decode streams every weight once per token,
    // and with 4 KiB pages each weight row of a 1.1B model is its own page and TLB miss, which
    // measured about 10% slower.
    const size_t align = bytes >= kHugePage ? kHugePage : 64;
    const size_t rounded = std::max<size_t>(align, (bytes + align - 1) / align * align);
    void* p = std::aligned_alloc(align, rounded);
    TPI_CHECK(p != nullptr, "cpu backend: out of host memory allocating " << bytes << " bytes");
    if (align == kHugePage) madvise(p, rounded, MADV_HUGEPAGE);  // a hint: failure is harmless
    std::memset(p, 0, rounded);  // touch now, not in the decode loop
    sizes_[p] = bytes;
    allocated_ += bytes;
    return p;
  }
  void free(void* p) override {
    if (p == nullptr) return;
    auto it = sizes_.find(p);
    if (it != sizes_.end()) {
      allocated_ -= it->second;
      sizes_.erase(it);
    }
    if (!guard_) std::free(p);
  }
  size_t allocated_bytes() const override { return allocated_; }
  bool host_accessible() const override { return !guard_; }
  void copy_to_device(void* dst, const void* src, size_t bytes) override {
    Scope open(guard_.get());
    std::memcpy(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    Scope open(guard_.get());
    std::memcpy(dst, src, bytes);
  }
  void copy_device(void* dst, const void* src, size_t bytes) override {
    Scope open(guard_.get());
    if (dst != src) std::memmove(dst, src, bytes);
  }
  void upload_weight(Tensor dst, const void* src, DType src_dtype) override {
    Scope open(guard_.get());
    const int64_t n = dst.numel();
    const auto* h = static_cast<const uint16_t*>(src);
    if (dst.dtype == DType::bf16) {
      auto* out = static_cast<uint16_t*>(dst.data);
      switch (src_dtype) {
        case DType::bf16:
          std::memcpy(out, src, sizeof(uint16_t) * n);
          return;
        case DType::f32: {
          const auto* f = static_cast<const float*>(src);
          for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(f[i]);
          return;
        }
        case DType::f16:
          for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(f16_to_f32(h[i]));
          return;
        case DType::i32:
        case DType::i8:
          break;
      }
      TPI_FAIL("cpu upload_weight: " << dtype_name(src_dtype)
                                     << " is not a float weight dtype (int8: upload_int8_weight)");
    }
    require_f32(dst, "upload_weight", "destination");
    float* out = f32(dst);
    switch (src_dtype) {
      case DType::f32:
        std::memcpy(out, src, sizeof(float) * n);
        return;
      case DType::bf16:
        for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(h[i]);
        return;
      case DType::f16:
        for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(h[i]);
        return;
      case DType::i32:
      case DType::i8:
        break;
    }
    TPI_FAIL("cpu upload_weight: " << dtype_name(src_dtype)
                                   << " is not a float weight dtype (int8: upload_int8_weight)");
  }
  bool supports_int8_weights() const override { return true; }
  void upload_int8_weight(Tensor dst, const int8_t* q, const float* scales) override {
    Scope open(guard_.get());
    TPI_CHECK(dst.dtype == DType::i8 && dst.scales != nullptr && dst.group > 0,
              "cpu upload_int8_weight: destination must be an i8 tensor with scales");
    std::memcpy(dst.data, q, static_cast<size_t>(dst.numel()));
    std::memcpy(dst.scales, scales, sizeof(float) * dst.rows * dst.n_groups());
  }
  void synchronize() override {}

  void embed(Tensor out, Tensor table, const int32_t* ids, int vocab_offset) override {
    Scope open(guard_.get());
    require_f32(out, "embed", "out");
    TPI_CHECK(out.cols == table.cols,
              "cpu embed: out has " << out.cols << " columns, table " << table.cols);
    if (table.dtype == DType::bf16) {
      cpu::embed_bf16(f32(out), static_cast<const uint16_t*>(table.data), ids,
                      static_cast<int>(out.rows), static_cast<int>(table.rows),
                      static_cast<int>(table.cols), vocab_offset);
      return;
    }
    require_f32(table, "embed", "table");
    cpu::embed(f32(out), f32(table), ids, static_cast<int>(out.rows), static_cast<int>(table.rows),
               static_cast<int>(table.cols), vocab_offset);
  }
  void rmsnorm(Tensor out, Tensor in, Tensor weight, float eps) override {
    Scope open(guard_.get());
    check_norm("rmsnorm", out, in, weight);
    cpu::rmsnorm(f32(out), f32(in), f32(weight), static_cast<int>(in.rows),
                 static_cast<int>(in.cols), eps);
  }
  void add_rmsnorm(Tensor out, Tensor residual, Tensor delta, Tensor weight, float eps) override {
    Scope open(guard_.get());
    check_norm("add_rmsnorm", out, residual, weight);
    TPI_CHECK(delta.rows == residual.rows && delta.cols == residual.cols,
              "cpu add_rmsnorm: delta shape differs from residual");
    cpu::add_rmsnorm(f32(out), f32(residual), f32(delta), f32(weight),
                     static_cast<int>(residual.rows), static_cast<int>(residual.cols), eps);
  }
  void matmul(Tensor out, Tensor in, Tensor weight) override {
    Scope open(guard_.get());
    matmul_open(out, in, weight);
  }
  // matmul() inside an op that has opened guarded memory already.
  void matmul_open(Tensor out, Tensor in, Tensor weight) {
    require_f32(out, "matmul", "out");
    require_f32(in, "matmul", "in");
    TPI_CHECK(in.cols == weight.cols && out.rows == in.rows && out.cols == weight.rows,
              "cpu matmul: shapes out[" << out.rows << "," << out.cols << "] in[" << in.rows << ","
                                        << in.cols << "] weight[" << weight.rows << ","
                                        << weight.cols << "] do not agree");
    const int T = static_cast<int>(in.rows), N = static_cast<int>(weight.rows),
              K = static_cast<int>(in.cols);
    switch (weight.dtype) {
      case DType::f32:
        cpu::gemm_f32(isa_, f32(out), f32(in), f32(weight), T, N, K);
        return;
      case DType::bf16:
        cpu::gemm_bf16(isa_, f32(out), f32(in), static_cast<const uint16_t*>(weight.data), T, N, K);
        return;
      case DType::i8:
        TPI_CHECK(weight.scales != nullptr &&
                      (weight.group == weight.cols || weight.group % cpu::kInt8Block == 0),
                  "cpu matmul: int8 weight needs scales and a group of cols or a multiple of "
                      << cpu::kInt8Block << ", found group " << weight.group);
        cpu::gemm_int8(int8_path_, f32(out), f32(in), static_cast<const int8_t*>(weight.data),
                       static_cast<const float*>(weight.scales), static_cast<int>(weight.group), T,
                       N, K);
        return;
      case DType::f16:
      case DType::i32:
        TPI_FAIL("cpu matmul: weight dtype " << dtype_name(weight.dtype) << " is not supported");
    }
  }
  void qk_norm_rope(Tensor q, Tensor k, Tensor q_norm, Tensor k_norm, const BatchView& b,
                    int head_dim, const RopeTable& rope, float eps) override {
    Scope open(guard_.get());
    require_f32(q, "qk_norm_rope", "q");
    require_f32(k, "qk_norm_rope", "k");
    TPI_CHECK(head_dim > 0 && head_dim % 2 == 0 && q.cols % head_dim == 0 &&
                  k.cols % head_dim == 0 && q.rows == b.n_tokens && k.rows == b.n_tokens,
              "cpu qk_norm_rope: bad shapes (head_dim " << head_dim << ")");
    TPI_CHECK(rope.inv_freq != nullptr, "cpu qk_norm_rope: inv_freq is null");
    cpu::qk_norm_rope(f32(q), f32(k), q_norm.empty() ? nullptr : f32(q_norm),
                      k_norm.empty() ? nullptr : f32(k_norm), b.positions, b.n_tokens,
                      static_cast<int>(q.cols / head_dim), static_cast<int>(k.cols / head_dim),
                      head_dim, rope.inv_freq, rope.attention_factor, eps);
  }
  void add_bias(Tensor out, Tensor bias) override {
    Scope open(guard_.get());
    require_f32(out, "add_bias", "out");
    require_f32(bias, "add_bias", "bias");
    TPI_CHECK(bias.numel() == out.cols,
              "cpu add_bias: bias of " << bias.numel() << " values for " << out.cols << " columns");
    cpu::add_bias(f32(out), f32(bias), out.rows, out.cols);
  }
  void kv_append(const KvLayer& c, Tensor k, Tensor v, const BatchView& b) override {
    Scope open(guard_.get());
    TPI_CHECK(c.dtype == DType::f32, "cpu kv_append: cache must be f32");
    TPI_CHECK(k.cols == int64_t{c.n_kv_heads} * c.head_dim && v.cols == k.cols,
              "cpu kv_append: k/v have " << k.cols << " columns, cache expects "
                                         << c.n_kv_heads * c.head_dim);
    require_paged(c, b, "kv_append");
    cpu::kv_append(static_cast<float*>(c.k), static_cast<float*>(c.v), f32(k), f32(v), b.slots,
                   b.positions, b.block_tables, b.table_stride, b.n_tokens, c.block_size,
                   c.n_kv_heads * c.head_dim);
  }
  void attention(Tensor out, Tensor q, const KvLayer& c, const BatchView& b, int n_heads,
                 int sliding_window, float scale) override {
    Scope open(guard_.get());
    TPI_CHECK(n_heads % c.n_kv_heads == 0 && q.cols == int64_t{n_heads} * c.head_dim &&
                  out.cols == q.cols && c.head_dim <= 512,
              "cpu attention: bad shapes (n_heads " << n_heads << ", n_kv_heads " << c.n_kv_heads
                                                    << ", head_dim " << c.head_dim << ")");
    require_paged(c, b, "attention");
    cpu::attention(f32(out), f32(q), static_cast<const float*>(c.k), static_cast<const float*>(c.v),
                   b.slots, b.positions, b.block_tables, b.table_stride, b.n_tokens, n_heads,
                   c.n_kv_heads, c.head_dim, c.block_size, sliding_window, scale);
  }
  void silu_mul(Tensor out, Tensor gate, Tensor up) override {
    Scope open(guard_.get());
    TPI_CHECK(gate.numel() == up.numel() && out.numel() == gate.numel(),
              "cpu silu_mul: sizes differ");
    cpu::silu_mul(f32(out), f32(gate), f32(up), out.numel());
  }
  void silu_mul_fused(Tensor out, Tensor gate_up) override {
    Scope open(guard_.get());
    TPI_CHECK(gate_up.rows == out.rows && gate_up.cols == 2 * out.cols,
              "cpu silu_mul_fused: out [" << out.rows << ", " << out.cols << "], gate_up ["
                                          << gate_up.rows << ", " << gate_up.cols << "]");
    cpu::silu_mul_fused(f32(out), f32(gate_up), out.rows, out.cols);
  }
  void copy_cols(Tensor out, Tensor in, int64_t first) override {
    Scope open(guard_.get());
    TPI_CHECK(
        out.rows == in.rows && out.dtype == in.dtype && first >= 0 && first + out.cols <= in.cols,
        "cpu copy_cols: columns [" << first << ", " << first + out.cols << ") of [" << in.rows
                                   << ", " << in.cols << "] into [" << out.rows << ", " << out.cols
                                   << "]");
    const size_t es = dtype_size(in.dtype);
    for (int64_t r = 0; r < out.rows; ++r) {
      std::memcpy(static_cast<char*>(out.data) + static_cast<size_t>(r * out.cols) * es,
                  static_cast<const char*>(in.data) + static_cast<size_t>(r * in.cols + first) * es,
                  static_cast<size_t>(out.cols) * es);
    }
  }
  void gather_rows(Tensor out, Tensor in, const int32_t* rows) override {
    Scope open(guard_.get());
    TPI_CHECK(out.cols == in.cols && out.dtype == in.dtype, "cpu gather_rows: shapes differ");
    const size_t row_bytes = static_cast<size_t>(in.cols) * dtype_size(in.dtype);
    for (int64_t i = 0; i < out.rows; ++i) {
      TPI_CHECK(rows[i] >= 0 && rows[i] < in.rows,
                "cpu gather_rows: row " << rows[i] << " out of range");
      std::memcpy(static_cast<char*>(out.data) + i * row_bytes,
                  static_cast<const char*>(in.data) + rows[i] * row_bytes, row_bytes);
    }
  }
  void convert(Tensor out, Tensor in) override {
    Scope open(guard_.get());
    TPI_CHECK(out.numel() == in.numel(), "cpu convert: sizes differ");
    TPI_CHECK(out.dtype == DType::f32 && in.dtype == DType::f32,
              "cpu convert: only f32 -> f32 on the CPU backend");
    if (out.data != in.data) std::memcpy(out.data, in.data, in.bytes());
  }

  void moe_route(Tensor ids, Tensor weights, Tensor logits, bool normalize) override {
    Scope open(guard_.get());
    require_f32(logits, "moe_route", "logits");
    require_f32(weights, "moe_route", "weights");
    TPI_CHECK(ids.dtype == DType::i32, "cpu moe_route: ids must be i32");
    TPI_CHECK(ids.rows == logits.rows && weights.rows == logits.rows && weights.cols == ids.cols &&
                  ids.cols >= 1 && ids.cols <= logits.cols && ids.cols <= 64,
              "cpu moe_route: ids [" << ids.rows << "," << ids.cols << "], weights ["
                                     << weights.rows << "," << weights.cols << "] for logits ["
                                     << logits.rows << "," << logits.cols << "] (k <= 64)");
    cpu::moe_route(static_cast<int32_t*>(ids.data), f32(weights), f32(logits),
                   static_cast<int>(logits.rows), static_cast<int>(logits.cols),
                   static_cast<int>(ids.cols), normalize);
  }

  void moe_experts(Tensor out, Tensor in, const MoeExperts& ex, Tensor ids, Tensor weights,
                   const MoeScratch& s) override {
    Scope open(guard_.get());
    require_f32(out, "moe_experts", "out");
    require_f32(in, "moe_experts", "in");
    const int T = static_cast<int>(in.rows), H = static_cast<int>(in.cols);
    const int k = static_cast<int>(ids.cols), E = ex.n_experts;
    TPI_CHECK(E > 0 && ex.gate.rows % E == 0,
              "cpu moe_experts: " << ex.gate.rows << " gate rows for " << E << " experts");
    const int64_t I = ex.gate.rows / E;
    const int R = T * k;
    TPI_CHECK(out.rows == T && out.cols == H && ids.rows == T && weights.rows == T &&
                  weights.cols == k && k <= 64 && ex.up.rows == ex.gate.rows && ex.gate.cols == H &&
                  ex.down.rows == int64_t{E} * H && ex.down.cols == I && s.x.rows >= R &&
                  s.gate.rows >= R && s.up.rows >= R && s.y.rows >= R && s.gate.cols == I &&
                  s.y.cols == H,
              "cpu moe_experts: shapes do not agree (T " << T << ", H " << H << ", k " << k
                                                         << ", E " << E << ", I " << I << ")");
    const auto* id = static_cast<const int32_t*>(ids.data);
    TPI_CHECK(cpu::moe_group(s.order, s.offsets, id, T, k, E),
              "cpu moe_experts: an expert id outside [0, " << E << ")");
    const size_t row_bytes = sizeof(float) * static_cast<size_t>(H);
    std::vector<int> active;  // experts at least one row picked; the others are not read
    for (int e = 0; e < E; ++e) {
      if (s.offsets[e + 1] > s.offsets[e]) active.push_back(e);
    }
    const auto run = [&](int e) {
      const int first = s.offsets[e], n = s.offsets[e + 1] - first;
      Tensor x = s.x.slice_rows(first, n), g = s.gate.slice_rows(first, n);
      Tensor u = s.up.slice_rows(first, n), y = s.y.slice_rows(first, n);
      for (int r = 0; r < n; ++r) {
        std::memcpy(f32(x) + static_cast<int64_t>(r) * H,
                    f32(in) + static_cast<int64_t>(s.order[first + r] / k) * H, row_bytes);
      }
      matmul_open(g, x, ex.gate.slice_rows(e * I, I));
      matmul_open(u, x, ex.up.slice_rows(e * I, I));
      cpu::silu_mul(f32(g), f32(g), f32(u), g.numel());
      matmul_open(y, g, ex.down.slice_rows(int64_t{e} * H, H));
    };
    // With at least 4 active experts per thread (a prefill routes its rows to most experts, a
    // few rows each; 2-thread decode), the threads take whole experts: one fork/join per layer
    // instead of three per expert, which on a loaded node each wait for the slowest thread. The
    // matmuls inside then run on one thread (nested regions inactive) and give the same bits as
    // threaded (gemm.h). Fewer experts than that (decode on many cores): each matmul is threaded.
    const int threads = omp_get_max_threads();
    if (threads > 1 && omp_get_max_active_levels() < 2 &&
        static_cast<int>(active.size()) >= 4 * threads) {
      std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1)
      for (size_t i = 0; i < active.size(); ++i) {
        try {
          run(active[i]);
        } catch (...) {
#pragma omp critical(tpinfer_moe_error)
          if (!error) error = std::current_exception();
        }
      }
      if (error) std::rethrow_exception(error);
    } else {
      for (int e : active) run(e);
    }
    cpu::moe_combine(f32(out), f32(s.y), f32(weights), id, s.order, T, k, H, R);
  }

 private:
  static void check_norm(const char* op, const Tensor& out, const Tensor& in, const Tensor& w) {
    require_f32(out, op, "out");
    require_f32(in, op, "in");
    require_f32(w, op, "weight");
    TPI_CHECK(out.rows == in.rows && out.cols == in.cols && w.numel() == in.cols,
              "cpu " << op << ": shapes out[" << out.rows << "," << out.cols << "] in[" << in.rows
                     << "," << in.cols << "] weight[" << w.numel() << "] differ");
  }

  using Scope = cpu::GuardedMemory::Scope;  // every op and copy opens guarded memory

  DType weight_dtype_ = DType::f32;
  int n_threads_ = 1;
  cpu::Isa isa_ = cpu::Isa::portable;  // the matmul path
  bool int8_ = false;                  // int8 linear weights
  cpu::Int8Path int8_path_ = cpu::Int8Path::portable;
  std::unique_ptr<cpu::GuardedMemory> guard_;  // the guarded test mode, else null
  size_t allocated_ = 0;
  std::unordered_map<void*, size_t> sizes_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& opts) {
  return std::make_unique<CpuBackend>(opts);
}

}  // namespace tpinfer
