// A thread that ends for idleness moves its own std::thread into finished_, which the next
// enqueue() or shutdown() joins (a thread cannot join itself). The creator inserts a new thread
// into threads_ while holding mu_, which the new thread takes first: it is always found there.
#include "runtime/frontend/server/worker_pool.h"

namespace tpinfer {

WorkerPool::WorkerPool(int max_threads, int keep_idle, std::chrono::milliseconds idle_exit)
    : max_threads_(max_threads < 1 ? 1 : max_threads),
      keep_idle_(keep_idle < 0 ? 0 : keep_idle),
      idle_exit_(idle_exit) {}

WorkerPool::~WorkerPool() {
  shutdown();
}

std::vector<std::thread> WorkerPool::take_finished() {
  std::vector<std::thread> done;
  done.swap(finished_);
  return done;
}

void WorkerPool::enqueue(std::function<void()> fn) {
  std::vector<std::thread> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(fn));
    // Every queued job needs a waiting thread; start one when there are fewer (up to the cap).
    if (!stop_ && static_cast<int>(jobs_.size()) > idle_ &&
        static_cast<int>(threads_.size()) < max_threads_) {
      std::thread t([this] { work(); });
      const std::thread::id id = t.get_id();
      threads_.emplace(id, std::move(t));
    }
    done = take_finished();
  }
  cv_.notify_one();
  for (std::thread& t : done) t.join();
}

void WorkerPool::work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    ++idle_;
    const bool woken = cv_.wait_for(lock, idle_exit_, [this] { return stop_ || !jobs_.empty(); });
    --idle_;
    if (!jobs_.empty()) {
      std::function<void()> fn = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      fn();
      fn = nullptr;  // what the task holds goes before the lock is taken again
      lock.lock();
      continue;
    }
    if (stop_) return;  // shutdown() holds this thread's std::thread and joins it
    if (!woken && static_cast<int>(threads_.size()) > keep_idle_) break;
  }
  auto it = threads_.find(std::this_thread::get_id());
  finished_.push_back(std::move(it->second));
  threads_.erase(it);
}

void WorkerPool::shutdown() {
  std::vector<std::thread> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    for (auto& [id, t] : threads_) all.push_back(std::move(t));
    threads_.clear();
    for (std::thread& t : take_finished()) all.push_back(std::move(t));
  }
  cv_.notify_all();
  for (std::thread& t : all) t.join();
}

int WorkerPool::threads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(threads_.size());
}

}  // namespace tpinfer
