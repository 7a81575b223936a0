// The paged KV cache through the job's own request path (dispatcher, replica scheduler,
// followers), run under `mpirun -np N` (N = 1, 2, 4) on converted shards:
//  - prefix caching changes nothing: the same ids and bitwise the same logprobs with it on and
//    off, and the tiny models' transformers goldens hold when their prompt is a cache hit;
//  - a pool of a few blocks under 16 requests of mixed lengths (shared prompts, a sampled one, n =
//    2 ones): every request ends with the ids it gets alone, and preemptions happened;
//  - n = 3: greedy choices are identical (and equal n = 1), sampled ones are reproducible and
//    differ; the prompt's blocks are shared (and a partial last block copied);
//  - a request too big for the pool is refused with the numbers.
// Environment: TPI_MODELS (folder of converted models, <name>-tp<N>).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
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
#include "runtime/scheduler/dispatcher.h"

using namespace tpinfer;
using json = nlohmann::json;

namespace {

using test::Loaded;
using test::read_json;

// batch_size sequences of max_seq; n_blocks = 0: room for all of them.
std::unique_ptr<Loaded> load(const std::string& name, int max_seq, int batch_size,
                             int n_blocks = 0) {
  EngineShape shape;
  shape.max_seq = max_seq;
  shape.n_slots = batch_size;
  shape.max_tokens = 64;
  shape.max_logit_rows = batch_size;
  shape.n_blocks = n_blocks;
  return test::load_model(name, shape);
}

// Every outcome by (request number, choice), on rank 0.
struct Collect : RequestEvents {
  void on_delta(uint64_t seq, GenerationDelta d) override {
    std::vector<int32_t>& ids = streamed[{seq, d.index}];
    ids.insert(ids.end(), d.token_ids.begin(), d.token_ids.end());
  }
  void on_finish(uint64_t seq, GenerationOutcome o) override {
    outcomes[{seq, o.index}] = std::move(o);
  }
  std::map<std::pair<uint64_t, int>, GenerationOutcome> outcomes;
  std::map<std::pair<uint64_t, int>, std::vector<int32_t>> streamed;
};

struct Run {
  std::vector<std::vector<GenerationOutcome>> out;  // [request][choice] (rank 0)
  KvCacheStats kv;                                  // replica 0's pool at the end (rank 0)
  std::map<std::pair<uint64_t, int>, std::vector<int32_t>> streamed;
};

// Submits the requests at once (rank 0) and runs them to the end on every rank.
Run run(Engine& e, const std::vector<GenerationRequest>& reqs, bool prefix_caching = true) {
  RequestQueue queue;
  Collect events;
  std::vector<uint64_t> seqs;
  if (test::world().rank() == 0) {
    for (const GenerationRequest& r : reqs) {
      seqs.push_back(queue.new_seq());
      queue.push(ScheduledRequest{seqs.back(), r});
    }
    queue.close();
  }
  DispatchOptions opts;
  opts.prefix_caching = prefix_caching;
  const DispatchResult res =
      run_replicas(test::world(), e, nullptr, {}, e.config().vocab_size, &queue, &events, opts);
  Run r;
  r.kv = res.kv;
  r.streamed = events.streamed;
  for (size_t i = 0; i < seqs.size(); ++i) {
    r.out.emplace_back();
    for (int c = 0; c < std::max(1, reqs[i].n); ++c)
      r.out.back().push_back(events.outcomes[{seqs[i], c}]);
  }
  return r;
}

GenerationRequest greedy_request(std::vector<int32_t> prompt, int max_new, int logprobs = -1) {
  GenerationRequest r;
  r.prompt_ids = std::move(prompt);
  r.max_new_tokens = max_new;
  r.logprobs = logprobs;
  return r;
}

bool same_logprobs(const std::vector<TokenLogprob>& a, const std::vector<TokenLogprob>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].id != b[i].id || std::memcmp(&a[i].logprob, &b[i].logprob, sizeof(float)) != 0 ||
        a[i].top.size() != b[i].top.size()) {
      return false;
    }
    for (size_t k = 0; k < a[i].top.size(); ++k) {
      if (a[i].top[k].first != b[i].top[k].first ||
          std::memcmp(&a[i].top[k].second, &b[i].top[k].second, sizeof(float)) != 0) {
        return false;
      }
    }
  }
  return true;
}

// Deterministic pseudo-random prompt ids in [1, vocab).
std::vector<int32_t> random_ids(uint64_t seed, int n, int vocab) {
  std::vector<int32_t> v;
  Rng rng(seed);
  for (int i = 0; i < n; ++i) v.push_back(1 + static_cast<int32_t>(rng.next() % (vocab - 1)));
  return v;
}

}  // namespace

TEST_CASE("prefix caching changes no id and no logprob bit (stories260K)", "[paged][prefix]") {
  const bool rank0 = test::world().rank() == 0;
  const json g = read_json(TPINFER_TEST_DATA "/stories260K_golden_greedy.json");
  // batch_size 2: later requests start after earlier ones cached their blocks.
  auto L = load("stories260K", 256, 2);
  const std::vector<int32_t> tom = g["tom_dog"]["prompt_ids"];
  const std::vector<int32_t> after = g["tom_dog"]["ids_after_bos"];
  // The story so far (a 40-token prefix), then different continuations of it.
  std::vector<int32_t> story(tom.begin(), tom.begin() + 1);
  story.insert(story.end(), after.begin(), after.begin() + 39);
  std::vector<GenerationRequest> reqs;
  reqs.push_back(greedy_request(tom, 40, 5));
  reqs.push_back(greedy_request(tom, 40, 5));  // the same prompt again
  for (int k = 0; k < 4; ++k) {
    std::vector<int32_t> p = story;
    p.push_back(10 + 37 * k);
    p.insert(p.end(), {static_cast<int32_t>(40 + k), static_cast<int32_t>(90 + k)});
    reqs.push_back(greedy_request(p, 30, 5));
  }
  reqs.push_back(greedy_request(std::vector<int32_t>(story.begin(), story.begin() + 32), 30, 5));
  reqs.push_back(greedy_request(story, 30, 5));
  const Run on = run(*L->engine, reqs, true);
  const Run off = run(*L->engine, reqs, false);
  if (rank0) {
    for (size_t i = 0; i < reqs.size(); ++i) {
      INFO("request " << i);
      CHECK(on.out[i][0].finish_reason == "length");
      CHECK(on.out[i][0].token_ids == off.out[i][0].token_ids);
      CHECK(same_logprobs(on.out[i][0].logprobs, off.out[i][0].logprobs));
    }
    // The golden continuation, from a cold and from a cached prompt.
    const std::vector<int32_t> expect(after.begin() + (tom.size() - 1),
                                      after.begin() + (tom.size() - 1) + 40);
    CHECK(on.out[0][0].token_ids == expect);
    CHECK(on.out[1][0].token_ids == expect);
    CHECK(on.kv.prefix_hit_tokens > 0);
    CHECK(on.kv.prefix_query_tokens > on.kv.prefix_hit_tokens);
    CHECK(off.kv.prefix_hit_tokens == 0);
    CHECK(on.kv.blocks_used == 0);  // everything released at the end
    CHECK(on.kv.blocks_cached > 0);
    WARN("prefix cache: " << on.kv.prefix_hit_tokens << " of " << on.kv.prefix_query_tokens
                          << " prompt tokens hit");
  }
}

TEST_CASE("tiny models keep their transformers goldens on a prefix-cache hit", "[paged][tiny]") {
  const bool rank0 = test::world().rank() == 0;
  for (const char* name : {"tiny-qwen3", "tiny-mistral", "tiny-llama", "tiny-qwen2", "tiny-llama3",
                           "tiny-mistral-nemo", "tiny-phi3"}) {
    INFO(name);
    const json g = read_json(std::string(TPINFER_TEST_DATA "/goldens/") + name + ".json");
    auto L = load(name, 128, 1);
    std::vector<GenerationRequest> reqs;
    for (const json& c : g["prompts"]) {
      const std::vector<int32_t> ids = c["ids"];
      const int n = static_cast<int>(c["greedy"]["ids"].size());
      reqs.push_back(greedy_request(ids, n, 3));
      reqs.push_back(greedy_request(ids, n, 3));  // a cache hit when the prompt has a full block
    }
    const Run on = run(*L->engine, reqs, true);
    const Run off = run(*L->engine, reqs, false);
    if (!rank0) continue;
    for (size_t i = 0; i < reqs.size(); ++i) {
      INFO("request " << i);
      const std::vector<int32_t> expect = g["prompts"][i / 2]["greedy"]["ids"];
      CHECK(on.out[i][0].token_ids == expect);
      CHECK(off.out[i][0].token_ids == expect);
      CHECK(same_logprobs(on.out[i][0].logprobs, off.out[i][0].logprobs));
    }
    // longrope (Phi3) recomputes a sequence past its switch point: no prefix caching there.
    if (std::string(name) == "tiny-phi3") {
      CHECK(on.kv.prefix_hit_tokens == 0);
    } else {
      CHECK(on.kv.prefix_hit_tokens >= 16);
    }
  }
}

TEST_CASE("a pool of a few blocks: 16 requests of mixed lengths end as they do alone",
          "[paged][preempt]") {
  const bool rank0 = test::world().rank() == 0;
  // 8 rows, 6 blocks of 16 = 96 positions: one request at a time fits, 8 at once do not.
  auto L = load("stories260K", 96, 8, 6);
  const int vocab = L->engine->config().vocab_size;
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 16; ++i) {
    const int n_prompt = 3 + (i * 7) % 38;   // 3 .. 40
    const int max_new = 10 + (i * 13) % 45;  // 10 .. 54
    reqs.push_back(greedy_request(random_ids(100 + i, n_prompt, vocab), max_new, 2));
    if (i % 4 == 1) reqs.back().prompt_ids = reqs[0].prompt_ids;  // shared prompts too
    if (i % 5 == 3) {                                             // and a sampled one
      reqs.back().sampling.temperature = 0.9f;
      reqs.back().sampling.seed = 1234 + i;
      reqs.back().stream = true;
    }
    if (i % 6 == 5) {  // two greedy choices: forked, then on their own under preemption
      reqs.back().n = 2;
      reqs.back().max_new_tokens = 12;
    }
  }
  std::vector<std::vector<int32_t>> alone;
  for (const GenerationRequest& r : reqs) {
    const Run one = run(*L->engine, {r}, false);
    if (rank0) alone.push_back(one.out[0][0].token_ids);
  }
  for (bool caching : {true, false}) {
    INFO("prefix_caching " << caching);
    const Run all = run(*L->engine, reqs, caching);
    if (!rank0) continue;
    for (size_t i = 0; i < reqs.size(); ++i) {
      INFO("request " << i << ": prompt " << reqs[i].prompt_ids.size() << " + "
                      << reqs[i].max_new_tokens);
      for (const GenerationOutcome& o : all.out[i]) {
        CHECK(o.finish_reason == "length");
        CHECK(o.token_ids == alone[i]);
      }
      if (reqs[i].stream) CHECK(all.streamed.at({i + 1, 0}) == alone[i]);  // deltas: the same ids
    }
    CHECK(all.kv.preemptions > 0);
    CHECK(all.kv.blocks_used == 0);
    WARN("prefix_caching " << caching << ": " << all.kv.preemptions << " preemption(s)");
  }
}

TEST_CASE("n = 3 choices share the prompt's blocks", "[paged][n]") {
  const bool rank0 = test::world().rank() == 0;
  auto L = load("stories260K", 128, 4);
  const int vocab = L->engine->config().vocab_size;
  for (int n_prompt : {21, 32}) {  // a partial last block (copied) and none
    INFO("prompt of " << n_prompt);
    const std::vector<int32_t> prompt = random_ids(7, n_prompt, vocab);
    GenerationRequest greedy = greedy_request(prompt, 24, 1);
    greedy.n = 3;
    GenerationRequest sampled = greedy_request(prompt, 24);
    sampled.n = 3;
    sampled.sampling.temperature = 1.0f;
    sampled.sampling.seed = 42;
    sampled.stream = true;
    const Run single = run(*L->engine, {greedy_request(prompt, 24, 1)});
    const Run a = run(*L->engine, {greedy, sampled});
    const Run b = run(*L->engine, {sampled});
    if (!rank0) continue;
    REQUIRE(a.out[0].size() == 3);
    for (int c = 0; c < 3; ++c) {
      INFO("choice " << c);
      CHECK(a.out[0][c].index == c);
      CHECK(a.out[0][c].finish_reason == "length");
      CHECK(a.out[0][c].token_ids == single.out[0][0].token_ids);
      CHECK(same_logprobs(a.out[0][c].logprobs, single.out[0][0].logprobs));
      CHECK(a.out[1][c].token_ids == b.out[0][c].token_ids);  // reproducible
      CHECK(a.out[1][c].token_ids.size() == 24);
    }
    CHECK(a.out[1][0].token_ids != a.out[1][1].token_ids);
    CHECK(a.out[1][1].token_ids != a.out[1][2].token_ids);
    // Each choice streamed exactly its ids.
    for (int c = 0; c < 3; ++c) CHECK(b.streamed.at({1, c}) == b.out[0][c].token_ids);
  }
}

TEST_CASE("a request too big for the pool is refused with the numbers", "[paged][refuse]") {
  const bool rank0 = test::world().rank() == 0;
  auto L = load("stories260K", 128, 2, 4);  // 4 blocks = 64 positions
  const int vocab = L->engine->config().vocab_size;
  GenerationRequest big = greedy_request(random_ids(3, 40, vocab), 30);
  GenerationRequest fits = greedy_request(random_ids(4, 20, vocab), 20);
  GenerationRequest three = greedy_request(random_ids(5, 20, vocab), 20);
  three.n = 3;
  const Run r = run(*L->engine, {big, fits, three});
  if (rank0) {
    CHECK(r.out[0][0].finish_reason == "error");
    CHECK_THAT(r.out[0][0].error,
               Catch::Contains("needs 5 KV cache blocks of 16 tokens, but the pool holds 4"));
    CHECK(r.out[1][0].finish_reason == "length");
    for (int c = 0; c < 3; ++c) {
      CHECK(r.out[2][c].finish_reason == "error");
      CHECK_THAT(r.out[2][c].error, Catch::Contains("exceeds batch_size=2"));
    }
  }
}

int main(int argc, char** argv) {
  return test::run_all_ranks(argc, argv);
}
