// The heartbeat is process-wide state (one job per process): the main thread writes it with
// relaxed atomics, the watchdog thread reads it once per tick and keeps the clock.
#include "core/watchdog.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>

namespace tpinfer {
namespace {

std::atomic<uint64_t> g_beat{0};
std::atomic<int> g_phase{static_cast<int>(Phase::startup)};
std::atomic<int64_t> g_step{-1};
std::atomic<const char*> g_wait{nullptr};
std::atomic<int> g_wait_peer{-1};

}  // namespace

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
  if (timeout_s_ > 0) thread_ = std::thread([this] { run(); });
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

void Watchdog::run() {
  using Clock = std::chrono::steady_clock;
  using Seconds = std::chrono::duration<double>;
  // A tick well below the timeout, so a stall is seen within about 1/5 of it late at most.
  const Seconds tick(std::min(1.0, std::max(0.05, timeout_s_ / 5)));
  // A gap this long between two ticks means this process itself was not running (stopped with
  // SIGSTOP, suspended): the stall was ours, not a peer's. Open MPI sends SIGCONT before it kills
  // a job's ranks, so a stopped rank runs again briefly and must not then blame the others.
  const Seconds suspended(std::max(timeout_s_ / 2, 2.0));
  uint64_t seen = g_beat.load(std::memory_order_relaxed);
  Clock::time_point last_progress = Clock::now(), last_tick = last_progress;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (cv_.wait_for(lock, tick, [this] { return stop_; })) return;
    const uint64_t beat = g_beat.load(std::memory_order_relaxed);
    const bool idle = g_phase.load(std::memory_order_relaxed) == static_cast<int>(Phase::idle);
    const Clock::time_point now = Clock::now();
    const bool was_suspended = now - last_tick > suspended;
    last_tick = now;
    if (beat != seen || idle || was_suspended) {
      seen = beat;
      last_progress = now;
      continue;
    }
    const double stalled_s = Seconds(now - last_progress).count();
    if (stalled_s < timeout_s_) continue;
    // One write, so the line is not interleaved with other ranks' lines.
    char line[640];
    const int n = std::snprintf(
        line, sizeof line,
        "tpinfer: error: [rank %d] watchdog: no progress for %.1f s (step_timeout_s=%g) in %s; "
        "a rank has stopped, hung or become unreachable (one that does not report this), "
        "aborting the job\n",
        rank_, stalled_s, timeout_s_, describe_activity().c_str());
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
