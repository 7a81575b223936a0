// The model end to end, run under `mpirun -np N` (N = 1, 2, 4) on converted shards:
//  - the bundled stories260K reproduces its golden greedy ids (a float64 reference forward);
//  - the tiny Qwen3 / Mistral / Llama models reproduce Hugging Face transformers' logits at every
//    prompt position and its greedy continuation (goldens from scripts/gen_model_goldens.py);
//  - every tp size writes its logits to a file so that test_tp_equivalence can compare tp 2 and
//    4 against tp 1 directly.
//  - with TPI_PP=P (pipeline stages), the same goldens through P stages of size / P ranks.
// Environment: TPI_MODELS (folder of converted models, <name>-tp<N> or <name>-pp<P>-tp<N>),
// TPI_OUT (logits files), TPI_PP.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "comm/communicator.h"
#include "comm/world.h"
#include "io/model_dir.h"
#include "model_test_support.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/sampler.h"
#include "runtime/scheduler/dispatcher.h"

using namespace tpinfer;
using json = nlohmann::json;

namespace {

using test::env_or;
using test::Loaded;
using test::read_json;

std::unique_ptr<Loaded> load(const std::string& name, int max_seq, int max_tokens = 64,
                             int max_logit_rows = 64, int n_slots = 1) {
  return test::load_model(name, EngineShape{max_seq, n_slots, max_tokens, max_logit_rows});
}

// Greedy continuation through the job's own request path (dispatcher, scheduler, followers).
struct KeepOutcome : RequestEvents {
  void on_delta(uint64_t, GenerationDelta) override {}
  void on_finish(uint64_t, GenerationOutcome o) override { outcome = std::move(o); }
  GenerationOutcome outcome;
};

// Rank 0 gets the outcome (with logprobs when top_logprobs >= 0).
GenerationOutcome run_greedy(Engine& e, const std::vector<int32_t>& prompt, int n,
                             int top_logprobs = -1) {
  RequestQueue queue;
  KeepOutcome events;
  if (test::world().rank() == 0) {
    GenerationRequest r;
    r.prompt_ids = prompt;
    r.max_new_tokens = n;  // no stop ids: the goldens run a fixed number of steps
    r.logprobs = top_logprobs;
    queue.push(ScheduledRequest{queue.new_seq(), std::move(r)});
    queue.close();
  }
  run_replicas(test::world(), e, nullptr, {}, e.config().vocab_size, &queue, &events,
               DispatchOptions{});
  return events.outcome;
}

std::vector<int32_t> greedy(Engine& e, const std::vector<int32_t>& prompt, int n) {
  KeepOutcome events;
  events.outcome = run_greedy(e, prompt, n);
  // Every rank gets the ids (the tests compare on rank 0, but keep all ranks alike).
  int32_t count = static_cast<int32_t>(events.outcome.token_ids.size());
  test::world().broadcast_world(&count, sizeof count);
  events.outcome.token_ids.resize(static_cast<size_t>(count));
  test::world().broadcast_world(events.outcome.token_ids.data(), sizeof(int32_t) * count);
  return events.outcome.token_ids;
}

// Logits of every prompt position (one forward over the whole prompt), leader only.
std::vector<float> prompt_logits(Engine& e, const std::vector<int32_t>& ids) {
  const int n = static_cast<int>(ids.size());
  std::vector<int32_t> pos(n), slots(n, 0), rows(n);
  for (int i = 0; i < n; ++i) pos[i] = rows[i] = i;
  const bool leader = test::world().replica_rank() == 0;
  const float* l = e.step(ids.data(), pos.data(), slots.data(), n, rows.data(), n, leader);
  if (!leader) return {};
  return std::vector<float>(l, l + static_cast<size_t>(n) * e.config().vocab_size);
}

void save_logits(const std::string& tag, const std::vector<float>& logits) {
  if (test::world().rank() != 0) return;
  const std::string out = env_or("TPI_OUT", TPINFER_BUILD_DIR "/test-out");
  std::ofstream f(out + "/" + tag + test::layout_tag() + ".f32", std::ios::binary);
  REQUIRE(f.good());
  f.write(reinterpret_cast<const char*>(logits.data()),
          static_cast<std::streamsize>(logits.size() * sizeof(float)));
}

}  // namespace

TEST_CASE("stories260K reproduces the golden greedy ids", "[stories]") {
  const json g = read_json(TPINFER_TEST_DATA "/stories260K_golden_greedy.json");
  auto L = load("stories260K", 512);
  const bool leader = test::world().replica_rank() == 0;

  SECTION("no prompt: 256 greedy steps from BOS, and the top logits at position 0") {
    const std::vector<int32_t> prompt = g["no_prompt"]["prompt_ids"];
    const std::vector<int32_t> expect = g["no_prompt"]["generated_ids"];
    const std::vector<float> logits = prompt_logits(*L->engine, prompt);
    save_logits("stories260K-bos", logits);
    if (leader) {
      for (const auto& pair : g["no_prompt"]["pos0_top5"]) {
        const int id = pair[0];
        const double ref = pair[1];
        INFO("token " << id << ": got " << logits[id] << ", golden " << ref);
        CHECK(std::abs(logits[id] - ref) <= 1e-4 + 1e-5 * std::abs(ref));
      }
    }
    const std::vector<int32_t> got = greedy(*L->engine, prompt, static_cast<int>(expect.size()));
    if (leader) REQUIRE(got == expect);
  }
  SECTION("prompts: the continuation after the prompt") {
    for (const char* key : {"once_upon", "tom_dog"}) {
      INFO(key);
      const std::vector<int32_t> prompt = g[key]["prompt_ids"];
      const std::vector<int32_t> after_bos = g[key]["ids_after_bos"];
      // ids_after_bos holds the prompt (without BOS) and then the generated ids.
      const std::vector<int32_t> expect(after_bos.begin() + (prompt.size() - 1), after_bos.end());
      const std::vector<int32_t> got = greedy(*L->engine, prompt, static_cast<int>(expect.size()));
      if (leader) CHECK(got == expect);
    }
  }
}

TEST_CASE("tiny models of every family match transformers' logits and greedy ids", "[tiny]") {
  const bool leader = test::world().replica_rank() == 0;
  // Qwen3, Mistral (sliding window), Llama; Qwen2 (q/k/v biases, yarn), Llama 3 (llama3 RoPE,
  // attention and MLP biases: row-parallel biases too), Mistral Nemo (explicit head_dim, dynamic
  // RoPE), Phi3 (fused projections split by the converter, longrope); the mixtures of experts
  // Qwen3-MoE (top-3 of 8, a dense layer between sparse ones) and Mixtral (top-2 of 4, sliding
  // window).
  for (const char* name : {"tiny-qwen3", "tiny-mistral", "tiny-llama", "tiny-qwen2", "tiny-llama3",
                           "tiny-mistral-nemo", "tiny-phi3", "tiny-qwen3-moe", "tiny-mixtral"}) {
    INFO(name);
    const json g = read_json(std::string(TPINFER_TEST_DATA "/goldens/") + name + ".json");
    auto L = load(name, 128, 64, 64);
    int case_no = 0;
    for (const json& c : g["prompts"]) {
      INFO("prompt " << c["name"].get<std::string>());
      const std::vector<int32_t> prompt = c["ids"];
      const std::vector<float> logits = prompt_logits(*L->engine, prompt);
      save_logits(std::string(name) + "-" + std::to_string(case_no), logits);
      if (leader) {
        // Leader-only checks must not leave the test early (the followers would wait in the
        // next collective): count mismatches, then CHECK once per kind.
        const int V = L->engine->config().vocab_size;
        double max_err = 0;
        int n_bad = 0;
        std::string first_bad;
        auto compare = [&](size_t p, int v, double r) {
          const double got = logits[p * V + v];
          const double err = std::abs(got - r);
          max_err = std::max(max_err, err);
          // Goldens carry 6 significant digits: allow that rounding on top of 1e-4.
          if (err > 1e-4 + 2e-5 * std::abs(r) && n_bad++ == 0) {
            first_bad = "position " + std::to_string(p) + " token " + std::to_string(v) + ": got " +
                        std::to_string(got) + ", transformers " + std::to_string(r);
          }
        };
        const std::vector<int> last_pos = c["last_positions"];
        for (size_t i = 0; i < last_pos.size(); ++i) {
          const std::vector<double> row = c["last_logits"][i];
          CHECK(static_cast<int>(row.size()) == V);
          for (int v = 0; v < V && v < static_cast<int>(row.size()); ++v)
            compare(last_pos[i], v, row[v]);
        }
        for (size_t p = 0; p < prompt.size(); ++p) {
          for (size_t j = 0; j < 5; ++j) {
            compare(p, c["top5"]["ids"][p][j].get<int>(), c["top5"]["logits"][p][j].get<double>());
          }
        }
        INFO("first mismatch: " << first_bad << "; max |logit - transformers| = " << max_err);
        CHECK(n_bad == 0);
        WARN(name << test::layout_tag() << " prompt " << c["name"].get<std::string>()
                  << ": max |logit - transformers| = " << max_err);
        const std::vector<int> ref_argmax = c["argmax"];
        std::vector<int> got_argmax;
        for (size_t p = 0; p < prompt.size(); ++p) got_argmax.push_back(argmax(&logits[p * V], V));
        CHECK(got_argmax == ref_argmax);
      }
      const std::vector<int32_t> expect = c["greedy"]["ids"];
      const std::vector<int32_t> got = greedy(*L->engine, prompt, static_cast<int>(expect.size()));
      if (leader) {
        CHECK(got == expect);
        WARN(name << test::layout_tag() << " prompt " << c["name"].get<std::string>() << ": greedy "
                  << (got == expect ? "equal" : "DIFFERENT"));
      }
      ++case_no;
    }
  }
}

TEST_CASE("MoE: two prompts in one forward (two slots) equal each prompt alone", "[tiny][batch]") {
  // The tokens of both prompts are routed together, so each expert's GEMM mixes rows of both;
  // the grouped kernels are batch invariant, so every logit is bit for bit the single-prompt one.
  const bool leader = test::world().replica_rank() == 0;
  for (const char* name : {"tiny-qwen3-moe", "tiny-mixtral"}) {
    INFO(name);
    const json g = read_json(std::string(TPINFER_TEST_DATA "/goldens/") + name + ".json");
    const std::vector<int32_t> a = g["prompts"][2]["ids"], b = g["prompts"][3]["ids"];
    auto L = load(name, 128, 64, 64, 2);
    const std::vector<float> la = prompt_logits(*L->engine, a);
    const std::vector<float> lb = prompt_logits(*L->engine, b);
    std::vector<int32_t> ids = a, pos, slots, rows;
    ids.insert(ids.end(), b.begin(), b.end());
    for (size_t i = 0; i < a.size(); ++i) {
      pos.push_back(static_cast<int32_t>(i));
      slots.push_back(0);
    }
    for (size_t i = 0; i < b.size(); ++i) {
      pos.push_back(static_cast<int32_t>(i));
      slots.push_back(1);
    }
    for (size_t i = 0; i < ids.size(); ++i) rows.push_back(static_cast<int32_t>(i));
    const int n = static_cast<int>(ids.size());
    const float* l =
        L->engine->step(ids.data(), pos.data(), slots.data(), n, rows.data(), n, leader);
    if (leader) {
      const size_t V = static_cast<size_t>(L->engine->config().vocab_size);
      std::vector<float> want = la;
      want.insert(want.end(), lb.begin(), lb.end());
      REQUIRE(want.size() == static_cast<size_t>(n) * V);
      size_t n_diff = 0;
      for (size_t i = 0; i < want.size(); ++i) n_diff += l[i] != want[i];
      CHECK(n_diff == 0);
    }
  }
}

TEST_CASE("logprobs equal transformers' log_softmax of a greedy continuation", "[logprobs]") {
  const json g = read_json(TPINFER_TEST_DATA "/goldens/logprobs.json");
  const bool rank0 = test::world().rank() == 0;
  constexpr double kTol = 2e-4;  // f32 engine against a float64 log_softmax of f32 logits
  for (const auto& [name, m] : g["models"].items()) {
    auto L = load(name, 64);
    const std::vector<int32_t> prompt = m["prompt_ids"];
    const json& steps = m["steps"];
    const GenerationOutcome o = run_greedy(*L->engine, prompt, static_cast<int>(steps.size()), 5);
    if (!rank0) continue;
    INFO(name << test::layout_tag());
    REQUIRE(o.logprobs.size() == steps.size());
    double max_err = 0.0;
    for (size_t i = 0; i < steps.size(); ++i) {
      const json& st = steps[i];
      const TokenLogprob& lp = o.logprobs[i];
      CHECK(lp.id == st["id"].get<int32_t>());
      CHECK(o.token_ids[i] == lp.id);
      max_err = std::max(max_err, std::abs(lp.logprob - st["logprob"].get<double>()));
      REQUIRE(lp.top.size() == 5);
      for (size_t k = 0; k < 5; ++k) {
        const double want = st["top"][k][1].get<double>();
        max_err = std::max(max_err, std::abs(lp.top[k].second - want));
        // Ids are compared where the golden's neighbours are clearly apart (no near-ties).
        const bool apart = (k == 0 || st["top"][k - 1][1].get<double>() - want > 1e-3) &&
                           (k == 4 || want - st["top"][k + 1][1].get<double>() > 1e-3);
        if (apart) CHECK(lp.top[k].first == st["top"][k][0].get<int32_t>());
      }
      CHECK(lp.top[0].first == lp.id);  // greedy: the chosen id is the most likely
    }
    CHECK(max_err < kTol);
    WARN(name << test::layout_tag() << ": logprobs max |err| vs transformers = " << max_err);
  }
}

int main(int argc, char** argv) {
  return test::run_all_ranks(argc, argv);
}
