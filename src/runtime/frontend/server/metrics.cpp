#include "runtime/frontend/server/metrics.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace tpinfer {
namespace {

// Prometheus renders floats with Go's strconv: shortest round-trip form, "+Inf".
std::string number(double x) {
  if (std::isinf(x)) return x > 0 ? "+Inf" : "-Inf";
  if (std::isnan(x)) return "NaN";
  std::ostringstream os;
  os.precision(17);
  os << x;
  std::string s = os.str();
  // Shortest form that reads back the same (0.1, not 0.10000000000000001).
  for (int p = 1; p <= 17; ++p) {
    std::ostringstream t;
    t.precision(p);
    t << x;
    if (std::stod(t.str()) == x) return t.str();
  }
  return s;
}

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void header(std::ostringstream& os, const char* name, const char* type, const char* help) {
  os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}

// A series without labels: its HELP, TYPE and one sample.
void single(std::ostringstream& os, const char* name, const char* type, const char* help,
            int64_t value) {
  header(os, name, type, help);
  os << name << " " << value << "\n";
}

// Latencies of a small model on CPU to a large one on GPUs: 1 ms .. 60 s.
std::vector<double> latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0};
}
std::vector<double> e2e_buckets() {
  return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0};
}

}  // namespace

const char* const kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double x) {
  if (std::isnan(x)) return;
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), x) -
                                       bounds_.begin());  // the first bound >= x (le)
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[i];
  sum_ += x;
  ++count_;
}

std::string Histogram::render(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::ostringstream os;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    cumulative += counts_[i];
    const std::string le = i < bounds_.size() ? number(bounds_[i]) : "+Inf";
    os << name << "_bucket{le=\"" << le << "\"} " << cumulative << "\n";
  }
  os << name << "_sum " << number(sum_) << "\n" << name << "_count " << count_ << "\n";
  return os.str();
}

ServerMetrics::ServerMetrics()
    : ttft_(latency_buckets()), itl_(latency_buckets()), e2e_(e2e_buckets()) {}

void ServerMetrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{endpoint, status}];
}

void ServerMetrics::add_tokens(int64_t prompt, int64_t generated) {
  std::lock_guard<std::mutex> lock(mu_);
  prompt_tokens_ += static_cast<uint64_t>(std::max<int64_t>(prompt, 0));
  generated_tokens_ += static_cast<uint64_t>(std::max<int64_t>(generated, 0));
}

void ServerMetrics::observe_ttft(double s) {
  ttft_.observe(s);
}
void ServerMetrics::observe_inter_token(double s) {
  itl_.observe(s);
}
void ServerMetrics::observe_e2e(double s) {
  e2e_.observe(s);
}

std::string ServerMetrics::render(const GenerationService::Load& load,
                                  const KvCacheStats& kv) const {
  std::ostringstream os;
  {
    std::lock_guard<std::mutex> lock(mu_);
    header(os, "tpinfer_requests_total", "counter",
           "HTTP requests answered, by endpoint and status code.");
    for (const auto& [key, n] : requests_) {
      os << "tpinfer_requests_total{endpoint=\"" << escape_label(key.first) << "\",code=\""
         << key.second << "\"} " << n << "\n";
    }
    header(os, "tpinfer_prompt_tokens_total", "counter", "Prompt tokens of finished requests.");
    os << "tpinfer_prompt_tokens_total " << prompt_tokens_ << "\n";
    header(os, "tpinfer_generation_tokens_total", "counter",
           "Tokens generated for finished requests.");
    os << "tpinfer_generation_tokens_total " << generated_tokens_ << "\n";
  }
  header(os, "tpinfer_requests_waiting", "gauge", "Requests queued for a slot.");
  os << "tpinfer_requests_waiting " << load.queued << "\n";
  header(os, "tpinfer_requests_running", "gauge", "Requests in a slot (slots in use).");
  os << "tpinfer_requests_running " << load.running << "\n";
  header(os, "tpinfer_slots", "gauge", "Request slots over all replicas.");
  os << "tpinfer_slots " << load.slots << "\n";
  single(os, "tpinfer_kv_blocks_total", "gauge", "KV cache blocks in the pools of all replicas.",
         kv.blocks_total);
  single(os, "tpinfer_kv_blocks_used", "gauge", "KV cache blocks held by running sequences.",
         kv.blocks_used);
  single(os, "tpinfer_kv_blocks_free", "gauge",
         "KV cache blocks not held by a sequence (cached prefixes included).",
         std::max<int64_t>(kv.blocks_total - kv.blocks_used, 0));
  single(os, "tpinfer_kv_blocks_cached", "gauge",
         "Free KV cache blocks that still hold a reusable prefix (evicted least recently used).",
         kv.blocks_cached);
  single(os, "tpinfer_prefix_cache_queries_tokens_total", "counter",
         "Prompt tokens looked up in the prefix cache.", kv.prefix_query_tokens);
  single(os, "tpinfer_prefix_cache_hits_tokens_total", "counter",
         "Prompt tokens found in the prefix cache (not prefilled again).", kv.prefix_hit_tokens);
  single(os, "tpinfer_preemptions_total", "counter",
         "Sequences preempted when the KV cache ran out (resumed later by recomputing).",
         kv.preemptions);
  header(os, "tpinfer_time_to_first_token_seconds", "histogram",
         "From the request's arrival to its first generated token.");
  os << ttft_.render("tpinfer_time_to_first_token_seconds");
  header(os, "tpinfer_inter_token_latency_seconds", "histogram",
         "Between consecutive generated tokens of a request.");
  os << itl_.render("tpinfer_inter_token_latency_seconds");
  header(os, "tpinfer_e2e_request_latency_seconds", "histogram",
         "From the request's arrival to its last token.");
  os << e2e_.render("tpinfer_e2e_request_latency_seconds");
  return os.str();
}

}  // namespace tpinfer
