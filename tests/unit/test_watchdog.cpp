// The watchdog on its own: what it says a rank is doing, that it fires when the heartbeat stops
// (its abort action replaced by a flag), and that it does not while beats continue or while the
// rank is idle. The job-level test (a rank stopped under mpirun) is tests/e2e/check_watchdog.sh.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "core/watchdog.h"

using namespace tpinfer;
using namespace std::chrono_literals;

namespace {

// Waits up to `limit` for the flag (generous: the machine may be loaded).
bool wait_for(const std::atomic<bool>& flag, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!flag.load() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(10ms);
  return flag.load();
}

}  // namespace

TEST_CASE("watchdog: describes the phase, the step and the collective waited on") {
  watch_phase(Phase::step, 12);
  CHECK(describe_activity() == "step 12, computing or in a call that is not a collective");
  {
    WatchWait wait("a broadcast over the tp group", 0);
    CHECK(describe_activity() == "step 12, waiting in a broadcast over the tp group from rank 0");
  }
  CHECK(describe_activity() == "step 12, computing or in a call that is not a collective");
  {
    WatchWait wait("an all-reduce (MPI) over the tp group");
    CHECK(describe_activity() ==
          "step 12, waiting in an all-reduce (MPI) over the tp group with every rank in it");
  }
  watch_phase(Phase::load);
  CHECK(describe_activity() ==
        "loading the model, computing or in a call that is not a collective");
  watch_waiting("the mailbox for work (batch requests)", 0);
  CHECK(describe_activity() ==
        "loading the model, waiting in the mailbox for work (batch requests) from rank 0");
  watch_phase(Phase::startup);
}

TEST_CASE("watchdog: fires when nothing progresses, and only then") {
  watch_phase(Phase::step);
  std::atomic<bool> fired{false};
  {
    Watchdog dog(0.2, 0, [&] { fired = true; });
    CHECK(wait_for(fired, 60s));
  }
  watch_phase(Phase::startup);
}

TEST_CASE("watchdog: a long run with steady progress is not stopped") {
  // 5 s of work in 2 ms steps under a 1 s timeout: total time is not what it measures.
  std::atomic<bool> fired{false};
  {
    Watchdog dog(1.0, 0, [&] { fired = true; });
    for (int i = 0; i < 2500; ++i) {
      watch_phase(Phase::step, i);
      WatchWait wait("an all-reduce (MPI) over the tp group");
      std::this_thread::sleep_for(2ms);
    }
  }
  CHECK_FALSE(fired.load());
  watch_phase(Phase::startup);
}

TEST_CASE("watchdog: an idle rank (waiting for other replicas) is not timed") {
  std::atomic<bool> fired{false};
  {
    Watchdog dog(0.2, 0, [&] { fired = true; });
    watch_phase(Phase::idle);
    std::this_thread::sleep_for(1500ms);
  }
  CHECK_FALSE(fired.load());
  watch_phase(Phase::startup);
}

TEST_CASE("watchdog: a timeout of 0 turns it off") {
  std::atomic<bool> fired{false};
  {
    Watchdog dog(0.0, 0, [&] { fired = true; });
    std::this_thread::sleep_for(300ms);
  }
  CHECK_FALSE(fired.load());
}

TEST_CASE("watchdog: the adaptive limit grows with the slowest step and keeps its floor") {
  setenv("TPINFER_WATCHDOG_FLOOR_S", "0.3", 1);
  std::atomic<bool> fired{false};
  {
    Watchdog dog(-1, 0, [&] { fired = true; });
    // Steps of 0.28 s (under the 0.3 s floor) raise the limit to about 3 x 0.28 s ...
    for (int i = 0; i < 3; ++i) {
      watch_phase(Phase::step, i);
      std::this_thread::sleep_for(280ms);
    }
    // ... so a 0.5 s step (over the floor) is not a stall.
    watch_phase(Phase::step, 3);
    std::this_thread::sleep_for(500ms);
    CHECK_FALSE(fired.load());
    watch_phase(Phase::step, 4);  // then nothing: fires once the adapted limit passes
    CHECK(wait_for(fired, 60s));
  }
  unsetenv("TPINFER_WATCHDOG_FLOOR_S");
  watch_phase(Phase::startup);
}

TEST_CASE("watchdog: a watched peer that goes silent is named, one that talks is not") {
  setenv("TPINFER_WATCHDOG_FLOOR_S", "0.3", 1);
  std::atomic<bool> fired{false};
  {
    Watchdog dog(-1, 0, [&] { fired = true; });
    watch_phase(Phase::idle);  // this rank itself is idle: only the peer is timed
    watch_peer(5, true);
    for (int i = 0; i < 20; ++i) {
      watch_peer_heard(5);
      std::this_thread::sleep_for(50ms);
    }
    CHECK_FALSE(fired.load());
    CHECK(wait_for(fired, 60s));  // silent from now on
  }
  watch_peer(5, false);
  unsetenv("TPINFER_WATCHDOG_FLOOR_S");
  watch_phase(Phase::startup);
}
