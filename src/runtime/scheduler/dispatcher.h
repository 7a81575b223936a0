// Requests across the data-parallel replicas, for every front end. Roles:
//   world rank 0  dispatcher: owns the RequestQueue the front end fills (one prompt, a batch
//                 file, or HTTP threads), hands requests out on demand, delivers every replica's
//                 deltas and outcomes to the front end's RequestEvents, and forwards cancels. It
//                 is also the leader of replica 0 and decodes between serving messages.
//   tp rank 0     replica leader: asks rank 0 for work when it has room, runs continuous
//                 batching (ReplicaScheduler) and sends each delta and outcome back at once.
//   tp rank > 0   follower: runs the forwards its leader broadcasts.
// Work is pulled, not pushed, so fast replicas take more and nothing waits at a replica that
// cannot start it soon; a leader's request for work waits at rank 0 until there is some.
// Shutdown is a handshake: a leader sends BYE after its last message and rank 0 acknowledges,
// so no message is ever left unmatched.
// A stop (SIGTERM/SIGINT on any rank) closes the queue (what waits there ends "cancelled"),
// then, after a grace period (0 for batch files: a rerun redoes the work), drops what still
// runs; every request rank 0 handed out ends with exactly one outcome.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <unordered_set>
#include <utility>
#include <vector>

#include "comm/world.h"
#include "runtime/scheduler/replica_scheduler.h"
#include "runtime/scheduler/request.h"

namespace tpinfer {

// The requests waiting on rank 0, filled by a front end from any thread. Bounded: a push beyond
// the capacity is refused, never blocks.
class RequestQueue {
 public:
  explicit RequestQueue(size_t capacity = SIZE_MAX) : capacity_(capacity) {}
  uint64_t new_seq();  // a fresh sequence number for a request about to be pushed
  enum class Push { ok, full, closed };
  Push push(ScheduledRequest r);
  std::optional<ScheduledRequest> pop();
  int remove(uint64_t seq);  // takes a request out if it still waits here: its n, else 0
  void close();              // refuses every later push
  // Closes, and takes out everything waiting: (seq, n) of each.
  std::vector<std::pair<uint64_t, int>> drain();
  bool closed() const;
  size_t size() const;
  // Cancels from any thread; the dispatcher applies them between steps.
  void cancel(uint64_t seq);
  std::vector<uint64_t> take_cancels();

 private:
  mutable std::mutex mu_;
  std::deque<ScheduledRequest> items_;
  std::vector<uint64_t> cancels_;
  size_t capacity_;
  uint64_t next_seq_ = 1;
  bool closed_ = false;
};

// The replicas' KV cache counters as rank 0 last heard them. Thread-safe (a /metrics scrape
// reads while the dispatcher writes).
class KvStatsBoard {
 public:
  void set(int replica, const KvCacheStats& s);
  KvCacheStats total() const;  // summed over the replicas
  int replicas() const;        // how many have reported

 private:
  mutable std::mutex mu_;
  std::vector<KvCacheStats> per_replica_;
  std::vector<bool> reported_;
};

struct DispatchOptions {
  // Leaders keep a second batch of requests on hand, so a finished slot refills at once (batch
  // files: throughput). Off for a server: a request waits at rank 0, where any replica can take it.
  bool keep_reserve = true;
  // After a stop, running requests get this long to finish before they are dropped.
  double grace_s = 0.0;
  std::function<void()> on_stop;  // rank 0, once, when a stop begins (e.g. stop accepting)
  std::function<void()> tick;     // rank 0, every turn of the loop (progress reports)
  bool prefix_caching = true;     // the replicas reuse cached prompt blocks (config key)
  // Rank 0: where each replica's KV cache counters land (replica 0's after every step, the
  // others' with their outcomes and work requests: no message of their own). Null: not kept.
  KvStatsBoard* kv_stats = nullptr;
};

struct DispatchResult {
  bool stopped = false;  // a stop signal ended the run (on every rank)
  const char* signal = "";
  KvCacheStats kv;  // replica 0's paged KV cache at the end (rank 0)
};

// The caller holds a StopSignals (core/stop_signals.h) for the job's duration.
// Runs this rank's role until the queue is closed and everything in it has finished (or a stop
// has ended the run). queue and events are rank 0's (null elsewhere); tokenizer, stop_ids and
// sample_vocab as for ReplicaScheduler (leaders; a null tokenizer: ids without text). Every rank
// returns the same `stopped`.
DispatchResult run_replicas(World& world, Engine& engine, const Tokenizer* tokenizer,
                            const std::vector<int32_t>& stop_ids, int sample_vocab,
                            RequestQueue* queue, RequestEvents* events,
                            const DispatchOptions& options);

}  // namespace tpinfer
