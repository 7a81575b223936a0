#include "runtime/job.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <numeric>
#include <thread>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "comm/communicator.h"
#include "core/error.h"
#include "core/log.h"
#include "io/model_dir.h"
#include "runtime/engine.h"
#include "runtime/generate.h"
#include "runtime/memory_plan.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {
namespace {

using json = nlohmann::json;

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  TPI_CHECK(in, path << ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    TPI_FAIL(path << ": not valid JSON: " << e.what());
  }
}

// --dummy-weights takes a Hugging Face directory (or its config.json) for the shapes.
ModelConfig dummy_model_config(const std::string& model) {
  std::string dir = model, config = model + "/config.json";
  if (model.size() > 5 && model.substr(model.size() - 5) == ".json") {
    config = model;
    dir = model.substr(0, model.find_last_of('/') == std::string::npos ? 0
                                                                        : model.find_last_of('/'));
  }
  const json cfg = read_json_file(config);
  json gen = nullptr;
  const std::string gen_path = (dir.empty() ? "." : dir) + "/generation_config.json";
  if (std::ifstream(gen_path)) gen = read_json_file(gen_path);
  return ModelConfig::from_hf(cfg, gen, config);
}

BackendKind pick_backend(BackendChoice choice) {
  switch (choice) {
    case BackendChoice::cpu: return BackendKind::cpu;
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
    case CommChoice::mpi: return CommKind::mpi;
    case CommChoice::nccl: return CommKind::nccl;
    case CommChoice::auto_: return backend == BackendKind::cuda ? CommKind::nccl : CommKind::mpi;
  }
  return CommKind::mpi;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double idx = p * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(idx)), hi = static_cast<size_t>(std::ceil(idx));
  return v[lo] + (v[hi] - v[lo]) * (idx - static_cast<double>(lo));
}

}  // namespace

void run_job(World& world, const RunConfig& cfg, std::chrono::steady_clock::time_point launch) {
  set_log_level(cfg.log_level);
  world.set_tp(cfg.tp);
  const int tp = world.tp();
  const bool leader = world.tp_rank() == 0;
  const bool printer = world.rank() == 0;
  TPI_CHECK(cfg.input.empty() && cfg.output.empty(),
            "batch inference (input/output) is not available in this build yet");
  TPI_CHECK(world.dp() == 1, "tp=" << tp << " on " << world.size() << " ranks makes "
                                   << world.dp() << " data-parallel replicas, but a single "
                                   << "prompt runs on one: launch " << tp << " ranks, or give "
                                   << "--input for batch inference");

  // --- Model description (every rank reads the same files, so errors are the same everywhere).
  std::unique_ptr<ModelDir> dir;
  ModelConfig model_cfg;
  if (cfg.dummy_weights) {
    model_cfg = dummy_model_config(cfg.model);
  } else {
    dir = std::make_unique<ModelDir>(ModelDir::open(cfg.model));
    TPI_CHECK(dir->tp == tp, cfg.model << ": converted for tp=" << dir->tp << " but the job runs "
                                       << "tp=" << tp << "; convert again with "
                                       << "scripts/convert_hf.py --tp " << tp
                                       << " (or launch " << dir->tp << " ranks)");
    model_cfg = dir->config;
  }
  model_cfg.check_tp(tp);
  const ShardDims dims = ShardDims::make(model_cfg, tp, world.tp_rank(), cfg.layers);

  // --- Prompt: the leader tokenizes; everyone agrees it worked before going on.
  std::unique_ptr<Tokenizer> tok;
  std::vector<int32_t> prompt_ids;
  std::string err;
  if (leader) {
    try {
      const std::string tok_dir = !cfg.tokenizer.empty() ? cfg.tokenizer
                                  : dir                  ? dir->tokenizer_dir
                                                         : cfg.model;
      tok = Tokenizer::from_dir(tok_dir);
      const std::string prompt = load_prompt(cfg);
      if (cfg.chat) {
        std::vector<ChatMessage> msgs;
        if (!cfg.system.empty()) msgs.push_back({"system", cfg.system});
        msgs.push_back({"user", prompt});
        prompt_ids = tok->encode(tok->apply_chat_template(msgs, true, cfg.enable_thinking), false);
      } else {
        prompt_ids = tok->encode(prompt, true);
      }
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  world.agree(err.empty(), err);
  int32_t n_prompt = static_cast<int32_t>(prompt_ids.size());
  world.broadcast_tp(&n_prompt, sizeof n_prompt);
  TPI_CHECK(n_prompt > 0, "the prompt is empty after tokenization (this tokenizer adds no BOS): "
                          "give a prompt");

  // --- Shape of the engine: one slot; max_seq sized for this prompt unless given.
  EngineShape shape;
  shape.n_slots = 1;
  shape.max_logit_rows = 1;
  const int needed = n_prompt + cfg.max_new_tokens;
  if (cfg.max_seq > 0) {
    shape.max_seq = cfg.max_seq;
    TPI_CHECK(needed <= cfg.max_seq,
              "prompt (" << n_prompt << " tokens) + max_new_tokens (" << cfg.max_new_tokens
                         << ") = " << needed << " exceeds max_seq=" << cfg.max_seq
                         << "; raise max_seq or lower max_new_tokens");
  } else {
    shape.max_seq = std::max(16, (needed + 15) / 16 * 16);
  }
  if (model_cfg.max_position_embeddings > 0 && needed > model_cfg.max_position_embeddings) {
    TPI_LOG_WARN << "prompt + max_new_tokens = " << needed << " exceeds the model's "
                 << "max_position_embeddings=" << model_cfg.max_position_embeddings;
  }
  shape.max_tokens = std::max(1, std::min(shape.max_seq, 512));

  // --- Backend, memory plan (before any allocation), communicator.
  const BackendKind bkind = pick_backend(cfg.backend);
  BackendOptions bopts;
  bopts.n_threads = cfg.threads > 0 ? cfg.threads
                                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) /
                                                      world.local_size());
  bopts.device_ordinal = world.local_rank();
  std::unique_ptr<Backend> backend = make_backend(bkind, bopts);
  const DeviceMemory devmem = backend->memory();
  const int sharing = bkind == BackendKind::cpu ? world.local_size() : 1;
  const MemoryPlan plan = plan_memory(model_cfg, dims, shape, backend->weight_dtype(),
                                      backend->act_dtype(), devmem.total_bytes, devmem.free_bytes,
                                      cfg.mem_frac, sharing, 0);
  const CommKind ckind = pick_comm(cfg.comm, bkind, tp);
  if (printer) {
    TPI_LOG_INFO << "model " << arch_name(model_cfg.arch) << ": " << model_cfg.n_layers
                 << " layers (running " << dims.n_layers << "), hidden " << model_cfg.hidden_size
                 << ", heads " << model_cfg.n_heads << "/" << model_cfg.n_kv_heads << " kv, vocab "
                 << model_cfg.vocab_size << (cfg.dummy_weights ? ", dummy weights" : "");
    TPI_LOG_INFO << "world " << world.size() << " rank(s) on " << world.n_nodes()
                 << " node(s): tp=" << tp << " dp=" << world.dp() << ", backend "
                 << backend->describe() << ", comm " << comm_kind_name(ckind);
    TPI_LOG_INFO << plan.report();
  }
  err.clear();
  try {
    check_memory_plan(plan, model_cfg, dims, shape);
  } catch (const std::exception& e) {
    err = e.what();
  }
  world.agree(err.empty(), err);
  std::unique_ptr<Communicator> comm = make_communicator(ckind, world, *backend);

  // --- Allocate and load (only this rank's shard); agree before the first collective.
  auto t_load = std::chrono::steady_clock::now();
  std::unique_ptr<Engine> engine;
  err.clear();
  try {
    engine = std::make_unique<Engine>(model_cfg, dims, shape, *backend, *comm);
    if (cfg.dummy_weights) {
      engine->load_dummy(cfg.seed);
    } else {
      engine->load(*dir, world.rank());
    }
  } catch (const std::exception& e) {
    err = e.what();
  }
  world.agree(err.empty(), err);
  const double load_ms = ms_since(t_load);
  const size_t allocated = backend->allocated_bytes();
  if (printer) {
    TPI_LOG_INFO << "loaded in " << static_cast<int>(load_ms) << " ms; allocated "
                 << format_bytes(allocated) << " per rank (planned "
                 << format_bytes(plan.total_bytes) << ")";
  }

  // --- Generate, streaming on the printing rank.
  GenerateOptions gopts;
  gopts.max_new_tokens = cfg.max_new_tokens;
  if (!cfg.ignore_eos) {
    gopts.stop_ids.assign(model_cfg.eos_token_ids.begin(), model_cfg.eos_token_ids.end());
    // A BOS in the output means a new document began: llama2.c-style models end stories so.
    if (model_cfg.bos_token_id >= 0) gopts.stop_ids.push_back(model_cfg.bos_token_id);
    if (tok) {
      for (int32_t id : tok->eos_ids()) gopts.stop_ids.push_back(id);
    }
  }
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StreamDecoder> stream;
  if (leader) {
    sampler = std::make_unique<Sampler>(model_cfg.vocab_size,
                                        SamplingParams{cfg.temperature, cfg.top_k, cfg.top_p,
                                                       cfg.seed});
    stream = std::make_unique<StreamDecoder>(*tok, true);
  }
  const bool do_stream = printer && cfg.stream;
  auto on_token = [&](int32_t id) {
    if (!do_stream) return;
    const std::string piece = stream->push(id);
    if (!piece.empty()) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
  };
  const double launch_to_load_done_ms = ms_since(launch);
  // From here on ranks are inside collectives together: a failure on one rank cannot be agreed
  // on, so it ends the whole job instead of leaving the others waiting.
  GenerationResult res;
  try {
    res = generate(*engine, world, leader, prompt_ids, gopts, sampler.get(), on_token);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    log_error(std::string("error during generation, aborting the job: ") + e.what());
    world.abort(1);
  }
  if (do_stream) {
    const std::string rest = stream->flush();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }

  // --- Metrics: one summary line on stderr, and the JSON file.
  json rank_mem = {{"rank", world.rank()},
                   {"host", world.hostname()},
                   {"planned_bytes", plan.total_bytes},
                   {"allocated_bytes", allocated},
                   {"weight_bytes", plan.weight_bytes},
                   {"kv_cache_bytes", plan.kv_bytes},
                   {"scratch_bytes", plan.activation_bytes}};
  const std::vector<std::string> all_mem = world.gather_strings(rank_mem.dump());
  if (!printer) return;
  const int n_gen = static_cast<int>(res.generated.size());
  const double decode_mean =
      res.decode_ms.empty()
          ? 0.0
          : std::accumulate(res.decode_ms.begin(), res.decode_ms.end(), 0.0) / res.decode_ms.size();
  const double decode_p50 = percentile(res.decode_ms, 0.5);
  const double prefill_tps = res.prefill_ms > 0 ? n_prompt / (res.prefill_ms / 1000.0) : 0.0;
  json per_rank = json::array();
  size_t peak = 0;
  for (const std::string& s : all_mem) {
    json j = json::parse(s);
    peak = std::max<size_t>(peak, j["allocated_bytes"].get<size_t>());
    per_rank.push_back(j);
  }
  json m = {{"prompt_tokens", n_prompt},
            {"generated_tokens", n_gen},
            {"generated_ids", res.generated},
            {"finish_reason", res.finish_reason},
            {"ttft_ms", res.ttft_ms},
            {"launch_to_first_token_ms", launch_to_load_done_ms + res.ttft_ms},
            {"load_ms", load_ms},
            {"prefill_ms", res.prefill_ms},
            {"prefill_tokens_per_s", prefill_tps},
            {"decode_ms_per_token_mean", decode_mean},
            {"decode_ms_per_token_p50", decode_p50},
            {"decode_tokens_per_s", decode_mean > 0 ? 1000.0 / decode_mean : 0.0},
            {"memory_per_rank", per_rank},
            {"peak_memory_bytes", peak},
            {"tp", tp},
            {"dp", world.dp()},
            {"world_size", world.size()},
            {"backend", backend_kind_name(bkind)},
            {"comm", comm_kind_name(ckind)},
            {"model", cfg.model},
            {"dummy_weights", cfg.dummy_weights}};
  char line[512];
  std::snprintf(line, sizeof line,
                "metrics: prompt %d tok, generated %d tok (%s) | ttft %.2f ms | prefill %.1f tok/s "
                "| decode %.3f ms/tok mean, %.3f p50 (%.1f tok/s) | mem/rank %s | tp %d | %s/%s",
                n_prompt, n_gen, res.finish_reason.c_str(), res.ttft_ms, prefill_tps, decode_mean,
                decode_p50, decode_mean > 0 ? 1000.0 / decode_mean : 0.0,
                format_bytes(peak).c_str(), tp, backend_kind_name(bkind), comm_kind_name(ckind));
  log_info(line);
  if (!cfg.metrics_json.empty()) {
    std::ofstream out(cfg.metrics_json);
    TPI_CHECK(out, cfg.metrics_json << ": cannot write the metrics file");
    out << m.dump(2) << "\n";
  }
}

}  // namespace tpinfer
