// Requests, deltas and outcomes cross between rank 0 and the replica leaders unchanged
// (runtime/scheduler/wire), and text that is not valid UTF-8 still makes a parsable message.
#include <catch2/catch.hpp>

#include "runtime/scheduler/wire.h"

using namespace tpinfer;

TEST_CASE("a request crosses the wire unchanged", "[scheduler]") {
  ScheduledRequest r;
  r.seq = 1234567890123ull;
  r.request.prompt_ids = {1, 2, 3};
  r.request.max_new_tokens = 8;
  r.request.sampling = SamplingParams{0.7f, 3, 0.25f, 0xfedcba9876543210ull};
  r.request.stop = {"END", "\n\n"};
  r.request.ignore_eos = true;
  r.request.logprobs = 5;
  r.request.stream = true;
  r.request.n = 7;
  r.request.prompt = "not sent";  // ids travel, never text
  const ScheduledRequest back = request_from_wire(request_to_wire(r));
  CHECK(back.seq == r.seq);
  CHECK(back.request.prompt_ids == r.request.prompt_ids);
  CHECK(back.request.max_new_tokens == 8);
  CHECK(back.request.sampling.temperature == r.request.sampling.temperature);
  CHECK(back.request.sampling.top_k == 3);
  CHECK(back.request.sampling.top_p == r.request.sampling.top_p);
  CHECK(back.request.sampling.seed == r.request.sampling.seed);
  CHECK(back.request.stop == r.request.stop);
  CHECK(back.request.ignore_eos);
  CHECK(back.request.logprobs == 5);
  CHECK(back.request.stream);
  CHECK(back.request.n == 7);
  CHECK(back.request.prompt.empty());
}

TEST_CASE("deltas and outcomes cross the wire unchanged", "[scheduler]") {
  GenerationDelta d;
  d.index = 2;
  d.text = "caf\xc3\xa9";
  d.token_ids = {7, 8};
  d.logprobs = {TokenLogprob{7, -0.125f, {{7, -0.125f}, {9, -2.5f}}},
                TokenLogprob{8, -1.0f / 3.0f, {}}};
  uint64_t seq = 0;
  const GenerationDelta db = delta_from_wire(delta_to_wire(42, d), seq);
  CHECK(seq == 42);
  CHECK(db.index == 2);
  CHECK(db.text == d.text);
  CHECK(db.token_ids == d.token_ids);
  REQUIRE(db.logprobs.size() == 2);
  CHECK(db.logprobs[0].top == d.logprobs[0].top);
  CHECK(db.logprobs[1].logprob == d.logprobs[1].logprob);  // floats round-trip exactly

  GenerationOutcome o;
  o.text = "ok \xff end";  // not UTF-8: replaced, the message still parses
  o.finish_reason = "error";
  o.error = "token 3: non-finite logits";
  o.prompt_tokens = 5;
  o.token_ids = {4, 5, 6};
  o.prefill_ms = 1.5;
  o.ttft_ms = 2.5;
  o.total_ms = 9.0;
  o.decode_ms = {0.5, 0.25};
  o.replica = 3;
  o.index = 5;
  std::optional<KvCacheStats> kv;
  const GenerationOutcome ob = outcome_from_wire(outcome_to_wire(7, o), seq, &kv);
  CHECK_FALSE(kv);  // sent without counters
  CHECK(ob.index == 5);
  CHECK(seq == 7);
  CHECK(ob.text == "ok \xef\xbf\xbd end");
  CHECK(ob.finish_reason == "error");
  CHECK(ob.error == o.error);
  CHECK(ob.prompt_tokens == 5);
  CHECK(ob.token_ids == o.token_ids);
  CHECK(ob.prefill_ms == 1.5);
  CHECK(ob.ttft_ms == 2.5);
  CHECK(ob.total_ms == 9.0);
  CHECK(ob.decode_ms == o.decode_ms);
  CHECK(ob.replica == 3);
}

TEST_CASE("an outcome carries its replica's KV cache counters", "[scheduler]") {
  KvCacheStats k;
  k.blocks_total = 4096;
  k.blocks_used = 100;
  k.blocks_cached = 37;
  k.prefix_query_tokens = 1ll << 40;  // 64-bit counters
  k.prefix_hit_tokens = 12345;
  k.preemptions = 3;
  GenerationOutcome o;
  o.finish_reason = "stop";
  uint64_t seq = 0;
  std::optional<KvCacheStats> back;
  outcome_from_wire(outcome_to_wire(9, o, &k), seq, &back);
  REQUIRE(back);
  CHECK(back->blocks_total == 4096);
  CHECK(back->blocks_used == 100);
  CHECK(back->blocks_cached == 37);
  CHECK(back->prefix_query_tokens == (1ll << 40));
  CHECK(back->prefix_hit_tokens == 12345);
  CHECK(back->preemptions == 3);
  const KvCacheStats again = kv_stats_from_wire(kv_stats_to_wire(k));
  CHECK(again.preemptions == 3);
}
