// Batch inference from files: rank 0 reads and validates the input, skips the ids already in
// the output, tokenizes, and queues every request for the dispatcher (runtime/scheduler), which
// spreads them over the data-parallel replicas. Rank 0 is the single writer of the output: one
// whole line per write, as each outcome arrives. SIGTERM/SIGINT on any rank: every result that
// already arrived is written, work in progress is dropped, and the job exits non-zero; a rerun
// resumes.
#include "runtime/frontend/batch_file.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <deque>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <unordered_map>

#include "comm/mailbox.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "core/watchdog.h"
#include "runtime/frontend/batch_io.h"
#include "runtime/frontend/kv_report.h"
#include "runtime/frontend/openai/batch_lines.h"
#include "runtime/frontend/queue_service.h"
#include "runtime/frontend/token_text.h"
#include "runtime/job_setup.h"
#include "runtime/scheduler/dispatcher.h"
#include "runtime/scheduler/request_check.h"
#include "runtime/tp_layout.h"

namespace tpinfer {
namespace {

using json = nlohmann::json;
double seconds_since(Clock::time_point t0) {
  return ms_since(t0) / 1000.0;
}

// --- Preparation on rank 0 -----------------------------------------------------------------

struct Prepared {
  std::vector<BatchRequest> todo;
  int n_valid = 0;         // parsable requests in the input
  int n_already_done = 0;  // of those, ids found in the output
  int n_bad = 0;
  int max_needed = 0;                    // max over todo of prompt + max_new_tokens
  std::unique_ptr<ResultWriter> writer;  // holds the output's lock from before the scan
  int n_refused = 0;                     // OpenAI lines answered with an error at once
};

Prepared prepare_requests(const RunConfig& cfg, const Tokenizer& tok, const ModelConfig& mc) {
  Prepared p;
  // The lock first: a second job started at the same moment stops here, instead of scanning
  // the same (still empty) output and then writing every id a second time.
  p.writer = std::make_unique<ResultWriter>(cfg.output);
  try {
    const OutputFile out = scan_output_file(cfg.output);
    const RequestLimits limits = request_limits(cfg, mc);
    RequestDefaults defaults;
    defaults.max_new_tokens = cfg.max_new_tokens;
    defaults.sampling = sampling_from_config(cfg);
    defaults.max_request_bytes = cfg.max_request_bytes;
    defaults.served_model = served_model_name(cfg);
    InputFile in = read_input_file(cfg.input, defaults);
    for (const std::string& w : in.warnings) log_warn(w);
    p.n_valid = static_cast<int>(in.requests.size());
    std::vector<std::string> bad = std::move(in.bad_lines);
    for (BatchRequest& r : in.requests) {
      if (out.done_keys.count(r.key)) {
        ++p.n_already_done;
        continue;
      }
      const std::string where = cfg.input + ":" + std::to_string(r.line) + ": ";
      // An OpenAI line that cannot run is answered with a 400, as the API would; a simple line
      // is a bad line.
      const char* field = r.messages.empty() ? "prompt" : "messages";
      auto refuse = [&](const std::string& why, const char* code) {
        if (r.openai) {
          in.refused.emplace_back(
              r.key, openai::format_batch_error(r.id.get<std::string>(), 400, why, field, code));
        } else {
          bad.push_back(where + why);
        }
      };
      try {
        if (r.prompt_ids.empty()) {
          r.prompt_ids = tokenize_prompt(tok, r.prompt, cfg.chat || !r.messages.empty(), r.messages,
                                         cfg.system, cfg.enable_thinking, r.tools_json);
        }
      } catch (const std::exception& e) {
        refuse(std::string("cannot tokenize: ") + e.what(), "");
        continue;
      }
      try {
        GenerationRequest ids;
        ids.prompt_ids = r.prompt_ids;
        ids.stop_token_ids = r.stop_token_ids;
        ids.sampling.logit_bias = r.sampling.logit_bias;
        check_request_ids(ids, tok.vocab_size());
      } catch (const std::exception& e) {
        refuse(e.what(), "");
        continue;
      }
      const int n_prompt = static_cast<int>(r.prompt_ids.size());
      try {
        const std::string warning = check_request_tokens(n_prompt, r.max_new_tokens, limits);
        if (!warning.empty()) log_warn(where + warning);
      } catch (const std::exception& e) {
        refuse(e.what(), "context_length_exceeded");
        continue;
      }
      p.max_needed = std::max(p.max_needed, n_prompt + r.max_new_tokens);
      p.todo.push_back(std::move(r));
    }
    p.n_bad = static_cast<int>(bad.size());
    if (!bad.empty() && cfg.on_bad_line == OnBadLine::fail) {
      std::string msg = std::to_string(bad.size()) + " bad input line(s), refused (on_bad_line: " +
                        "fail); fix them or pass --on-bad-line skip to skip them:";
      for (size_t i = 0; i < bad.size() && i < 5; ++i) msg += "\n  " + bad[i];
      if (bad.size() > 5) msg += "\n  ... and " + std::to_string(bad.size() - 5) + " more";
      TPI_FAIL(msg);
    }
    for (const std::string& b : bad) log_warn(b + " (skipped: on_bad_line=skip)");
    // Only now, with the job going ahead, touch the output: cut a line torn by a kill.
    if (out.torn_bytes > 0) {
      log_warn(cfg.output + ": dropping a torn last line (" + std::to_string(out.torn_bytes) +
               " bytes, from a killed run); its request runs again");
      truncate_file(cfg.output, out.complete_bytes);
    }
    if (out.n_duplicates > 0) {
      log_warn(cfg.output + ": holds " + std::to_string(out.n_duplicates) +
               " repeated id(s) (was it written by two jobs at once?)");
    }
    // OpenAI lines the API would refuse (a bad body, another model) are answered at once, with
    // their status and error, like any result: a rerun does not repeat them.
    for (const auto& [key, line] : in.refused) {
      if (out.done_keys.count(key)) continue;
      p.writer->write_line(line);
      ++p.n_refused;
      log_warn(cfg.input + ": request " + key + " refused (its error is in the output)");
    }
  } catch (...) {
    p.writer->discard_if_created_empty();  // a refused job leaves no output behind
    throw;
  }
  if (p.todo.empty() && p.n_refused == 0) p.writer->discard_if_created_empty();
  return p;
}

// --- Progress and totals (rank 0) ----------------------------------------------------------

class Progress {
 public:
  Progress(int total, double interval_s) : total_(total), interval_s_(interval_s) {
    t0_ = Clock::now();
    next_ = t0_ +
            std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(interval_s_));
  }
  void add(int prompt_tokens, int completion_tokens, int replica) {
    ++done_;
    prompt_tokens_ += prompt_tokens;
    completion_tokens_ += completion_tokens;
    if (replica >= static_cast<int>(per_replica_.size())) per_replica_.resize(replica + 1, 0);
    ++per_replica_[replica];
  }
  void maybe_report() {
    if (interval_s_ <= 0 || Clock::now() < next_) return;
    next_ = Clock::now() +
            std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(interval_s_));
    const double el = elapsed_s();
    char line[256];
    const double eta = done_ > 0 ? el * (total_ - done_) / done_ : 0.0;
    std::snprintf(line, sizeof line,
                  "progress: %d/%d done (%.1f%%) | %.1f tok/s generated | elapsed %s | ETA %s",
                  done_, total_, total_ > 0 ? 100.0 * done_ / total_ : 100.0,
                  el > 0 ? completion_tokens_ / el : 0.0, format_duration(el).c_str(),
                  done_ > 0 ? format_duration(eta).c_str() : "?");
    log_info(line);
  }
  void add_failed() { ++failed_; }
  int failed() const { return failed_; }
  double elapsed_s() const { return seconds_since(t0_); }
  int done() const { return done_; }
  int64_t prompt_tokens() const { return prompt_tokens_; }
  int64_t completion_tokens() const { return completion_tokens_; }
  const std::vector<int>& per_replica() const { return per_replica_; }

  static std::string format_duration(double s) {
    const long t = std::lround(s);
    char buf[32];
    if (t >= 3600) {
      std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    } else if (t >= 60) {
      std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
    } else {
      std::snprintf(buf, sizeof buf, "%lds", t);
    }
    return buf;
  }

 private:
  int total_;
  double interval_s_;
  Clock::time_point t0_, next_;
  int done_ = 0, failed_ = 0;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
  std::vector<int> per_replica_;
};

// --- Rank 0: the writer of every outcome ---------------------------------------------------

class BatchEvents : public RequestEvents {
 public:
  BatchEvents(ResultWriter& writer, Progress& progress, const Tokenizer& tokenizer,
              std::string model_name)
      : writer_(writer),
        progress_(progress),
        token_text_(token_text_of(tokenizer)),
        tool_format_(structured::tool_call_format_for_template(tokenizer.chat_template_text())),
        model_name_(std::move(model_name)),
        created_(std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count()) {}
  void track(uint64_t seq, const BatchRequest& r) {
    Tracked& t = tracked_[seq];
    t.id = r.id;
    t.logprobs = r.logprobs >= 0;
    t.outcomes.resize(static_cast<size_t>(std::max(1, r.n)));
    if (r.openai) {
      t.openai = openai::make_context(*r.openai, model_name_, created_);
      t.openai->tool_format = tool_format_;
    }
  }
  void on_delta(uint64_t, GenerationDelta) override {}
  // A request's line is written once all its choices have their outcome (one line per request:
  // a rerun finds its id and runs none of its choices again).
  void on_finish(uint64_t seq, GenerationOutcome o) override {
    auto it = tracked_.find(seq);
    if (it == tracked_.end()) return;
    Tracked& tr = it->second;
    const size_t index = static_cast<size_t>(o.index);
    if (index >= tr.outcomes.size() || tr.outcomes[index]) return;
    tr.outcomes[index] = std::move(o);
    if (++tr.n_ended < tr.outcomes.size()) return;
    Tracked t = std::move(tr);
    tracked_.erase(it);
    std::vector<GenerationOutcome> choices;
    for (std::optional<GenerationOutcome>& c : t.outcomes) choices.push_back(std::move(*c));
    int completion = 0;
    std::string error;
    for (const GenerationOutcome& c : choices) {
      // Dropped at a stop (any choice): a rerun runs the request again, whole.
      if (c.finish_reason == "cancelled") return;
      completion += static_cast<int>(c.token_ids.size());
      if (error.empty() && !c.error.empty()) error = c.error;
    }
    const int prompt_tokens = choices[0].prompt_tokens, replica = choices[0].replica;
    if (t.openai) {
      writer_.write_line(
          openai::format_batch_result(t.id.get<std::string>(), *t.openai, choices, token_text_));
    } else {
      std::vector<BatchResult> results;
      for (GenerationOutcome& c : choices) {
        BatchResult r;
        r.id = t.id;
        r.logprobs_asked = t.logprobs;
        r.logprobs = std::move(c.logprobs);
        r.text = std::move(c.text);
        r.finish_reason = c.finish_reason;
        r.error = c.error;
        r.prompt_tokens = c.prompt_tokens;
        r.token_ids = std::move(c.token_ids);
        r.ttft_ms = c.ttft_ms;
        r.total_ms = c.total_ms;
        r.replica = c.replica;
        results.push_back(std::move(r));
      }
      writer_.write_line(format_choices_line(results));
    }
    progress_.add(prompt_tokens, completion, replica);
    if (!error.empty()) report_failure(t.id, error);
  }

 private:
  struct Tracked {
    nlohmann::json id;
    bool logprobs = false;
    std::optional<openai::ResponseContext> openai;           // an OpenAI batch line's answer
    std::vector<std::optional<GenerationOutcome>> outcomes;  // per choice
    size_t n_ended = 0;
  };
  void report_failure(const nlohmann::json& id, const std::string& error) {
    progress_.add_failed();
    log_warn("request " + id.dump() + " failed (an error line is in the output): " + error);
  }

  ResultWriter& writer_;
  Progress& progress_;
  openai::TokenText token_text_;
  structured::ToolCallFormat tool_format_;
  std::string model_name_;
  int64_t created_;
  std::unordered_map<uint64_t, Tracked> tracked_;
};

GenerationRequest to_generation_request(BatchRequest&& r) {
  GenerationRequest g;
  g.logprobs = r.logprobs;
  g.n = r.n;
  g.ignore_eos = r.openai && r.openai->request.ignore_eos;
  g.prompt = std::move(r.prompt);
  g.messages = std::move(r.messages);
  g.max_new_tokens = r.max_new_tokens;
  g.sampling = r.sampling;
  g.stop = std::move(r.stop);
  g.stop_token_ids = std::move(r.stop_token_ids);
  g.prompt_ids = std::move(r.prompt_ids);
  g.response_schema = std::move(r.response_schema);
  g.tools_json = std::move(r.tools_json);
  g.keep_special_text = r.keep_special_text;
  return g;
}

// --- The end: one summary line and, if asked, the metrics file (rank 0) -------------------

struct RunSummary {
  const Prepared* prep;
  int n_todo, n_slots, max_seq;
  bool interrupted;
  double launch_to_start_s, load_ms, wall_s;
  KvCacheStats kv;  // the replicas' KV caches at the end, summed
};

void report_summary(const RunConfig& cfg, World& world, const EngineHandle& eng,
                    const RunSummary& s, const Progress& progress,
                    const std::vector<std::string>& layout) {
  const double gen_tps = s.wall_s > 0 ? progress.completion_tokens() / s.wall_s : 0.0;
  const double all_tps =
      s.wall_s > 0 ? (progress.prompt_tokens() + progress.completion_tokens()) / s.wall_s : 0.0;
  std::string per_replica;
  for (size_t d = 0; d < progress.per_replica().size(); ++d) {
    if (d > 0) per_replica += ' ';
    per_replica += std::to_string(progress.per_replica()[d]);
  }
  char line[512];
  std::snprintf(line, sizeof line,
                "batch: %d/%d result(s) written to %s in %.2f s | %lld prompt + %lld generated "
                "tokens | %.1f generated tok/s, %.1f total tok/s | dp %d x %stp %d, %d slot(s) per "
                "replica | per replica: %s",
                progress.done(), s.n_todo, cfg.output.c_str(), s.wall_s,
                static_cast<long long>(progress.prompt_tokens()),
                static_cast<long long>(progress.completion_tokens()), gen_tps, all_tps, world.dp(),
                world.pp() > 1 ? ("pp " + std::to_string(world.pp()) + " x ").c_str() : "",
                world.tp(), s.n_slots, per_replica.c_str());
  log_info(line + kv_stats_line(s.kv));
  if (progress.failed() > 0) {
    log_warn("batch: " + std::to_string(progress.failed()) + " of those request(s) failed; " +
             "their lines in " + cfg.output + " have \"finish_reason\": \"error\"");
  }
  if (cfg.metrics_json.empty()) return;
  json ranks = json::array();
  for (const std::string& r : layout) ranks.push_back(json::parse(r));
  json m = {{"mode", "batch"},
            {"requests_in_input", s.prep->n_valid},
            {"already_done", s.prep->n_already_done},
            {"bad_lines", s.prep->n_bad},
            {"to_run", s.n_todo},
            {"completed", progress.done()},
            {"failed", progress.failed()},
            {"interrupted", s.interrupted},
            {"wall_s", s.wall_s},
            {"launch_to_start_s", s.launch_to_start_s},
            {"load_ms", s.load_ms},
            {"prompt_tokens", progress.prompt_tokens()},
            {"completion_tokens", progress.completion_tokens()},
            {"generated_tokens_per_s", gen_tps},
            {"total_tokens_per_s", all_tps},
            {"per_replica", progress.per_replica()},
            {"ranks", ranks},
            {"batch_size", s.n_slots},
            {"max_seq", s.max_seq},
            {"kv_cache", kv_stats_json(s.kv)}};
  m.update(describe_run(world, cfg, eng));
  write_metrics_json(cfg.metrics_json, m);
}

}  // namespace

void run_batch_job(World& world, const RunConfig& cfg,
                   std::chrono::steady_clock::time_point launch) {
  TPI_CHECK(!cfg.input.empty() && !cfg.output.empty(),
            "batch inference needs both input and output (JSON Lines files)");
  ModelHandle model = open_model(world, cfg);
  check_tp_layout(world);
  const bool coordinator = world.rank() == 0;
  const int dp = world.dp();

  // Rank 0 reads, validates and tokenizes everything before any engine memory is taken.
  Prepared prep;
  std::string err;
  watch_phase(Phase::batch_prepare);
  if (coordinator) {
    try {
      prep = prepare_requests(cfg, *model.tokenizer, model.config);
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  world.agree(err.empty(), err);
  // The sequences to run: a request with n choices runs n, all on one replica (a replica's
  // slots are sized by them: at least the largest n, within batch_size).
  int64_t n_sequences = 0;
  int max_n = 1;
  for (const BatchRequest& r : prep.todo) {
    n_sequences += std::max(1, r.n);
    max_n = std::max(max_n, r.n);
  }
  n_sequences = std::max<int64_t>(n_sequences, static_cast<int64_t>(max_n) * dp);
  int64_t shape_info[3] = {static_cast<int64_t>(prep.todo.size()), prep.max_needed, n_sequences};
  world.broadcast_world(shape_info, sizeof shape_info);
  const int n_todo = static_cast<int>(shape_info[0]);
  if (coordinator) {
    TPI_LOG_INFO << "batch: " << prep.n_valid << " request(s) in " << cfg.input << ", "
                 << prep.n_already_done << " already in " << cfg.output << ", " << prep.n_bad
                 << " bad line(s) skipped; " << n_todo << " to run on " << dp << " replica(s) of "
                 << (world.pp() > 1 ? "pp=" + std::to_string(world.pp()) + " x " : "")
                 << "tp=" << world.tp();
  }
  if (n_todo == 0) {
    if (coordinator) log_info("batch: nothing to do");
    return;
  }

  std::unique_ptr<ResultWriter> writer = std::move(prep.writer);  // opened and locked above

  const EngineShape shape = size_engine(
      cfg, model.config, static_cast<int>(shape_info[1]),
      static_cast<int>(std::min<int64_t>(shape_info[2], std::numeric_limits<int>::max())), dp);
  EngineHandle eng = start_engine(world, cfg, model, shape);

  std::unique_ptr<Progress> progress;
  std::unique_ptr<BatchEvents> events;
  RequestQueue queue;
  if (coordinator) {
    progress = std::make_unique<Progress>(n_todo, cfg.progress_interval_s);
    events =
        std::make_unique<BatchEvents>(*writer, *progress, *model.tokenizer, served_model_name(cfg));
    for (BatchRequest& r : prep.todo) {
      const uint64_t seq = queue.new_seq();
      events->track(seq, r);
      queue.push(ScheduledRequest{seq, to_generation_request(std::move(r))});
    }
    prep.todo.clear();
    queue.close();
  }
  KvStatsBoard kv_board;
  DispatchOptions opts;
  opts.kv_stats = &kv_board;
  opts.keep_reserve = true;  // throughput: a finished slot refills at once
  opts.grace_s = 0.0;        // a stop drops work in progress: a rerun redoes it
  opts.prefix_caching = cfg.prefix_caching;
  if (coordinator) opts.tick = [&progress] { progress->maybe_report(); };
  const Clock::time_point t_start = Clock::now();
  const DispatchResult outcome =
      run_replicas(world, *eng.engine, model.tokenizer.get(), model.stop_ids, model.sample_vocab,
                   &queue, events.get(), opts);
  const bool interrupted = outcome.stopped;
  // Where every rank ran, as MPI sees it (nodes from shared-memory domains, not host names).
  const std::vector<std::string> layout = world.gather_strings(json{
      {"rank", world.rank()},
      {"host", world.hostname()},
      {"node", world.node_index()},
      {"local_rank", world.local_rank()},
      {"dp_rank", world.dp_rank()},
      {"tp_rank", world.tp_rank()}}.dump());

  std::string summary_err;
  if (coordinator) {
    try {
      writer->sync();
      RunSummary sum{&prep,           n_todo,
                     shape.n_slots,   shape.max_seq,
                     interrupted,     std::chrono::duration<double>(t_start - launch).count(),
                     eng.load_ms,     seconds_since(t_start),
                     kv_board.total()};
      report_summary(cfg, world, eng, sum, *progress, layout);
    } catch (const std::exception& e) {
      summary_err = e.what();
    }
  }
  // Nobody exits before rank 0 has written its summary (a launcher may kill the whole job as
  // soon as one rank ends with an error).
  world.agree(summary_err.empty(), summary_err);
  if (interrupted) {
    TPI_FAIL("interrupted by a stop signal"
             << (coordinator ? ": " + std::to_string(progress->done()) + " of " +
                                   std::to_string(n_todo) + " result(s) of this run are in " +
                                   cfg.output + "; run the same command again to finish the rest"
                             : std::string()));
  }
}

}  // namespace tpinfer
