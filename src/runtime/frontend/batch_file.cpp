// Batch inference job. Roles:
//   world rank 0  coordinator: reads and validates the input, skips ids already in the output,
//                 tokenizes, hands requests out on demand, and is the single writer of the
//                 output (one whole line per write, as each result arrives). It is also the
//                 leader of replica 0 and decodes between serving messages.
//   tp rank 0     replica leader: asks rank 0 for work whenever its queue runs low, runs
//                 continuous batching (ReplicaScheduler) and sends each result back at once.
//   tp rank > 0   follower: runs the forwards its leader broadcasts.
// Work is pulled, not pushed, so fast replicas take more (dynamic balance) and nothing is
// assigned to a replica that cannot start it soon. Shutdown is a handshake: a leader sends BYE
// after its last result and rank 0 acknowledges, so no message is ever left unmatched.
// SIGTERM/SIGINT on any rank: rank 0 is told, stops handing out work, tells every leader to stop,
// writes every result that already arrived, and the job exits non-zero; a rerun resumes.
#include "runtime/frontend/batch_file.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <deque>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "comm/mailbox.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "core/watchdog.h"
#include "runtime/frontend/batch_io.h"
#include "runtime/scheduler/replica_scheduler.h"
#include "runtime/job_setup.h"
#include "runtime/scheduler/request_check.h"
#include "runtime/tp_layout.h"

namespace tpinfer {
namespace {

using json = nlohmann::json;
double seconds_since(Clock::time_point t0) {
  return ms_since(t0) / 1000.0;
}

// --- Signals -------------------------------------------------------------------------------

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) {
  g_stop_signal = sig;
}

bool stop_signalled() {
  return g_stop_signal != 0;
}

// Catches SIGTERM (SLURM preemption, scancel, time limit) and SIGINT for the job's duration. The
// first signal asks for an orderly stop; SA_RESETHAND makes a second one kill as usual.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction sa = {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    sigaction(SIGTERM, &sa, &old_term_);
    sigaction(SIGINT, &sa, &old_int_);
  }
  ~StopSignals() {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_term_ = {}, old_int_ = {};
};

// --- Messages between rank 0 and the replica leaders ---------------------------------------

enum Tag : int {
  kWorkRequest = 1,  // leader -> 0: {"want": n}
  kWork = 2,         // 0 -> leader: {"requests": [...], "done": bool}
  kResult = 3,       // leader -> 0: one output line
  kStop = 4,         // either way: stop (a signal arrived somewhere)
  kBye = 5,          // leader -> 0: no more messages from me
  kByeAck = 6,       // 0 -> leader: no more messages to you
};

// --- Preparation on rank 0 -----------------------------------------------------------------

struct Prepared {
  std::vector<BatchRequest> todo;
  int n_valid = 0;         // parsable requests in the input
  int n_already_done = 0;  // of those, ids found in the output
  int n_bad = 0;
  int max_needed = 0;                    // max over todo of prompt + max_new_tokens
  std::unique_ptr<ResultWriter> writer;  // holds the output's lock from before the scan
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
    defaults.sampling = SamplingParams{cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed};
    defaults.max_request_bytes = cfg.max_request_bytes;
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
      try {
        r.prompt_ids = tokenize_prompt(tok, r.prompt, cfg.chat || !r.messages.empty(), r.messages,
                                       cfg.system, cfg.enable_thinking);
      } catch (const std::exception& e) {
        bad.push_back(where + "cannot tokenize: " + e.what());
        continue;
      }
      const int n_prompt = static_cast<int>(r.prompt_ids.size());
      try {
        const std::string warning = check_request_tokens(n_prompt, r.max_new_tokens, limits);
        if (!warning.empty()) log_warn(where + warning);
      } catch (const std::exception& e) {
        bad.push_back(where + e.what());
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
  } catch (...) {
    p.writer->discard_if_created_empty();  // a refused job leaves no output behind
    throw;
  }
  if (p.todo.empty()) p.writer->discard_if_created_empty();
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

// --- Rank 0: coordinator, writer and leader of replica 0 -----------------------------------

struct CoordinatorOutcome {
  bool stopped = false;
  int stop_signal = 0;
};

CoordinatorOutcome run_coordinator(World& world, Mailbox& mail, ReplicaScheduler& sched,
                                   std::vector<BatchRequest> todo, ResultWriter& writer,
                                   Progress& progress) {
  std::deque<BatchRequest> queue(std::make_move_iterator(todo.begin()),
                                 std::make_move_iterator(todo.end()));
  const int tp = world.tp(), dp = world.dp();
  std::vector<bool> said_bye(static_cast<size_t>(dp), false);
  said_bye[0] = true;  // this rank
  int n_bye = 1;
  bool stopping = false, stop_from_message = false;
  CoordinatorOutcome outcome;

  auto write = [&](const std::string& line, int prompt_tokens, int completion_tokens, int replica,
                   const json& id, const std::string& error) {
    writer.write_line(line);
    progress.add(prompt_tokens, completion_tokens, replica);
    if (!error.empty()) {
      progress.add_failed();
      log_warn("request " + id.dump() + " failed (an error line is in the output): " + error);
    }
  };
  auto write_local = [&](const BatchResult& r) {
    write(format_result_line(r), r.prompt_tokens, static_cast<int>(r.token_ids.size()), 0, r.id,
          r.error);
  };

  for (;;) {
    // Serve every message that has arrived.
    while (std::optional<Message> m = mail.poll()) {
      const int replica = m->source / tp;
      switch (m->tag) {
        case kWorkRequest: {
          const int want = json::parse(m->payload).at("want").get<int>();
          json reply = {{"requests", json::array()}, {"done", false}};
          // Leave some for the others: at most an even share of what is left.
          const int share = std::max<int>(1, static_cast<int>((queue.size() + dp - 1) / dp));
          const int give = stopping ? 0 : std::min({want, share, static_cast<int>(queue.size())});
          for (int i = 0; i < give; ++i) {
            reply["requests"].push_back(request_to_wire(queue.front()));
            queue.pop_front();
          }
          reply["done"] = stopping || queue.empty();
          mail.send(m->source, kWork, reply.dump());
          break;
        }
        case kResult: {
          const json j = json::parse(m->payload);
          write(m->payload, j.at("prompt_tokens").get<int>(), j.at("completion_tokens").get<int>(),
                replica, j.at("id"), j.value("error", std::string()));
          break;
        }
        case kStop:
          stop_from_message = true;
          break;
        case kBye:
          TPI_CHECK(!said_bye[replica], "coordinator: two BYEs from rank " << m->source);
          said_bye[replica] = true;
          ++n_bye;
          mail.send(m->source, kByeAck, "");
          break;
        default:
          TPI_FAIL("coordinator: unexpected message tag " << m->tag << " from rank " << m->source);
      }
    }

    if (!stopping && (stop_signalled() || sched.stop_requested() || stop_from_message)) {
      stopping = true;
      outcome.stop_signal = g_stop_signal;
      log_warn("stop requested (" +
               std::string(stop_signalled() ? (g_stop_signal == SIGINT ? "SIGINT" : "SIGTERM")
                                            : "signal on another rank") +
               "): finishing the result lines that are complete, dropping work in progress");
      sched.abandon_all();
      queue.clear();
      for (int d = 1; d < dp; ++d) {
        if (!said_bye[d]) mail.send(d * tp, kStop, "");
      }
    }

    while (!stopping && sched.free_slots() > 0 && !queue.empty()) {
      BatchRequest r = std::move(queue.front());
      queue.pop_front();
      if (std::optional<BatchResult> done = sched.admit(std::move(r))) write_local(*done);
    }
    if (sched.active() > 0) {
      for (const BatchResult& r : sched.step()) write_local(r);
    } else {
      sched.release_followers();  // the queue never refills: replica 0 is done for good
      if (n_bye == dp) break;
      watch_phase(Phase::idle);  // the other replicas' requests may take any time
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    progress.maybe_report();
  }
  outcome.stopped = stopping;
  return outcome;
}

// --- Other replica leaders -----------------------------------------------------------------

void run_replica_leader(World& world, Mailbox& mail, ReplicaScheduler& sched) {
  std::deque<BatchRequest> local;
  bool no_more = false, requested = false, stopping = false, told_stop = false;
  for (;;) {
    while (std::optional<Message> m = mail.poll()) {
      if (m->tag == kWork) {
        const json j = json::parse(m->payload);
        for (const json& w : j.at("requests")) local.push_back(request_from_wire(w));
        if (j.at("done").get<bool>()) no_more = true;
        requested = false;
      } else if (m->tag == kStop) {
        stopping = true;
      } else {
        TPI_FAIL("replica leader: unexpected message tag " << m->tag << " from rank " << m->source);
      }
    }
    if (!told_stop && (stop_signalled() || sched.stop_requested())) {
      mail.send(0, kStop, "");  // rank 0 decides; it answers with kStop
      told_stop = true;
    }
    if (stopping) {
      sched.abandon_all();
      break;
    }
    while (sched.free_slots() > 0 && !local.empty()) {
      BatchRequest r = std::move(local.front());
      local.pop_front();
      if (std::optional<BatchResult> done = sched.admit(std::move(r))) {
        mail.send(0, kResult, format_result_line(*done));
      }
    }
    // Keep a reserve of one batch beyond the free slots, so a finished slot refills at once.
    const int reserve = sched.n_slots();
    if (!no_more && !requested && static_cast<int>(local.size()) < reserve) {
      const int want = sched.free_slots() + reserve - static_cast<int>(local.size());
      mail.send(0, kWorkRequest, json{{"want", want}}.dump());
      requested = true;
    }
    if (sched.active() > 0) {
      for (const BatchResult& r : sched.step()) mail.send(0, kResult, format_result_line(r));
    } else if (no_more && local.empty()) {
      break;
    } else {
      // Rank 0 answers between its own steps.
      watch_waiting("the mailbox for work (batch requests)", 0);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  sched.release_followers();
  mail.send(0, kBye, "");
  watch_waiting("the mailbox for the coordinator's acknowledgement", 0);
  for (;;) {  // whatever rank 0 sent before it saw the BYE (a stop, a last reply) is moot now
    const Message m = mail.wait();
    if (m.tag == kByeAck) break;
  }
}

// --- The end: one summary line and, if asked, the metrics file (rank 0) -------------------

struct RunSummary {
  const Prepared* prep;
  int n_todo, n_slots, max_seq;
  bool interrupted;
  double launch_to_start_s, load_ms, wall_s;
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
                "tokens | %.1f generated tok/s, %.1f total tok/s | dp %d x tp %d, %d slot(s) per "
                "replica | per replica: %s",
                progress.done(), s.n_todo, cfg.output.c_str(), s.wall_s,
                static_cast<long long>(progress.prompt_tokens()),
                static_cast<long long>(progress.completion_tokens()), gen_tps, all_tps, world.dp(),
                world.tp(), s.n_slots, per_replica.c_str());
  log_info(line);
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
            {"max_seq", s.max_seq}};
  m.update(describe_run(world, cfg, eng));
  write_metrics_json(cfg.metrics_json, m);
}

}  // namespace

void run_batch_job(World& world, const RunConfig& cfg,
                   std::chrono::steady_clock::time_point launch) {
  TPI_CHECK(!cfg.input.empty() && !cfg.output.empty(),
            "batch inference needs both input and output (JSON Lines files)");
  StopSignals signals;
  ModelHandle model = open_model(world, cfg);
  check_tp_layout(world);
  const bool coordinator = world.rank() == 0;
  const bool leader = world.tp_rank() == 0;
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
  int64_t shape_info[2] = {static_cast<int64_t>(prep.todo.size()), prep.max_needed};
  world.broadcast_world(shape_info, sizeof shape_info);
  const int n_todo = static_cast<int>(shape_info[0]);
  if (coordinator) {
    TPI_LOG_INFO << "batch: " << prep.n_valid << " request(s) in " << cfg.input << ", "
                 << prep.n_already_done << " already in " << cfg.output << ", " << prep.n_bad
                 << " bad line(s) skipped; " << n_todo << " to run on " << dp
                 << " replica(s) of tp=" << world.tp();
  }
  if (n_todo == 0) {
    if (coordinator) log_info("batch: nothing to do");
    return;
  }

  std::unique_ptr<ResultWriter> writer = std::move(prep.writer);  // opened and locked above

  EngineShape shape;
  const int needed = static_cast<int>(shape_info[1]);
  shape.max_seq = cfg.max_seq > 0 ? cfg.max_seq : std::max(16, (needed + 15) / 16 * 16);
  // No more slots than a replica can fill.
  shape.n_slots = std::max(1, std::min(cfg.batch_size, (n_todo + dp - 1) / dp));
  shape.max_tokens = std::max(shape.n_slots, std::min(shape.max_seq, 512));
  shape.max_logit_rows = shape.n_slots;
  EngineHandle eng = start_engine(world, cfg, model, shape);

  Mailbox mail(world);
  std::unique_ptr<Progress> progress;

  const Clock::time_point t_start = Clock::now();
  CoordinatorOutcome outcome;
  // From here on ranks are in collectives together: a failure cannot be agreed on, so it ends
  // the whole job (complete result lines stay; a rerun resumes).
  try {
    if (!leader) {
      follow_replica_leader(*eng.engine, world, stop_signalled);
    } else {
      ReplicaScheduler sched(*eng.engine, world, *model.tokenizer, model.stop_ids, world.dp_rank(),
                             stop_signalled);
      if (coordinator) {
        progress = std::make_unique<Progress>(n_todo, cfg.progress_interval_s);
        outcome = run_coordinator(world, mail, sched, std::move(prep.todo), *writer, *progress);
      } else {
        run_replica_leader(world, mail, sched);
      }
    }
    mail.flush();
    watch_phase(Phase::idle);  // until every replica is done, however long that takes
    mail.sleepy_barrier();
    watch_phase(Phase::finish);
  } catch (const std::exception& e) {
    log_error(std::string("error during batch inference, aborting the job: ") + e.what());
    world.abort(1);
  }
  const bool interrupted = world.all_reduce_max_world(outcome.stopped ? 1 : 0) != 0;
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
      RunSummary sum{&prep,         n_todo,
                     shape.n_slots, shape.max_seq,
                     interrupted,   std::chrono::duration<double>(t_start - launch).count(),
                     eng.load_ms,   seconds_since(t_start)};
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
