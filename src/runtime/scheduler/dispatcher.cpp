#include "runtime/scheduler/dispatcher.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>

#include "comm/mailbox.h"
#include "core/error.h"
#include "core/log.h"
#include "core/stop_signals.h"
#include "core/watchdog.h"
#include "runtime/scheduler/wire.h"

namespace tpinfer {

// --- RequestQueue ------------------------------------------------------------------------------

uint64_t RequestQueue::new_seq() {
  std::lock_guard<std::mutex> lock(mu_);
  return next_seq_++;
}

RequestQueue::Push RequestQueue::push(ScheduledRequest r) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return Push::closed;
  if (items_.size() >= capacity_) return Push::full;
  items_.push_back(std::move(r));
  return Push::ok;
}

std::optional<ScheduledRequest> RequestQueue::pop() {
  std::lock_guard<std::mutex> lock(mu_);
  if (items_.empty()) return std::nullopt;
  ScheduledRequest r = std::move(items_.front());
  items_.pop_front();
  return r;
}

int RequestQueue::remove(uint64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(items_.begin(), items_.end(),
                         [seq](const ScheduledRequest& r) { return r.seq == seq; });
  if (it == items_.end()) return 0;
  const int n = std::max(1, it->request.n);
  items_.erase(it);
  return n;
}

void RequestQueue::close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
}

std::vector<std::pair<uint64_t, int>> RequestQueue::drain() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  std::vector<std::pair<uint64_t, int>> seqs;
  for (const ScheduledRequest& r : items_) seqs.emplace_back(r.seq, std::max(1, r.request.n));
  items_.clear();
  return seqs;
}

bool RequestQueue::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

size_t RequestQueue::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return items_.size();
}

void RequestQueue::cancel(uint64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  cancels_.push_back(seq);
}

std::vector<uint64_t> RequestQueue::take_cancels() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> out;
  out.swap(cancels_);
  return out;
}

// --- KvStatsBoard ------------------------------------------------------------------------------

void KvStatsBoard::set(int replica, const KvCacheStats& s) {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t r = static_cast<size_t>(replica);
  if (r >= per_replica_.size()) {
    per_replica_.resize(r + 1);
    reported_.resize(r + 1, false);
  }
  per_replica_[r] = s;
  reported_[r] = true;
}

KvCacheStats KvStatsBoard::total() const {
  std::lock_guard<std::mutex> lock(mu_);
  KvCacheStats t;
  for (const KvCacheStats& s : per_replica_) {
    t.blocks_total += s.blocks_total;
    t.blocks_used += s.blocks_used;
    t.blocks_cached += s.blocks_cached;
    t.prefix_query_tokens += s.prefix_query_tokens;
    t.prefix_hit_tokens += s.prefix_hit_tokens;
    t.preemptions += s.preemptions;
  }
  return t;
}

int KvStatsBoard::replicas() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(std::count(reported_.begin(), reported_.end(), true));
}

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

enum Tag : int {
  kWorkRequest = 1,  // leader -> 0: {"want": n}
  kWork = 2,         // 0 -> leader: {"requests": [...], "done": bool}
  kOutcome = 3,      // leader -> 0: a request's outcome
  kStopRequest = 4,  // leader -> 0: a stop signal arrived in my group
  kBye = 5,          // leader -> 0: no more messages from me
  kByeAck = 6,       // 0 -> leader: no more messages to you
  kDelta = 7,        // leader -> 0: a streaming request's delta
  kCancel = 8,       // 0 -> leader: {"seq": s} the client went away
  kDrain = 9,        // 0 -> leader: take no more work, finish what runs
  kStop = 10,        // 0 -> leader: drop what runs, say BYE
  kAlive = 11,       // leader <-> 0: {"slowest_step_s": x} every second (for the watchdog)
};

// How often rank 0 and each other replica leader tell each other they are alive (between their
// steps): the watchdog names a peer silent for its limit (watch_peer).
constexpr auto kAliveInterval = std::chrono::seconds(1);

GenerationOutcome cancelled_outcome(int index) {
  GenerationOutcome o;
  o.index = index;
  o.finish_reason = "cancelled";
  return o;
}

// A request that never ran ends with one "cancelled" outcome per choice.
void end_cancelled(RequestEvents& events, uint64_t seq, int n) {
  for (int i = 0; i < n; ++i) events.on_finish(seq, cancelled_outcome(i));
}

// --- Rank 0 ------------------------------------------------------------------------------------

class Dispatcher : public RequestEvents {
 public:
  Dispatcher(World& world, Mailbox& mail, RequestQueue& queue, RequestEvents& front,
             const DispatchOptions& opts)
      : world_(world), mail_(mail), queue_(queue), front_(front), opts_(opts) {
    pending_want_.assign(static_cast<size_t>(world.dp()), 0);
    said_bye_.assign(static_cast<size_t>(world.dp()), false);
    said_bye_[0] = true;  // this rank
    for (int d = 1; d < world.dp(); ++d) watch_peer(d * world.replica_size(), true);
  }
  ~Dispatcher() override {
    for (int d = 1; d < world_.dp(); ++d) watch_peer(d * world_.replica_size(), false);
  }

  // From replica 0's scheduler.
  void on_delta(uint64_t seq, GenerationDelta d) override {
    if (in_flight_.count(seq)) front_.on_delta(seq, std::move(d));
  }
  void on_finish(uint64_t seq, GenerationOutcome o) override {
    auto it = in_flight_.find(seq);
    if (it == in_flight_.end()) return;  // already ended (dropped at a stop)
    InFlight& f = it->second;
    const size_t index = static_cast<size_t>(o.index);
    if (index >= f.done.size() || f.done[index]) return;  // that choice has ended already
    f.done[index] = 1;
    o.queue_ms = std::chrono::duration<double, std::milli>(f.handed - f.queued).count();
    if (--f.left == 0) in_flight_.erase(it);  // every choice has its outcome
    front_.on_finish(seq, std::move(o));
  }

  DispatchResult run(ReplicaScheduler& local);

 private:
  struct InFlight {
    int replica = 0;
    Clock::time_point queued, handed;
    std::vector<char> done;  // per choice: its outcome was delivered
    int left = 1;            // choices without an outcome
  };
  void serve_messages();
  void apply_cancels(ReplicaScheduler& local);
  void begin_stop(ReplicaScheduler& local);
  void drop_running(ReplicaScheduler& local);
  void hand_out_remote();
  void track(const ScheduledRequest& r, int replica) {
    const int n = std::max(1, r.request.n);
    in_flight_[r.seq] =
        InFlight{replica, r.queued, Clock::now(), std::vector<char>(static_cast<size_t>(n), 0), n};
  }
  void note_kv(int replica, const KvCacheStats& s) {
    if (opts_.kv_stats) opts_.kv_stats->set(replica, s);
  }

  World& world_;
  Mailbox& mail_;
  RequestQueue& queue_;
  RequestEvents& front_;
  const DispatchOptions& opts_;
  std::unordered_map<uint64_t, InFlight> in_flight_;
  std::vector<int> pending_want_;  // per replica: requests its leader asked for, not yet given
  std::vector<bool> said_bye_;
  int n_bye_ = 1;
  bool stop_from_message_ = false, stopping_ = false, dropped_ = false;
  Clock::time_point deadline_;
  Clock::time_point last_alive_ = Clock::now() - kAliveInterval;
  double slowest_step_s_ = 0;
  DispatchResult result_;
};

void Dispatcher::serve_messages() {
  const int leader_stride = world_.replica_size();  // replica d's leader is rank d * this
  while (std::optional<Message> m = mail_.poll()) {
    const int replica = m->source / leader_stride;
    if (m->tag == kAlive) {
      watch_peer_heard(m->source, json::parse(m->payload).at("slowest_step_s").get<double>());
      continue;
    }
    watch_peer_heard(m->source);
    switch (m->tag) {
      case kWorkRequest: {
        const json j = json::parse(m->payload);
        pending_want_[replica] = j.at("want").get<int>();
        if (j.contains("kv")) note_kv(replica, kv_stats_from_wire(j.at("kv")));
        break;
      }
      case kDelta: {
        uint64_t seq = 0;
        GenerationDelta d = delta_from_wire(m->payload, seq);
        on_delta(seq, std::move(d));
        break;
      }
      case kOutcome: {
        uint64_t seq = 0;
        std::optional<KvCacheStats> kv;
        GenerationOutcome o = outcome_from_wire(m->payload, seq, &kv);
        if (kv) note_kv(replica, *kv);
        on_finish(seq, std::move(o));
        break;
      }
      case kStopRequest:
        stop_from_message_ = true;
        break;
      case kBye:
        TPI_CHECK(!said_bye_[replica], "dispatcher: two BYEs from rank " << m->source);
        said_bye_[replica] = true;
        watch_peer(m->source, false);
        pending_want_[replica] = 0;
        ++n_bye_;
        mail_.send(m->source, kByeAck, "");
        break;
      default:
        TPI_FAIL("dispatcher: unexpected message tag " << m->tag << " from rank " << m->source);
    }
  }
}

void Dispatcher::apply_cancels(ReplicaScheduler& local) {
  for (uint64_t seq : queue_.take_cancels()) {
    if (const int n = queue_.remove(seq)) {  // never handed out: it ends here
      end_cancelled(front_, seq, n);
      continue;
    }
    auto it = in_flight_.find(seq);
    if (it == in_flight_.end()) continue;  // finished meanwhile
    if (it->second.replica == 0) {
      local.cancel(seq);  // reports "cancelled" through on_finish
    } else if (!said_bye_[it->second.replica]) {
      mail_.send(it->second.replica * world_.replica_size(), kCancel, json{{"seq", seq}}.dump());
    }
  }
}

void Dispatcher::begin_stop(ReplicaScheduler& local) {
  stopping_ = true;
  result_.stopped = true;
  result_.signal = stop_signal_name();
  if (opts_.on_stop) opts_.on_stop();
  for (const auto& [seq, n] : queue_.drain()) end_cancelled(front_, seq, n);
  if (opts_.grace_s <= 0) {
    drop_running(local);
    return;
  }
  deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(opts_.grace_s));
  for (int d = 1; d < world_.dp(); ++d) {
    if (!said_bye_[d]) mail_.send(d * world_.replica_size(), kDrain, "");
  }
}

void Dispatcher::drop_running(ReplicaScheduler& local) {
  dropped_ = true;
  local.abandon_all();
  for (int d = 1; d < world_.dp(); ++d) {
    if (!said_bye_[d]) mail_.send(d * world_.replica_size(), kStop, "");
  }
}

void Dispatcher::hand_out_remote() {
  const int dp = world_.dp();
  for (int d = 1; d < dp; ++d) {
    const int want = pending_want_[d];
    if (want <= 0 || said_bye_[d]) continue;
    json reply = {{"requests", json::array()}, {"done", false}};
    // Leave some for the others: at most an even share of what waits.
    const int share = std::max<int>(1, static_cast<int>((queue_.size() + dp - 1) / dp));
    for (int i = 0; i < std::min(want, share); ++i) {
      std::optional<ScheduledRequest> r = queue_.pop();
      if (!r) break;
      track(*r, d);
      reply["requests"].push_back(request_to_wire(*r));
    }
    const bool done = queue_.closed() && queue_.size() == 0;
    if (reply["requests"].empty() && !done) continue;  // the want waits for work
    reply["done"] = done;
    pending_want_[d] = 0;
    mail_.send(d * world_.replica_size(), kWork,
               reply.dump(-1, ' ', false, json::error_handler_t::replace));
  }
}

DispatchResult Dispatcher::run(ReplicaScheduler& local) {
  for (;;) {
    serve_messages();
    apply_cancels(local);
    if (!stopping_ && (stop_signalled() || local.stop_requested() || stop_from_message_)) {
      char grace[32];
      std::snprintf(grace, sizeof grace, "%g", opts_.grace_s);
      log_warn(std::string("stop requested (") + stop_signal_name() + ")" +
               (opts_.grace_s > 0
                    ? std::string(": no new requests; running ones get up to ") + grace + " s"
                    : ": finishing the results that are complete, dropping work "
                      "in progress"));
      begin_stop(local);
    }
    if (stopping_ && !dropped_ && Clock::now() >= deadline_) {
      if (local.active() > 0 || !in_flight_.empty()) {
        log_warn("grace period over: dropping " + std::to_string(in_flight_.size()) +
                 " running request(s)");
      }
      drop_running(local);
    }
    hand_out_remote();
    while (!stopping_ && local.free_slots() > 0) {
      std::optional<ScheduledRequest> r = queue_.pop();
      if (!r) break;
      track(*r, 0);
      local.admit(std::move(*r));
    }
    if (Clock::now() - last_alive_ >= kAliveInterval) {
      const std::string alive = json{{"slowest_step_s", slowest_step_s_}}.dump();
      for (int d = 1; d < world_.dp(); ++d) {
        if (!said_bye_[d]) mail_.send(d * world_.replica_size(), kAlive, alive);
      }
      last_alive_ = Clock::now();
    }
    if (local.active() > 0) {
      const Clock::time_point t = Clock::now();
      local.step();
      slowest_step_s_ =
          std::max(slowest_step_s_, std::chrono::duration<double>(Clock::now() - t).count());
      note_kv(0, local.kv_stats());
    } else {
      const bool no_more_local = stopping_ || (queue_.closed() && queue_.size() == 0);
      if (no_more_local) {
        local.release_followers();  // replica 0 is done for good
        if (n_bye_ == world_.dp()) break;
      } else {
        local.idle_heartbeat();
      }
      watch_phase(Phase::idle);  // requests (or other replicas) may take any time
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    if (opts_.tick) opts_.tick();
  }
  // Whatever was handed out and never finished (dropped at a stop) ends "cancelled".
  std::vector<std::pair<uint64_t, std::vector<char>>> left;
  for (const auto& [seq, f] : in_flight_) left.emplace_back(seq, f.done);
  std::sort(left.begin(), left.end());
  for (const auto& [seq, done] : left) {
    for (size_t i = 0; i < done.size(); ++i) {
      if (!done[i]) on_finish(seq, cancelled_outcome(static_cast<int>(i)));
    }
  }
  return result_;
}

// --- Other replica leaders -------------------------------------------------------------------

class LeaderRelay : public RequestEvents {
 public:
  explicit LeaderRelay(Mailbox& mail) : mail_(mail) {}
  void on_delta(uint64_t seq, GenerationDelta d) override {
    mail_.send(0, kDelta, delta_to_wire(seq, d));
  }
  // Outcomes carry the replica's KV cache counters as they stand (no message of their own).
  void on_finish(uint64_t seq, GenerationOutcome o) override {
    const KvCacheStats kv = sched_ ? sched_->kv_stats() : KvCacheStats{};
    mail_.send(0, kOutcome, outcome_to_wire(seq, o, sched_ ? &kv : nullptr));
  }
  void attach(const ReplicaScheduler& sched) { sched_ = &sched; }
  // Returns whether rank 0 told this replica to stop.
  bool run(ReplicaScheduler& sched, bool keep_reserve);

 private:
  Mailbox& mail_;
  const ReplicaScheduler* sched_ = nullptr;
};

bool LeaderRelay::run(ReplicaScheduler& sched, bool keep_reserve) {
  std::deque<ScheduledRequest> local;
  bool no_more = false, requested = false, told_stop = false, stopped = false;
  double slowest_step_s = 0;
  Clock::time_point last_alive = Clock::now() - kAliveInterval;
  auto cancel_waiting = [&] {
    for (const ScheduledRequest& r : local) end_cancelled(*this, r.seq, std::max(1, r.request.n));
    local.clear();
  };
  watch_peer(0, true);
  for (;;) {
    while (std::optional<Message> m = mail_.poll()) {
      if (m->tag == kAlive) {
        watch_peer_heard(0, json::parse(m->payload).at("slowest_step_s").get<double>());
        continue;
      }
      watch_peer_heard(0);
      if (m->tag == kWork) {
        const json j = json::parse(m->payload);
        for (const json& w : j.at("requests")) local.push_back(request_from_wire(w));
        if (j.at("done").get<bool>()) no_more = true;
        requested = false;
      } else if (m->tag == kCancel) {
        const uint64_t seq = json::parse(m->payload).at("seq").get<uint64_t>();
        auto it = std::find_if(local.begin(), local.end(),
                               [seq](const ScheduledRequest& r) { return r.seq == seq; });
        if (it != local.end()) {
          const int n = std::max(1, it->request.n);
          local.erase(it);
          end_cancelled(*this, seq, n);
        } else {
          sched.cancel(seq);
        }
      } else if (m->tag == kDrain) {
        no_more = true;
        cancel_waiting();
      } else if (m->tag == kStop) {
        stopped = true;
      } else {
        TPI_FAIL("replica leader: unexpected message tag " << m->tag << " from rank " << m->source);
      }
    }
    if (!told_stop && (stop_signalled() || sched.stop_requested())) {
      mail_.send(0, kStopRequest, "");  // rank 0 decides: kDrain or kStop comes back
      told_stop = true;
    }
    if (stopped) {
      sched.abandon_all();  // rank 0 ends what it handed out here
      break;
    }
    while (sched.free_slots() > 0 && !local.empty()) {
      sched.admit(std::move(local.front()));
      local.pop_front();
    }
    const int reserve = keep_reserve ? sched.n_slots() : 0;
    const int want = sched.free_slots() + reserve - static_cast<int>(local.size());
    if (!no_more && !requested && want > 0) {
      mail_.send(0, kWorkRequest,
                 json{{"want", want}, {"kv", kv_stats_to_wire(sched.kv_stats())}}.dump());
      requested = true;
    }
    if (Clock::now() - last_alive >= kAliveInterval) {
      mail_.send(0, kAlive, json{{"slowest_step_s", slowest_step_s}}.dump());
      last_alive = Clock::now();
    }
    if (sched.active() > 0) {
      const Clock::time_point t = Clock::now();
      sched.step();
      slowest_step_s =
          std::max(slowest_step_s, std::chrono::duration<double>(Clock::now() - t).count());
    } else if (no_more && local.empty()) {
      break;
    } else {
      sched.idle_heartbeat();
      watch_phase(Phase::idle);  // work comes when rank 0 has some: any time
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  sched.release_followers();
  mail_.send(0, kBye, "");
  watch_waiting("the mailbox for the dispatcher's acknowledgement", 0);
  for (;;) {  // whatever rank 0 sent before it saw the BYE (a cancel, a stop) is moot now
    const Message m = mail_.wait();
    watch_peer_heard(0);
    if (m.tag == kByeAck) break;
  }
  watch_peer(0, false);
  return stopped;
}

}  // namespace

DispatchResult run_replicas(World& world, Engine& engine, const Tokenizer* tokenizer,
                            const std::vector<int32_t>& stop_ids, int sample_vocab,
                            RequestQueue* queue, RequestEvents* events,
                            const DispatchOptions& options) {
  Mailbox mail(world);
  DispatchResult result;
  const bool leader = world.replica_rank() == 0;
  // From here on ranks are in collectives together: a failure cannot be agreed on, so it ends
  // the whole job (complete results stay written; a rerun resumes).
  try {
    if (!leader) {
      follow_replica_leader(engine, world, stop_signalled);
    } else if (world.rank() == 0) {
      TPI_CHECK(queue && events, "run_replicas: rank 0 needs the queue and the events");
      Dispatcher dispatcher(world, mail, *queue, *events, options);
      ReplicaScheduler sched(engine, world, tokenizer, stop_ids, sample_vocab, 0, stop_signalled,
                             dispatcher, options.prefix_caching);
      result = dispatcher.run(sched);
      result.kv = sched.kv_stats();
    } else {
      LeaderRelay relay(mail);
      ReplicaScheduler sched(engine, world, tokenizer, stop_ids, sample_vocab, world.dp_rank(),
                             stop_signalled, relay, options.prefix_caching);
      relay.attach(sched);
      relay.run(sched, options.keep_reserve);
    }
    mail.flush();
    watch_phase(Phase::idle);  // until every replica is done, however long that takes
    mail.sleepy_barrier();
    watch_phase(Phase::finish);
  } catch (const std::exception& e) {
    log_error(std::string("error while running requests, aborting the job: ") + e.what());
    world.abort(1);
  }
  result.stopped = world.all_reduce_max_world(result.stopped ? 1 : 0) != 0;
  return result;
}

}  // namespace tpinfer
