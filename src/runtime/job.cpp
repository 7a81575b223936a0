#include "runtime/job.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "config/path_checks.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "core/watchdog.h"
#include "runtime/frontend/batch_file.h"
#include "runtime/generate.h"
#include "runtime/job_setup.h"
#include "runtime/scheduler/request_check.h"
#include "runtime/engine/sampler.h"
#include "runtime/tp_layout.h"

namespace tpinfer {
namespace {

using json = nlohmann::json;

constexpr int kWatchdogExit = 3;  // the job's exit status when the watchdog ends it

void run_single_prompt(World& world, const RunConfig& cfg,
                       std::chrono::steady_clock::time_point launch) {
  world.set_tp(cfg.tp);
  const int tp = world.tp();
  TPI_CHECK(world.dp() == 1, "tp=" << tp << " on " << world.size() << " ranks makes " << world.dp()
                                   << " data-parallel replicas, but a single "
                                   << "prompt runs on one: launch " << tp << " ranks, or give "
                                   << "--input for batch inference");
  check_tp_layout(world);
  // The same checks as a batch line's (runtime/request_check.h); the values are the same on
  // every rank, so is the error.
  check_request_params(cfg.max_new_tokens,
                       SamplingParams{cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed});
  ModelHandle model = open_model(world, cfg);
  const RequestLimits limits = request_limits(cfg, model.config);
  const bool leader = world.tp_rank() == 0;
  const bool printer = world.rank() == 0;

  // The leader bounds the prompt's size, then tokenizes; everyone agrees it worked and learns
  // the length.
  watch_phase(Phase::prompt);
  std::vector<int32_t> prompt_ids;
  std::string err;
  if (leader) {
    try {
      if (cfg.prompt_file.empty()) {
        check_request_bytes(cfg.prompt.size(), "key 'prompt': the prompt", limits);
      } else {
        check_request_bytes(std::filesystem::file_size(cfg.prompt_file),
                            "key 'prompt_file': '" + cfg.prompt_file + "'", limits);
      }
      prompt_ids = tokenize_prompt(*model.tokenizer, load_prompt(cfg), cfg.chat, {}, cfg.system,
                                   cfg.enable_thinking);
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  world.agree(err.empty(), err);
  int32_t n_prompt = static_cast<int32_t>(prompt_ids.size());
  world.broadcast_tp(&n_prompt, sizeof n_prompt);
  const std::string warning = check_request_tokens(n_prompt, cfg.max_new_tokens, limits);
  if (!warning.empty() && printer) log_warn(warning);

  // One slot, sized for this prompt unless max_seq is given (check_request_tokens bounds both
  // terms, so the sum fits an int).
  EngineShape shape;
  const int needed = n_prompt + cfg.max_new_tokens;
  shape.max_seq = cfg.max_seq > 0 ? cfg.max_seq : std::max(16, (needed + 15) / 16 * 16);
  shape.max_tokens = std::max(1, std::min(shape.max_seq, 512));
  EngineHandle eng = start_engine(world, cfg, model, shape);

  GenerateOptions gopts;
  gopts.max_new_tokens = cfg.max_new_tokens;
  gopts.stop_ids = model.stop_ids;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StreamDecoder> stream;
  if (leader) {
    sampler = std::make_unique<Sampler>(
        model.sample_vocab, SamplingParams{cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed});
    // Primed with the prompt, so the continuation decodes as it reads after the prompt (a
    // SentencePiece decoder strips the leading space of the first token it sees).
    stream = std::make_unique<StreamDecoder>(*model.tokenizer, true);
    for (int32_t id : prompt_ids) stream->push(id);
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
  if (do_stream && cfg.echo && !cfg.chat) {
    const std::string prompt = load_prompt(cfg);
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    std::fflush(stdout);
  }
  const double launch_to_ready_ms = ms_since(launch);
  // From here on ranks are inside collectives together: a failure on one rank cannot be agreed
  // on, so it ends the whole job instead of leaving the others waiting.
  GenerationResult res;
  try {
    res = generate(*eng.engine, world, leader, prompt_ids, gopts, sampler.get(), on_token);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    log_error(std::string("error during generation, aborting the job: ") + e.what());
    world.abort(1);
  }
  if (do_stream) {
    const std::string rest = res.error.empty() ? stream->flush() : std::string();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  // A failure of this request (non-finite logits, an id with no token): every rank of the group
  // learned it in generate(), so every rank reports it and exits non-zero.
  TPI_CHECK(res.error.empty(), "the generation failed at " << res.error);

  // Metrics: one summary line on stderr and, if asked, the JSON file.
  watch_phase(Phase::finish);
  const std::vector<std::string> mem = gather_memory_report(world, eng);
  if (!printer) return;
  const int n_gen = static_cast<int>(res.generated.size());
  const double decode_mean =
      res.decode_ms.empty() ? 0.0
                            : std::accumulate(res.decode_ms.begin(), res.decode_ms.end(), 0.0) /
                                  static_cast<double>(res.decode_ms.size());
  const double decode_p50 = percentile(res.decode_ms, 0.5);
  const double prefill_tps = res.prefill_ms > 0 ? n_prompt / (res.prefill_ms / 1000.0) : 0.0;
  json per_rank = json::array();
  size_t peak = 0;
  for (const std::string& s : mem) {
    json j = json::parse(s);
    peak = std::max<size_t>(peak, j["allocated_bytes"].get<size_t>());
    per_rank.push_back(j);
  }
  char line[512];
  std::snprintf(line, sizeof line,
                "metrics: prompt %d tok, generated %d tok (%s) | ttft %.2f ms | prefill %.1f tok/s "
                "| decode %.3f ms/tok mean, %.3f p50 (%.1f tok/s) | mem/rank %s | tp %d | %s/%s",
                n_prompt, n_gen, res.finish_reason.c_str(), res.ttft_ms, prefill_tps, decode_mean,
                decode_p50, decode_mean > 0 ? 1000.0 / decode_mean : 0.0,
                format_bytes(peak).c_str(), tp, backend_kind_name(eng.backend_kind),
                comm_kind_name(eng.comm_kind));
  log_info(line);
  if (cfg.metrics_json.empty()) return;
  json m = {{"prompt_tokens", n_prompt},
            {"prompt_ids", res.prompt_ids},
            {"generated_tokens", n_gen},
            {"generated_ids", res.generated},
            {"finish_reason", res.finish_reason},
            {"ttft_ms", res.ttft_ms},
            {"launch_to_first_token_ms", launch_to_ready_ms + res.ttft_ms},
            {"load_ms", eng.load_ms},
            {"prefill_ms", res.prefill_ms},
            {"prefill_tokens_per_s", prefill_tps},
            {"decode_ms_per_token_mean", decode_mean},
            {"decode_ms_per_token_p50", decode_p50},
            {"decode_tokens_per_s", decode_mean > 0 ? 1000.0 / decode_mean : 0.0},
            {"memory_per_rank", per_rank},
            {"peak_memory_bytes", peak}};
  m.update(describe_run(world, cfg, eng));
  write_metrics_json(cfg.metrics_json, m);
}

}  // namespace

void run_job(World& world, const RunConfig& cfg, std::chrono::steady_clock::time_point launch) {
  set_log_level(cfg.log_level);
  // A rank that stops making progress (a peer stopped or unreachable) ends the whole job.
  Watchdog watchdog(cfg.step_timeout_s, world.rank(), [&world] { world.abort(kWatchdogExit); });

  // Rank 0 reads the prompt file and the batch input and writes the output and the metrics:
  // it checks them before anything is loaded, and every rank reports what it found.
  std::string err;
  if (world.rank() == 0) {
    try {
      check_file_keys(cfg);
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  world.agree(err.empty(), err);
  if (!cfg.input.empty() || !cfg.output.empty()) {
    run_batch_job(world, cfg, launch);
    return;
  }
  run_single_prompt(world, cfg, launch);
}

}  // namespace tpinfer
