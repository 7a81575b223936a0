// The stand-in for choices (runtime/scheduler/choice_fanout.h) and the queue that uses it: a
// request with n choices is queued as n one-choice requests with their own seqs and seeds, their
// events come back under the request's seq with the choice's index, and a cancel of the request
// reaches every choice still running.
#include <catch2/catch.hpp>
#include <map>

#include "runtime/scheduler/dispatcher.h"

using namespace tpinfer;

namespace {

struct Recorder : RequestEvents {
  std::vector<std::pair<uint64_t, int>> deltas, finished;  // (seq, index)
  void on_delta(uint64_t seq, GenerationDelta d) override { deltas.emplace_back(seq, d.index); }
  void on_finish(uint64_t seq, GenerationOutcome o) override {
    finished.emplace_back(seq, o.index);
  }
};

ScheduledRequest request(uint64_t seq, int n, uint64_t seed) {
  ScheduledRequest r;
  r.seq = seq;
  r.request.n = n;
  r.request.sampling.seed = seed;
  r.request.prompt_ids = {1, 2, 3};
  return r;
}

}  // namespace

TEST_CASE("a request with n choices is queued as n one-choice requests", "[scheduler][n]") {
  RequestQueue q(/*capacity=*/2);
  const uint64_t a = q.new_seq();
  REQUIRE(q.push(request(a, 3, 42)) == RequestQueue::Push::ok);
  CHECK(q.size() == 3);  // a request's choices count as one push against the capacity...
  const uint64_t b = q.new_seq();
  CHECK(q.push(request(b, 1, 7)) == RequestQueue::Push::full);  // ...but fill the queue
  std::map<uint64_t, uint64_t> seed_of;
  for (int i = 0; i < 3; ++i) {
    std::optional<ScheduledRequest> c = q.pop();
    REQUIRE(c);
    CHECK(c->request.n == 1);
    CHECK(c->seq != a);
    CHECK(c->request.prompt_ids == std::vector<int32_t>{1, 2, 3});
    CHECK(c->request.sampling.seed == choice_seed(42, i));
    seed_of[c->seq] = c->request.sampling.seed;
  }
  CHECK(seed_of.size() == 3);  // distinct seqs
  CHECK(choice_seed(42, 0) == 42);
  CHECK(choice_seed(42, 1) != choice_seed(42, 2));

  // Their events come back under the request's seq, tagged with the choice's index.
  Recorder front;
  ChoiceJoin join(q.fanout(), front);
  std::vector<uint64_t> choices;
  for (const auto& [seq, seed] : seed_of) choices.push_back(seq);  // ascending = index order
  join.on_delta(choices[2], GenerationDelta{});
  join.on_finish(choices[1], GenerationOutcome{});
  CHECK(front.deltas == std::vector<std::pair<uint64_t, int>>{{a, 2}});
  CHECK(front.finished == std::vector<std::pair<uint64_t, int>>{{a, 1}});

  // A cancel of the request reaches the choices that have not ended, and only those.
  q.cancel(a);
  std::vector<uint64_t> targets = q.take_cancels();
  std::sort(targets.begin(), targets.end());
  CHECK(targets == std::vector<uint64_t>{choices[0], choices[2]});
  join.on_finish(choices[0], GenerationOutcome{});
  join.on_finish(choices[2], GenerationOutcome{});
  CHECK(front.finished.size() == 3);
  // All ended: a late cancel names the request alone (nothing runs under it any more).
  q.cancel(a);
  CHECK(q.take_cancels() == std::vector<uint64_t>{a});
}

TEST_CASE("a request with one choice passes through unchanged", "[scheduler][n]") {
  RequestQueue q;
  const uint64_t a = q.new_seq();
  REQUIRE(q.push(request(a, 1, 9)) == RequestQueue::Push::ok);
  std::optional<ScheduledRequest> r = q.pop();
  REQUIRE(r);
  CHECK(r->seq == a);
  CHECK(r->request.sampling.seed == 9);
  Recorder front;
  ChoiceJoin join(q.fanout(), front);
  join.on_finish(a, GenerationOutcome{});
  CHECK(front.finished == std::vector<std::pair<uint64_t, int>>{{a, 0}});
  q.cancel(a);
  CHECK(q.take_cancels() == std::vector<uint64_t>{a});
}

TEST_CASE("the KV stats board sums the replicas", "[scheduler]") {
  KvStatsBoard board;
  CHECK(board.replicas() == 0);
  KvCacheStats a, b;
  a.blocks_total = 100;
  a.blocks_used = 10;
  a.prefix_hit_tokens = 5;
  b.blocks_total = 100;
  b.blocks_used = 20;
  b.preemptions = 1;
  board.set(0, a);
  board.set(2, b);
  board.set(2, b);  // the latest report replaces the last
  CHECK(board.replicas() == 2);
  const KvCacheStats t = board.total();
  CHECK(t.blocks_total == 200);
  CHECK(t.blocks_used == 30);
  CHECK(t.prefix_hit_tokens == 5);
  CHECK(t.preemptions == 1);
}
