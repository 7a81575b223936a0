#include "runtime/job_setup.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "backend/profiling_backend.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "core/watchdog.h"
#include "runtime/tp_layout.h"

namespace tpinfer {
namespace {

using json = nlohmann::json;

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  TPI_CHECK(in, path << ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    TPI_FAIL(path << ": not valid JSON: " << e.what());
  }
}

// --dummy-weights takes a Hugging Face directory (or its config.json) for the shapes; the dtype
// is the one asked for, else the config's torch_dtype (transformers 5: dtype), else bf16.
ModelConfig dummy_model_config(const std::string& model, DTypeChoice choice, DType* dtype) {
  std::string dir = model, config = model + "/config.json";
  if (model.size() > 5 && model.substr(model.size() - 5) == ".json") {
    config = model;
    const size_t slash = model.find_last_of('/');
    dir = slash == std::string::npos ? "." : model.substr(0, slash);
  }
  const json cfg = read_json_file(config);
  *dtype = DType::bf16;
  if (std::optional<DType> asked = to_dtype(choice)) {
    *dtype = *asked;
  } else {
    for (const char* key : {"torch_dtype", "dtype"}) {
      if (cfg.contains(key) && cfg[key].is_string()) {
        try {
          *dtype = parse_dtype(cfg[key].get<std::string>());
        } catch (const Error&) {
        }
        break;
      }
    }
  }
  json gen = nullptr;
  const std::string gen_path = dir + "/generation_config.json";
  if (std::ifstream(gen_path)) gen = read_json_file(gen_path);
  return ModelConfig::from_hf(cfg, gen, config);
}

BackendKind pick_backend(BackendChoice choice) {
  switch (choice) {
    case BackendChoice::cpu:
      return BackendKind::cpu;
    case BackendChoice::cuda:
      TPI_CHECK(backend_available(BackendKind::cuda),
                "backend: cuda was requested but this tpinfer was built without CUDA; use "
                "backend: cpu (or rebuild where nvcc is installed)");
      TPI_CHECK(cuda_device_count() > 0,
                "backend: cuda was requested but no CUDA device is visible to this process");
      return BackendKind::cuda;
    case BackendChoice::auto_:
      return backend_available(BackendKind::cuda) && cuda_device_count() > 0 ? BackendKind::cuda
                                                                             : BackendKind::cpu;
  }
  return BackendKind::cpu;
}

CommKind pick_comm(CommChoice choice, BackendKind backend, int tp) {
  if (tp == 1) return CommKind::null;
  switch (choice) {
    case CommChoice::mpi:
      return CommKind::mpi;
    case CommChoice::nccl:
      return CommKind::nccl;
    case CommChoice::auto_:
      return backend == BackendKind::cuda ? CommKind::nccl : CommKind::mpi;
  }
  return CommKind::mpi;
}

}  // namespace

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double idx = p * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(idx)), hi = static_cast<size_t>(std::ceil(idx));
  return v[lo] + (v[hi] - v[lo]) * (idx - static_cast<double>(lo));
}

std::vector<int32_t> tokenize_prompt(const Tokenizer& tok, const std::string& prompt, bool chat,
                                     const std::vector<ChatMessage>& messages,
                                     const std::string& system, bool enable_thinking,
                                     const std::string& tools_json) {
  if (!chat) return tok.encode(prompt, true);
  std::vector<ChatMessage> msgs;
  if (!system.empty()) msgs.push_back({"system", system});
  if (messages.empty()) {
    msgs.push_back({"user", prompt});
  } else {
    msgs.insert(msgs.end(), messages.begin(), messages.end());
  }
  return tok.encode(tok.apply_chat_template(msgs, true, enable_thinking, tools_json), false);
}

EngineShape size_engine(const RunConfig& cfg, const ModelConfig& model, int max_needed,
                        int64_t max_requests, int dp) {
  constexpr int kMaxTokensPerForward = 512;
  constexpr int kServerDefaultMaxSeq = 4096;
  EngineShape shape;
  if (cfg.max_seq > 0) {
    shape.max_seq = cfg.max_seq;
  } else if (max_needed > 0) {
    shape.max_seq = std::max(16, (max_needed + 15) / 16 * 16);
  } else {
    const int positions =
        model.max_position_embeddings > 0 ? model.max_position_embeddings : kServerDefaultMaxSeq;
    shape.max_seq = std::max(16, std::min(positions, kServerDefaultMaxSeq));
  }
  int64_t slots = cfg.batch_size;
  if (max_requests > 0) slots = std::min<int64_t>(slots, (max_requests + dp - 1) / dp);
  shape.n_slots = static_cast<int>(std::max<int64_t>(1, slots));
  shape.max_tokens = std::max(shape.n_slots, std::min(shape.max_seq, kMaxTokensPerForward));
  shape.max_logit_rows = shape.n_slots;
  if (max_requests < 0) {
    // A server scores prompts (echo + logprobs: a logits row per prompt token), in chunks of up
    // to this many rows beside the decode rows; the memory plan counts them (vocab floats each,
    // on the device and the host).
    constexpr int kScoringRows = 64;
    shape.max_logit_rows += std::min(kScoringRows, shape.max_tokens);
  }
  return shape;
}

int sampleable_vocab(const ModelConfig& config, const Tokenizer& tokenizer) {
  const int n = tokenizer.vocab_size();
  TPI_CHECK(n <= config.vocab_size,
            "tokenizer has " << n << " ids but the model's vocab_size is " << config.vocab_size
                             << " (config.json): ids " << config.vocab_size << ".." << n - 1
                             << " have no logits; is this the model's own tokenizer?");
  return n;
}

ModelHandle open_model(World& world, const RunConfig& cfg) {
  watch_phase(Phase::load);
  world.set_layout(cfg.tp, cfg.pp);
  const int tp = world.tp(), pp = world.pp();
  TPI_CHECK(pp == 1 || cfg.layers == 0,
            "layers=" << cfg.layers << " with pp=" << pp << ": cutting the model short is not "
                      << "supported across pipeline stages; drop 'layers' or run pp=1");
  ModelHandle m;
  // Every rank reads the same files, so these errors are the same on every rank.
  if (cfg.dummy_weights) {
    m.config = dummy_model_config(cfg.model, cfg.dtype, &m.weight_dtype);
    if (m.weight_dtype == DType::i8) {
      // As convert_hf.py --dtype int8 writes a bf16 checkpoint: blocks of 32, bf16 embedding.
      m.weight_dtype = DType::bf16;
      m.int8_group = 32;
    }
  } else {
    m.dir = std::make_unique<ModelDir>(ModelDir::open(cfg.model));
    check_job_tp(*m.dir, tp);
    check_job_pp(*m.dir, tp, pp);
    m.config = m.dir->config;
    m.weight_dtype = m.dir->float_dtype;
    m.int8_group = m.dir->int8_group;
  }
  m.config.check_tp(tp);
  m.dims = ShardDims::make(m.config, tp, world.tp_rank(), cfg.layers);
  if (pp > 1) {  // the directory's split, or (dummy weights) the balanced one
    const StageSplit split = m.dir ? m.dir->split : StageSplit::balanced(m.config.n_layers, pp);
    m.dims.set_stage(split, world.pp_rank(), m.config.tie_word_embeddings);
  }

  // Only replica leaders need the tokenizer; agree that it loaded.
  std::string err;
  if (world.replica_rank() == 0) {
    try {
      const std::string tok_dir = !cfg.tokenizer.empty() ? cfg.tokenizer
                                  : m.dir                ? m.dir->tokenizer_dir
                                                         : cfg.model;
      m.tokenizer = Tokenizer::from_dir(tok_dir);
      m.sample_vocab = sampleable_vocab(m.config, *m.tokenizer);
      if (m.sample_vocab < m.config.vocab_size && world.rank() == 0) {
        TPI_LOG_INFO << "vocabulary: the model has " << m.config.vocab_size
                     << " logits, the tokenizer " << m.sample_vocab << " ids; ids "
                     << m.sample_vocab << ".." << m.config.vocab_size - 1
                     << " (padding) are never sampled";
      }
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  world.agree(err.empty(), err);

  if (!cfg.ignore_eos) {
    m.stop_ids.assign(m.config.eos_token_ids.begin(), m.config.eos_token_ids.end());
    // A BOS in the output means a new document began: llama2.c-style models end stories so.
    if (m.config.bos_token_id >= 0) m.stop_ids.push_back(m.config.bos_token_id);
    if (m.tokenizer) {
      for (int32_t id : m.tokenizer->eos_ids()) m.stop_ids.push_back(id);
    }
    std::sort(m.stop_ids.begin(), m.stop_ids.end());
    m.stop_ids.erase(std::unique(m.stop_ids.begin(), m.stop_ids.end()), m.stop_ids.end());
  }
  return m;
}

EngineHandle start_engine(World& world, const RunConfig& cfg, const ModelHandle& model,
                          const EngineShape& asked_shape) {
  EngineShape shape = asked_shape;
  shape.int8_group = model.int8_group;
  watch_phase(Phase::load);
  EngineHandle e;
  const bool printer = world.rank() == 0;
  e.backend_kind = pick_backend(cfg.backend);
  BackendOptions bopts;
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  // threads: 0 = OMP_NUM_THREADS when set (the launchers set it: scripts/mpirun.sh, the sbatch
  // scripts from --cpus-per-task), else the node's cores shared among its ranks.
  const char* omp_env = std::getenv("OMP_NUM_THREADS");
  const bool omp_set = omp_env != nullptr && std::atoi(omp_env) > 0;
  bopts.n_threads = cfg.threads > 0 ? cfg.threads
                    : omp_set       ? std::atoi(omp_env)
                                    : std::max(1, hw / world.local_size());
  bopts.device_ordinal =
      e.backend_kind == BackendKind::cuda
          ? pick_device_ordinal(world.local_rank(), world.local_size(), cfg.allow_gpu_sharing)
          : 0;
  bopts.stored_weight_dtype = model.weight_dtype;
  bopts.int8_weights = model.int8_group >= 0;
  bopts.deterministic = cfg.deterministic;
  e.backend = make_backend(e.backend_kind, bopts);
  if (op_profiling_requested()) {
    e.backend =
        make_profiling_backend(std::move(e.backend), "rank " + std::to_string(world.rank()));
  }
  const DeviceMemory devmem = e.backend->memory();
  const KvLayer kv_shape = kv_layer_shape(shape, model.dims, e.backend->act_dtype());
  const size_t backend_workspace = e.backend->workspace_bytes(kv_shape, model.dims.n_heads);
  // Ranks of a node share its host memory on the CPU backend.
  const int sharing = e.backend_kind == BackendKind::cpu ? world.local_size() : 1;
  e.plan = plan_memory(model.config, model.dims, shape, e.backend->weight_dtype(),
                       e.backend->act_dtype(), devmem.total_bytes, devmem.free_bytes, cfg.mem_frac,
                       sharing, backend_workspace);
  // The KV pool: what kv_cache_blocks asks, or what the budget leaves (choose_kv_blocks). Every
  // rank takes the smallest any rank can hold, so a leader's block tables are valid on its
  // followers (and every replica has the same pool).
  const int64_t blocks = choose_kv_blocks(
      e.plan, shape, kv_block_bytes(model.dims, shape.block_size, e.backend->act_dtype()),
      cfg.kv_cache_blocks, e.backend_kind == BackendKind::cuda);
  shape.n_blocks = static_cast<int>(-world.all_reduce_max_world(-blocks));
  e.plan = plan_memory(model.config, model.dims, shape, e.backend->weight_dtype(),
                       e.backend->act_dtype(), devmem.total_bytes, devmem.free_bytes, cfg.mem_frac,
                       sharing, backend_workspace);
  e.comm_kind = pick_comm(cfg.comm, e.backend_kind, world.tp());
  // The pipeline link: NCCL send/recv on the CUDA backend, MPI on the CPU (whatever tp is).
  const CommKind pipe_kind = pick_comm(cfg.comm, e.backend_kind, 2);
  if (printer) {
    const ModelConfig& c = model.config;
    TPI_LOG_INFO << "model " << arch_name(c.arch) << ": " << c.n_layers << " layers ("
                 << (world.pp() > 1 ? "in " + std::to_string(world.pp()) + " pipeline stages"
                                    : "running " + std::to_string(model.dims.n_layers))
                 << "), hidden " << c.hidden_size << ", heads " << c.n_heads << "/" << c.n_kv_heads
                 << " kv, vocab " << c.vocab_size << (cfg.dummy_weights ? ", dummy weights" : "");
    TPI_LOG_INFO << "world " << world.size() << " rank(s) on " << world.n_nodes()
                 << " node(s): tp=" << world.tp()
                 << (world.pp() > 1 ? " pp=" + std::to_string(world.pp()) : std::string())
                 << " dp=" << world.dp() << ", backend " << e.backend->describe()
                 << (cfg.backend == BackendChoice::auto_ ? " [auto]" : "") << ", comm "
                 << comm_kind_name(e.comm_kind) << ", max_seq " << shape.max_seq << ", batch_size "
                 << shape.n_slots;
  }
  // Stages differ (layers, embedding, lm_head): the first rank of each stage prints its own.
  if (world.dp_rank() == 0 && world.tp_rank() == 0) {
    if (world.pp() > 1) {
      TPI_LOG_INFO << "pipeline stage " << world.pp_rank() << " of " << world.pp() << ": layers "
                   << model.dims.stage.layer_begin << "-" << model.dims.stage.layer_end - 1
                   << (model.dims.stage.embed ? ", embedding" : "")
                   << (model.dims.stage.head ? ", final norm + lm_head" : "");
    }
    TPI_LOG_INFO << e.plan.report();
  }
  std::string err;
  try {
    check_memory_plan(e.plan, model.config, model.dims, shape);
  } catch (const std::exception& ex) {
    err = ex.what();
  }
  world.agree(err.empty(), err);
  e.comm = make_communicator(e.comm_kind, world, *e.backend);
  e.pipe = make_pipe_link(pipe_kind, world, *e.backend);  // nullptr when pp = 1
  log_layout(world, e.backend_kind == BackendKind::cuda
                        ? "GPU " + std::to_string(bopts.device_ordinal)
                        : "CPU (" + std::to_string(bopts.n_threads) +
                              (bopts.n_threads == 1 ? " thread)" : " threads)"));

  // Allocate and load only this rank's shard; agree before the first collective.
  const auto t0 = std::chrono::steady_clock::now();
  err.clear();
  try {
    e.engine = std::make_unique<Engine>(model.config, model.dims, shape, *e.backend, *e.comm);
    e.engine->set_pipe(e.pipe.get());
    if (cfg.dummy_weights) {
      e.engine->load_dummy(cfg.seed);
    } else {
      e.engine->load(*model.dir, world.rank(), cfg.verify_checksums);
    }
  } catch (const std::exception& ex) {
    err = ex.what();
  }
  world.agree(err.empty(), err);
  e.load_ms = ms_since(t0);
  double warm_ms = -1;
  if (e.backend->has_lazy_setup()) {
    const auto t1 = std::chrono::steady_clock::now();
    e.engine->warm_up();
    warm_ms = ms_since(t1);
  }
  if (printer) {
    const double real = static_cast<double>(e.backend->allocated_bytes());
    const double planned = static_cast<double>(e.plan.total_bytes);
    char diff[32];
    std::snprintf(diff, sizeof diff, "%+.1f%%",
                  planned > 0 ? 100.0 * (real - planned) / planned : 0.0);
    TPI_LOG_INFO << "loaded in " << static_cast<int>(e.load_ms) << " ms; allocated "
                 << format_bytes(e.backend->allocated_bytes()) << " per rank, planned "
                 << format_bytes(e.plan.total_bytes) << " (" << diff << ")"
                 << (warm_ms >= 0
                         ? "; warm-up step " + std::to_string(static_cast<int>(warm_ms)) + " ms"
                         : "");
  }
  return e;
}

std::vector<std::string> gather_memory_report(World& world, const EngineHandle& e) {
  json j = {{"rank", world.rank()},
            {"host", world.hostname()},
            {"planned_bytes", e.plan.total_bytes},
            {"allocated_bytes", e.backend->allocated_bytes()},
            {"weight_bytes", e.plan.weight_bytes},
            {"kv_cache_bytes", e.plan.kv_bytes},
            {"scratch_bytes", e.plan.activation_bytes}};
  return world.gather_strings(j.dump());
}

}  // namespace tpinfer

namespace tpinfer {

nlohmann::json describe_run(World& world, const RunConfig& cfg, const EngineHandle& e) {
  return {{"tp", world.tp()},
          {"pp", world.pp()},
          {"dp", world.dp()},
          {"world_size", world.size()},
          {"n_nodes", world.n_nodes()},
          {"backend", backend_kind_name(e.backend_kind)},
          {"comm", comm_kind_name(e.comm_kind)},
          {"model", cfg.model},
          {"dummy_weights", cfg.dummy_weights}};
}

void write_metrics_json(const std::string& path, const nlohmann::json& metrics) {
  std::ofstream out(path);
  TPI_CHECK(out, path << ": cannot write the metrics file");
  out << metrics.dump(2) << "\n";
  TPI_CHECK(out.good(), path << ": writing the metrics file failed");
}

}  // namespace tpinfer
