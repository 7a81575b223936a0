// The heartbeat is process-wide state (one job per process): the main thread writes it with
// relaxed atomics, the watchdog thread reads it once per tick and keeps the clock.
#include "core/watchdog.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace tpinfer {
namespace {

std::atomic<uint64_t> g_beat{0};
std::atomic<int> g_phase{static_cast<int>(Phase::startup)};
std::atomic<int64_t> g_step{-1};
std::atomic<const char*> g_wait{nullptr};
std::atomic<int> g_wait_peer{-1};

// Peers watched by their messages (watch_peer): static storage, so zero before any use.
constexpr int kMaxPeers = 4096;
std::atomic<uint64_t> g_peer_heard[kMaxPeers];
std::atomic<bool> g_peer_watched[kMaxPeers];
std::atomic<float> g_peer_slowest[kMaxPeers];
std::atomic<int> g_peer_end{0};  // one past the highest rank ever watched

}  // namespace

void watch_peer(int rank, bool watched) noexcept {
  if (rank < 0 || rank >= kMaxPeers) return;
  g_peer_heard[rank].fetch_add(1, std::memory_order_relaxed);
  g_peer_watched[rank].store(watched, std::memory_order_relaxed);
  int end = g_peer_end.load(std::memory_order_relaxed);
  while (end <= rank && !g_peer_end.compare_exchange_weak(end, rank + 1)) {
  }
}

void watch_peer_heard(int rank, double slowest_step_s) noexcept {
  if (rank < 0 || rank >= kMaxPeers) return;
  if (slowest_step_s > g_peer_slowest[rank].load(std::memory_order_relaxed)) {
    g_peer_slowest[rank].store(static_cast<float>(slowest_step_s), std::memory_order_relaxed);
  }
  g_peer_heard[rank].fetch_add(1, std::memory_order_relaxed);
}

const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::startup:
      return "starting up";
    case Phase::load:
      return "loading the model";
    case Phase::prompt:
      return "preparing the prompt";
    case Phase::batch_prepare:
      return "reading the batch input";
    case Phase::step:
      return "step";
    case Phase::idle:
      return "waiting for requests or for the other replicas";
    case Phase::finish:
      return "finishing (metrics and summary)";
  }
  return "?";
}

void watch_phase(Phase phase, int64_t step) noexcept {
  g_wait.store(nullptr, std::memory_order_relaxed);
  g_phase.store(static_cast<int>(phase), std::memory_order_relaxed);
  g_step.store(step, std::memory_order_relaxed);
  g_beat.fetch_add(1, std::memory_order_relaxed);
}

void watch_beat() noexcept {
  g_beat.fetch_add(1, std::memory_order_relaxed);
}

void watch_waiting(const char* what, int peer) noexcept {
  g_wait_peer.store(peer, std::memory_order_relaxed);
  g_wait.store(what, std::memory_order_relaxed);
}

WatchWait::WatchWait(const char* what, int peer) noexcept {
  g_wait_peer.store(peer, std::memory_order_relaxed);
  g_wait.store(what, std::memory_order_relaxed);
}

WatchWait::~WatchWait() {
  g_wait.store(nullptr, std::memory_order_relaxed);
  g_beat.fetch_add(1, std::memory_order_relaxed);
}

std::string describe_activity() {
  const Phase phase = static_cast<Phase>(g_phase.load(std::memory_order_relaxed));
  const int64_t step = g_step.load(std::memory_order_relaxed);
  const char* wait = g_wait.load(std::memory_order_relaxed);
  const int peer = g_wait_peer.load(std::memory_order_relaxed);
  // Appended piece by piece (`"x" + std::string` trips GCC 12's -Wrestrict false positive).
  std::string s = phase_name(phase);
  if (step >= 0) {
    s += ' ';
    s += std::to_string(step);
  }
  if (wait == nullptr) {
    s += ", computing or in a call that is not a collective";
    return s;
  }
  s += ", waiting in ";
  s += wait;
  if (peer >= 0) {
    s += " from rank ";
    s += std::to_string(peer);
  } else {
    s += " with every rank in it";
  }
  return s;
}

Watchdog::Watchdog(double timeout_s, int rank, std::function<void()> on_timeout)
    : timeout_s_(timeout_s), rank_(rank), on_timeout_(std::move(on_timeout)) {
  if (const char* f = std::getenv("TPINFER_WATCHDOG_FLOOR_S")) {
    const double v = std::atof(f);
    if (v > 0) floor_s_ = v;
  }
  if (timeout_s_ != 0) thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

double Watchdog::limit(double slowest_s, bool loading) const {
  if (timeout_s_ > 0) return timeout_s_;
  double l = std::max(floor_s_, kWatchdogStepFactor * slowest_s);
  if (loading) l = std::max(l, kWatchdogLoadS);
  return l;
}

void Watchdog::run() {
  using Clock = std::chrono::steady_clock;
  using Seconds = std::chrono::duration<double>;
  struct PeerClock {
    bool watched = false;
    uint64_t heard = 0;
    Clock::time_point last;
  };
  std::vector<PeerClock> peers;
  double slowest = 0;  // the longest time without progress seen outside loading (adaptive)
  uint64_t seen = g_beat.load(std::memory_order_relaxed);
  Clock::time_point last_progress = Clock::now(), last_tick = last_progress;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    const Phase phase = static_cast<Phase>(g_phase.load(std::memory_order_relaxed));
    // Loading, and rank 0 reading a batch input or a prompt (tokenizing a large file beats no
    // layer): the old fixed 300 s at least.
    const bool loading = phase == Phase::startup || phase == Phase::load ||
                         phase == Phase::prompt || phase == Phase::batch_prepare;
    const double lim = limit(slowest, loading);
    // A tick well below the limit, so a stall is seen within about 1/5 of it late at most.
    const Seconds tick(std::min(1.0, std::max(0.05, lim / 5)));
    if (cv_.wait_for(lock, tick, [this] { return stop_; })) return;
    const uint64_t beat = g_beat.load(std::memory_order_relaxed);
    const bool idle = g_phase.load(std::memory_order_relaxed) == static_cast<int>(Phase::idle);
    const Clock::time_point now = Clock::now();
    // A gap this long between two ticks means this process itself was not running (stopped
    // with SIGSTOP, suspended): the stall was ours, not a peer's. Open MPI sends SIGCONT before
    // it kills a job's ranks, so a stopped rank runs again briefly and must not then blame the
    // others.
    const bool was_suspended = now - last_tick > Seconds(std::max(lim / 2, 2.0));
    last_tick = now;

    // The peers this rank waits on by their messages.
    const int end = g_peer_end.load(std::memory_order_relaxed);
    if (static_cast<int>(peers.size()) < end) peers.resize(static_cast<size_t>(end));
    int silent = -1;
    double silent_s = 0, silent_limit = 0;
    for (int r = 0; r < end; ++r) {
      PeerClock& p = peers[static_cast<size_t>(r)];
      if (!g_peer_watched[r].load(std::memory_order_relaxed)) {
        p.watched = false;
        continue;
      }
      const uint64_t heard = g_peer_heard[r].load(std::memory_order_relaxed);
      if (!p.watched || heard != p.heard || was_suspended) {
        p = PeerClock{true, heard, now};
        continue;
      }
      const double s_silent = Seconds(now - p.last).count();
      const double peer_limit = limit(
          std::max<double>(slowest, g_peer_slowest[r].load(std::memory_order_relaxed)), false);
      if (silent < 0 && s_silent >= peer_limit) {
        silent = r;
        silent_s = s_silent;
        silent_limit = peer_limit;
      }
    }

    char line[768];
    int n = 0;
    if (silent >= 0) {
      n = std::snprintf(line, sizeof line,
                        "tpinfer: error: [rank %d] watchdog: no message for %.1f s (limit %.0f s) "
                        "from rank %d, a data-parallel replica leader this rank exchanges "
                        "requests with (this rank: %s); it has stopped, hung or become "
                        "unreachable, aborting the job\n",
                        rank_, silent_s, silent_limit, silent, describe_activity().c_str());
    } else {
      if (beat != seen || idle || was_suspended) {
        if (beat != seen && !idle && !was_suspended && !loading) {
          slowest = std::max(slowest, Seconds(now - last_progress).count());
        }
        seen = beat;
        last_progress = now;
        continue;
      }
      const double stalled_s = Seconds(now - last_progress).count();
      if (stalled_s < lim) continue;
      char why[160];
      if (timeout_s_ > 0) {
        std::snprintf(why, sizeof why, "step_timeout_s=%g", timeout_s_);
      } else {
        std::snprintf(why, sizeof why,
                      "adaptive limit %.0f s = max(%g s, %g x the slowest step %.1f s)%s", lim,
                      floor_s_, kWatchdogStepFactor, slowest,
                      loading ? ", at least 300 s while loading" : "");
      }
      n = std::snprintf(
          line, sizeof line,
          "tpinfer: error: [rank %d] watchdog: no progress for %.1f s (%s) in %s; a rank has "
          "stopped, hung or become unreachable (one that does not report this), aborting the "
          "job\n",
          rank_, stalled_s, why, describe_activity().c_str());
    }
    // One write, so the line is not interleaved with other ranks' lines.
    if (n > 0) {
      const size_t len = std::min(static_cast<size_t>(n), sizeof line - 1);
      [[maybe_unused]] const ssize_t w = ::write(STDERR_FILENO, line, len);
    }
    // The other ranks still running time out about now too: let them print before the abort
    // (which ends them), unless this job ends meanwhile.
    if (cv_.wait_for(lock, 2 * tick + Seconds(1.0), [this] { return stop_; })) return;
    lock.unlock();
    on_timeout_();
    return;
  }
}

}  // namespace tpinfer
