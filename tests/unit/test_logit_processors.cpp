// The logit processors (runtime/engine/logit_processors.h) against transformers' logits
// processors and vLLM's penalty formulas on a real stories260K logits row
// (tests/data/goldens/logit_processors.json, scripts/gen_logit_processor_goldens.py), built
// through the one factory a request's processors come from; and their state (clone, ids outside
// the vocabulary, the factory's choices).
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/engine/logit_processors.h"

namespace tpinfer {
namespace {

using nlohmann::json;

json golden() {
  std::ifstream in(TPINFER_TEST_DATA "/goldens/logit_processors.json");
  REQUIRE(in.good());
  return json::parse(in);
}

std::vector<float> row_from(const json& a) {
  std::vector<float> out;
  for (const json& v : a) {
    out.push_back(v.is_null() ? -std::numeric_limits<float>::infinity() : v.get<float>());
  }
  return out;
}

// The request a case describes: the golden's prompt, its sampling fields.
GenerationRequest request_for(const json& g, const json& c) {
  GenerationRequest r;
  r.prompt_ids = g.at("prompt_ids").get<std::vector<int32_t>>();
  r.max_new_tokens = 64;
  r.sampling.temperature = c.value("temperature", 1.0f);
  r.sampling.repetition_penalty = c.value("repetition_penalty", 1.0f);
  r.sampling.frequency_penalty = c.value("frequency_penalty", 0.0f);
  r.sampling.presence_penalty = c.value("presence_penalty", 0.0f);
  r.sampling.min_p = c.value("min_p", 0.0f);
  if (c.contains("logit_bias")) {
    for (const json& b : c.at("logit_bias")) {
      r.sampling.logit_bias.emplace_back(b.at(0).get<int32_t>(), b.at(1).get<float>());
    }
  }
  return r;
}

// Runs the request's processors as the scheduler does: accept each generated id, then apply.
std::vector<float> process(const json& g, LogitProcessors& procs) {
  std::vector<float> row = row_from(g.at("logits"));
  const int vocab = static_cast<int>(row.size());
  for (int32_t id : g.at("generated_ids").get<std::vector<int32_t>>()) {
    for (auto& p : procs) p->accept(id);
  }
  for (auto& p : procs) p->apply(row.data(), vocab);
  return row;
}

}  // namespace

TEST_CASE("logit processors equal transformers' and vLLM's on a stories260K row", "[logits]") {
  const json g = golden();
  const int vocab = static_cast<int>(g.at("logits").size());
  int n_cases = 0;
  for (const json& c : g.at("cases")) {
    const std::string name = c.at("name").get<std::string>();
    INFO(name);
    const GenerationRequest r = request_for(g, c);
    LogitProcessors procs = make_logit_processors(r, vocab);
    REQUIRE_FALSE(procs.empty());
    const std::vector<float> got = process(g, procs);
    if (c.contains("expected")) {
      const std::vector<float> want = row_from(c.at("expected"));
      REQUIRE(got.size() == want.size());
      int n_changed = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        INFO("id " << i);
        if (std::isinf(want[i])) {
          REQUIRE(got[i] == want[i]);
          continue;
        }
        REQUIRE(std::fabs(got[i] - want[i]) <= 2e-5f + 1e-5f * std::fabs(want[i]));
        n_changed += got[i] != row_from(g.at("logits"))[i];
      }
      CHECK(n_changed > 0);  // the case acts on the row
    } else {
      std::vector<int> kept;
      for (int i = 0; i < vocab; ++i) {
        if (!std::isinf(got[static_cast<size_t>(i)])) kept.push_back(i);
      }
      const std::vector<int> want = c.at("kept_ids").get<std::vector<int>>();
      REQUIRE(kept == want);
      CHECK(static_cast<int>(kept.size()) < vocab);  // min_p removed ids
    }
    ++n_cases;
  }
  CHECK(n_cases == 10);
}

TEST_CASE("the factory builds only what a request asks for", "[logits]") {
  GenerationRequest r;
  r.prompt_ids = {1, 2, 3};
  r.sampling.temperature = 1.0f;
  CHECK(make_logit_processors(r, 16).empty());  // defaults: the row is sampled as is
  r.sampling.min_p = 0.2f;
  r.sampling.temperature = 0.0f;
  CHECK(make_logit_processors(r, 16).empty());  // greedy: min_p keeps the argmax anyway
  r.sampling.temperature = 0.8f;
  CHECK(make_logit_processors(r, 16).size() == 1);
  r.sampling.logit_bias = {{3, 1.0f}};
  r.sampling.presence_penalty = 0.5f;
  CHECK(make_logit_processors(r, 16).size() == 3);
}

TEST_CASE("a cloned penalty processor continues on its own", "[logits]") {
  PenaltyProcessor p({0, 1}, 8, 16, 1.0f, 1.0f, 0.0f);
  p.accept(2);
  std::unique_ptr<LogitProcessor> q = p.clone();
  q->accept(2);
  q->accept(9);   // outside the vocabulary: ignored
  q->accept(-1);  // likewise
  std::vector<float> a(8, 0.0f), b(8, 0.0f);
  p.apply(a.data(), 8);
  q->apply(b.data(), 8);
  CHECK(a[2] == -1.0f);  // generated once
  CHECK(b[2] == -2.0f);  // twice in the clone
  CHECK(a[0] == 0.0f);   // the prompt does not count for the frequency penalty
}

TEST_CASE("logit bias is clipped to [-100, 100]", "[logits]") {
  LogitBiasProcessor p({{0, 500.0f}, {1, -1e9f}, {2, 2.5f}, {7, 1.0f}});
  std::vector<float> row(4, 1.0f);
  p.apply(row.data(), 4);  // id 7 is past this row: ignored
  CHECK(row[0] == 101.0f);
  CHECK(row[1] == -99.0f);
  CHECK(row[2] == 3.5f);
  CHECK(row[3] == 1.0f);
}

}  // namespace tpinfer
