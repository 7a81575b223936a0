// A small thread-safe Prometheus registry for the server: request counts by endpoint and status,
// prompt and generated tokens, latency histograms (time to first token, inter-token latency,
// end-to-end), and gauges read from the service at scrape time (queue depth, slots in use, the
// KV cache's blocks and prefix-cache and preemption counters). Renders
// the text exposition format 0.0.4; every name starts with `tpinfer_`.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "runtime/frontend/server/generation_service.h"

namespace tpinfer {

// Cumulative buckets with upper bounds `bounds` (ascending) and +Inf.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double x);
  // The exposition lines of `name` (the _bucket, _sum and _count samples), without HELP/TYPE.
  std::string render(const std::string& name) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); the last one is +Inf
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();
  void count_request(const std::string& endpoint, int status);
  void add_tokens(int64_t prompt, int64_t generated);
  void observe_ttft(double seconds);
  void observe_inter_token(double seconds);
  void observe_e2e(double seconds);
  // The whole exposition text; `load` and `kv` (the replicas' KV cache, summed) fill the gauges.
  std::string render(const GenerationService::Load& load, const KvCacheStats& kv = {}) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t prompt_tokens_ = 0;
  uint64_t generated_tokens_ = 0;
  Histogram ttft_;
  Histogram itl_;
  Histogram e2e_;
};

// The Content-Type of the exposition text.
extern const char* const kPrometheusContentType;

}  // namespace tpinfer
