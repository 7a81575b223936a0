// The Prometheus registry: counters, gauges and histograms in the text exposition format.
#include <catch2/catch.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/frontend/server/metrics.h"

using Catch::Matchers::Contains;
using namespace tpinfer;

TEST_CASE("histogram buckets are cumulative with +Inf, sum and count", "[metrics]") {
  Histogram h({0.25, 1.0});
  h.observe(0.125);
  h.observe(0.25);  // le is inclusive
  h.observe(0.5);
  h.observe(7.0);
  CHECK(h.render("x") ==
        "x_bucket{le=\"0.25\"} 2\n"
        "x_bucket{le=\"1\"} 3\n"
        "x_bucket{le=\"+Inf\"} 4\n"
        "x_sum 7.875\n"
        "x_count 4\n");
}

TEST_CASE("the exposition text of the server's metrics", "[metrics]") {
  ServerMetrics m;
  m.count_request("/v1/completions", 200);
  m.count_request("/v1/completions", 200);
  m.count_request("/v1/chat/completions", 429);
  m.add_tokens(10, 4);
  m.add_tokens(3, 2);
  m.observe_ttft(0.2);
  m.observe_inter_token(0.01);
  m.observe_e2e(1.5);
  GenerationService::Load load;
  load.queued = 3;
  load.running = 2;
  load.slots = 8;
  const std::string t = m.render(load);
  CHECK_THAT(t, Contains("# HELP tpinfer_requests_total "));
  CHECK_THAT(t, Contains("# TYPE tpinfer_requests_total counter\n"));
  CHECK_THAT(t, Contains("tpinfer_requests_total{endpoint=\"/v1/completions\",code=\"200\"} 2\n"));
  CHECK_THAT(
      t, Contains("tpinfer_requests_total{endpoint=\"/v1/chat/completions\",code=\"429\"} 1\n"));
  CHECK_THAT(t, Contains("tpinfer_prompt_tokens_total 13\n"));
  CHECK_THAT(t, Contains("tpinfer_generation_tokens_total 6\n"));
  CHECK_THAT(t, Contains("# TYPE tpinfer_requests_waiting gauge\ntpinfer_requests_waiting 3\n"));
  CHECK_THAT(t, Contains("tpinfer_requests_running 2\n"));
  CHECK_THAT(t, Contains("tpinfer_slots 8\n"));
  CHECK_THAT(t, Contains("# TYPE tpinfer_time_to_first_token_seconds histogram\n"));
  CHECK_THAT(t, Contains("tpinfer_time_to_first_token_seconds_bucket{le=\"0.25\"} 1\n"));
  CHECK_THAT(t, Contains("tpinfer_time_to_first_token_seconds_bucket{le=\"0.1\"} 0\n"));
  CHECK_THAT(t, Contains("tpinfer_inter_token_latency_seconds_count 1\n"));
  CHECK_THAT(t, Contains("tpinfer_e2e_request_latency_seconds_sum 1.5\n"));

  // Every line is a comment or `name{labels} value` with a tpinfer_ name; HELP/TYPE precede.
  std::istringstream in(t);
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    INFO(line);
    if (line.rfind("# ", 0) == 0) {
      CHECK((line.rfind("# HELP tpinfer_", 0) == 0 || line.rfind("# TYPE tpinfer_", 0) == 0));
      continue;
    }
    CHECK(line.rfind("tpinfer_", 0) == 0);
    CHECK(line.find(' ') != std::string::npos);
    ++samples;
  }
  CHECK(samples > 40);
  CHECK(t.back() == '\n');
}

TEST_CASE("metrics take updates from many threads", "[metrics]") {
  ServerMetrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        m.count_request("/v1/completions", 200);
        m.add_tokens(1, 2);
        m.observe_inter_token(0.001);
      }
    });
  }
  for (auto& t : threads) t.join();
  const std::string text = m.render({});
  CHECK_THAT(text, Contains("code=\"200\"} 8000\n"));
  CHECK_THAT(text, Contains("tpinfer_generation_tokens_total 16000\n"));
  CHECK_THAT(text, Contains("tpinfer_inter_token_latency_seconds_count 8000\n"));
}
