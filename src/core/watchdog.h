// The watchdog: a heartbeat that the job's loops update (what this rank is doing now, and a
// beat each time something completes: a layer, a collective, a step) and a thread that watches
// it. When a rank sees no beat for its limit (a peer stopped, hung or became unreachable, so a
// collective never completes), it prints one line naming its rank and what it was waiting on,
// gives the other ranks a moment to say the same, and runs the abort action (MPI_Abort: the
// whole job ends with a non-zero exit instead of holding its allocation). It measures time
// without progress, never the length of the run. The limit is `step_timeout_s` when given, else
// adaptive: max(60 s, 3 x the longest time without progress seen so far outside loading), and
// at least 300 s while loading (the model, a batch input, a prompt). Rank 0 and the other
// replica leaders, which wait on each other's messages without a blocking call, also watch
// each other: one silent for the limit is named (watch_peer). Updating the heartbeat is a few
// relaxed atomic stores: no lock, no allocation, no clock read, so it costs nothing in the
// decode loop.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace tpinfer {

// What this rank is doing. `idle` is not watched: a rank waiting for requests (a server) or for
// other data-parallel replicas to finish their own (arbitrarily long) work has nothing to time.
enum class Phase : int {
  startup,        // before the job's first phase
  load,           // model files, tokenizer, weights
  prompt,         // the leader reads and tokenizes the prompt
  batch_prepare,  // rank 0 reads and tokenizes the batch input
  step,           // scheduler step N of this replica (prefill chunks and decode tokens)
  idle,           // waiting for requests or other replicas (unwatched)
  finish,         // metrics, summary, agreement at the end
};

const char* phase_name(Phase phase);

// Heartbeat, called from the main thread. Each call counts as progress and clears the wait.
void watch_phase(Phase phase, int64_t step = -1) noexcept;
void watch_beat() noexcept;  // progress within a phase (a tensor loaded, a message received)
// Marks a wait that is not one blocking call (polling for a message) without counting as
// progress; the next watch_phase clears it. `what` as for WatchWait.
void watch_waiting(const char* what, int peer) noexcept;

// Marks a blocking collective for its lifetime: `what` must be a string literal (it is read by
// the watchdog thread), `peer` the world rank it waits on (-1: every rank of the group).
// Completing it counts as progress.
class WatchWait {
 public:
  explicit WatchWait(const char* what, int peer = -1) noexcept;
  ~WatchWait();
  WatchWait(const WatchWait&) = delete;
  WatchWait& operator=(const WatchWait&) = delete;
};

// "step 12, waiting in broadcast (tp group) from rank 0": the current activity.
std::string describe_activity();

// A peer this rank expects messages from without waiting in a blocking call (rank 0 and the
// other replicas' leaders). watch_peer(rank, true) starts the clock; each watch_peer_heard(rank)
// resets it; watch_peer(rank, false) ends the watch. `slowest_step_s`: the longest step that
// peer has reported (its silence during one step is not a stall). Ranks >= 4096 are not watched.
void watch_peer(int rank, bool watched) noexcept;
void watch_peer_heard(int rank, double slowest_step_s = 0) noexcept;

// The adaptive limit's parts. The floor is 60 s; TPINFER_WATCHDOG_FLOOR_S overrides it (tests).
constexpr double kWatchdogFloorS = 60.0;
constexpr double kWatchdogStepFactor = 3.0;
constexpr double kWatchdogLoadS = 300.0;  // the least limit while loading (model, input)

class Watchdog {
 public:
  // timeout_s > 0: that fixed limit; < 0: the adaptive limit; 0: no thread, nothing watched.
  // on_timeout runs on the watchdog thread after the message is printed and the grace period; it
  // is expected not to return (MPI_Abort).
  Watchdog(double timeout_s, int rank, std::function<void()> on_timeout);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  void run();
  double limit(double slowest_s, bool loading) const;  // the limit in force now

  double timeout_s_;
  double floor_s_ = kWatchdogFloorS;
  int rank_;
  std::function<void()> on_timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace tpinfer
