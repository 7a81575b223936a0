#include "runtime/frontend/cli_prompt.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "core/watchdog.h"
#include "runtime/frontend/kv_report.h"
#include "runtime/job_setup.h"
#include "runtime/scheduler/dispatcher.h"
#include "runtime/scheduler/request_check.h"
#include "runtime/tp_layout.h"

namespace tpinfer {
namespace {

using json = nlohmann::json;

// Rank 0: prints the deltas as they come and keeps the outcome.
class PrintEvents : public RequestEvents {
 public:
  explicit PrintEvents(bool print) : print_(print) {}
  void on_delta(uint64_t, GenerationDelta d) override {
    if (!print_ || d.text.empty()) return;
    std::fwrite(d.text.data(), 1, d.text.size(), stdout);
    std::fflush(stdout);
  }
  void on_finish(uint64_t, GenerationOutcome o) override { outcome = std::move(o); }
  GenerationOutcome outcome;

 private:
  bool print_;
};

void write_metrics(World& world, const RunConfig& cfg, const EngineHandle& eng,
                   const std::vector<int32_t>& prompt_ids, const GenerationOutcome& res,
                   double launch_to_ready_ms, const KvCacheStats& kv) {
  const std::vector<std::string> mem = gather_memory_report(world, eng);
  if (world.rank() != 0) return;
  const int n_prompt = static_cast<int>(prompt_ids.size());
  const int n_gen = static_cast<int>(res.token_ids.size());
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
                format_bytes(peak).c_str(), world.tp(), backend_kind_name(eng.backend_kind),
                comm_kind_name(eng.comm_kind));
  log_info(line + kv_stats_line(kv));
  if (cfg.metrics_json.empty()) return;
  json m = {{"prompt_tokens", n_prompt},
            {"prompt_ids", prompt_ids},
            {"generated_tokens", n_gen},
            {"generated_ids", res.token_ids},
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
            {"peak_memory_bytes", peak},
            {"kv_cache", kv_stats_json(kv)}};
  if (cfg.logprobs >= 0) {
    json lps = json::array();
    for (const TokenLogprob& lp : res.logprobs) {
      json top = json::array();
      for (const auto& [id, v] : lp.top) top.push_back({{"id", id}, {"logprob", v}});
      lps.push_back({{"id", lp.id}, {"logprob", lp.logprob}, {"top_logprobs", top}});
    }
    m["logprobs"] = lps;
  }
  m.update(describe_run(world, cfg, eng));
  write_metrics_json(cfg.metrics_json, m);
}

}  // namespace

void run_single_prompt(World& world, const RunConfig& cfg,
                       std::chrono::steady_clock::time_point launch) {
  world.set_layout(cfg.tp, cfg.pp);
  const int tp = world.tp(), replica = world.replica_size();
  TPI_CHECK(world.dp() == 1,
            "tp=" << tp << (world.pp() > 1 ? " x pp=" + std::to_string(world.pp()) : std::string())
                  << " on " << world.size() << " ranks makes " << world.dp()
                  << " data-parallel replicas, but a single "
                  << "prompt runs on one: launch " << replica << " ranks, or give "
                  << "--input for batch inference or --serve for a server");
  check_tp_layout(world);
  // The same checks as a batch line's or a server request's (runtime/scheduler/request_check.h);
  // the values are the same on every rank, so is the error.
  const SamplingParams sampling = sampling_from_config(cfg);
  check_request_params(cfg.max_new_tokens, sampling);
  ModelHandle model = open_model(world, cfg);
  const RequestLimits limits = request_limits(cfg, model.config);
  const bool printer = world.rank() == 0;  // = the leader: dp is 1

  // Rank 0 bounds the prompt's size, then tokenizes; everyone agrees it worked and learns the
  // length, which sizes the KV cache.
  watch_phase(Phase::prompt);
  GenerationRequest request;
  std::string err;
  if (printer) {
    try {
      if (cfg.prompt_file.empty()) {
        check_request_bytes(cfg.prompt.size(), "key 'prompt': the prompt", limits);
      } else {
        check_request_bytes(std::filesystem::file_size(cfg.prompt_file),
                            "key 'prompt_file': '" + cfg.prompt_file + "'", limits);
      }
      request.prompt = load_prompt(cfg);
      request.prompt_ids = tokenize_prompt(*model.tokenizer, request.prompt, cfg.chat, {},
                                           cfg.system, cfg.enable_thinking);
      request.sampling = sampling;
      request.stop_token_ids = parse_stop_token_ids_key(cfg.stop_token_ids);
      check_request_ids(request, model.sample_vocab);
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  world.agree(err.empty(), err);
  int32_t n_prompt = static_cast<int32_t>(request.prompt_ids.size());
  world.broadcast_world(&n_prompt, sizeof n_prompt);
  const std::string warning = check_request_tokens(n_prompt, cfg.max_new_tokens, limits);
  if (!warning.empty() && printer) log_warn(warning);

  const EngineShape shape =
      size_engine(cfg, model.config, n_prompt + cfg.max_new_tokens, /*max_requests=*/1, 1);
  EngineHandle eng = start_engine(world, cfg, model, shape);
  // The KV pool (kv_cache_blocks can make it smaller than the request): refused before running,
  // the same on every rank.
  check_request_kv(n_prompt, cfg.max_new_tokens, 1, kv_limits(eng.engine->shape()));

  const bool do_stream = printer && cfg.stream;
  PrintEvents events(do_stream);
  RequestQueue queue;
  const std::vector<int32_t> prompt_ids = request.prompt_ids;
  if (printer) {
    request.max_new_tokens = cfg.max_new_tokens;
    request.logprobs = cfg.logprobs;
    if (!cfg.stop.empty()) request.stop = {cfg.stop};
    request.stream = do_stream;
    queue.push(ScheduledRequest{queue.new_seq(), std::move(request)});
    queue.close();
    if (do_stream && cfg.echo && !cfg.chat) {
      const std::string prompt = load_prompt(cfg);
      std::fwrite(prompt.data(), 1, prompt.size(), stdout);
      std::fflush(stdout);
    }
  }
  const double launch_to_ready_ms = ms_since(launch);
  KvStatsBoard kv_board;
  DispatchOptions opts;
  opts.keep_reserve = false;
  opts.kv_stats = &kv_board;
  opts.prefix_caching = cfg.prefix_caching;
  const DispatchResult run = run_replicas(world, *eng.engine, model.tokenizer.get(), model.stop_ids,
                                          model.sample_vocab, &queue, &events, opts);
  if (do_stream) {
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  TPI_CHECK(!run.stopped, "interrupted by a stop signal before the generation finished");
  // A failure of this request (non-finite logits, an id with no token) is known on rank 0:
  // every rank reports it and exits non-zero.
  const GenerationOutcome& res = events.outcome;
  world.agree(!printer || res.error.empty(), "the generation failed at " + res.error);

  watch_phase(Phase::finish);
  write_metrics(world, cfg, eng, prompt_ids, res, launch_to_ready_ms, kv_board.total());
}

}  // namespace tpinfer
