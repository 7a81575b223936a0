// The HTTP server's workers: an httplib::TaskQueue that gives each task (one connection, for
// its whole life: that is how cpp-httplib serves) a thread of its own, started on demand up to
// `max_threads`, kept `keep_idle` at least and ended after `idle_exit` without work. A fixed pool
// of N threads is starved by N idle clients; this one is bounded by the connection cap instead
// (see connections.h). Beyond max_threads, tasks wait in arrival order.
#pragma once

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace tpinfer {

class WorkerPool : public httplib::TaskQueue {
 public:
  WorkerPool(int max_threads, int keep_idle,
             std::chrono::milliseconds idle_exit = std::chrono::seconds(10));
  ~WorkerPool() override;  // shutdown()
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void enqueue(std::function<void()> fn) override;
  // Runs what is queued, then joins every thread. Idempotent.
  void shutdown() override;
  int threads() const;  // running now

 private:
  void work();
  std::vector<std::thread> take_finished();  // under mu_

  const int max_threads_, keep_idle_;
  const std::chrono::milliseconds idle_exit_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::map<std::thread::id, std::thread> threads_;
  std::vector<std::thread> finished_;  // ended for idleness, to be joined
  int idle_ = 0;                       // threads waiting for a job
  bool stop_ = false;
};

}  // namespace tpinfer
