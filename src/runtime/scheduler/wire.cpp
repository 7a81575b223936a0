#include "runtime/scheduler/wire.h"

#include <nlohmann/json.hpp>

namespace tpinfer {
namespace {

using json = nlohmann::json;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json logprobs_to_json(const std::vector<TokenLogprob>& lps) {
  json a = json::array();
  for (const TokenLogprob& lp : lps) {
    json top = json::array();
    for (const auto& [id, v] : lp.top) top.push_back({id, v});
    a.push_back({lp.id, lp.logprob, top});
  }
  return a;
}

std::vector<TokenLogprob> logprobs_from_json(const json& a) {
  std::vector<TokenLogprob> out;
  out.reserve(a.size());
  for (const json& e : a) {
    TokenLogprob lp;
    lp.id = e.at(0).get<int32_t>();
    lp.logprob = e.at(1).get<float>();
    for (const json& t : e.at(2)) lp.top.emplace_back(t.at(0).get<int32_t>(), t.at(1).get<float>());
    out.push_back(std::move(lp));
  }
  return out;
}

}  // namespace

json request_to_wire(const ScheduledRequest& r) {
  const GenerationRequest& q = r.request;
  return json{{"seq", r.seq},
              {"ids", q.prompt_ids},
              {"max_new_tokens", q.max_new_tokens},
              {"temperature", q.sampling.temperature},
              {"top_k", q.sampling.top_k},
              {"top_p", q.sampling.top_p},
              {"seed", q.sampling.seed},
              {"stop", q.stop},
              {"ignore_eos", q.ignore_eos},
              {"logprobs", q.logprobs},
              {"stream", q.stream},
              {"n", q.n},
              {"min_p", q.sampling.min_p},
              {"presence_penalty", q.sampling.presence_penalty},
              {"frequency_penalty", q.sampling.frequency_penalty},
              {"repetition_penalty", q.sampling.repetition_penalty},
              {"logit_bias", q.sampling.logit_bias},
              {"stop_token_ids", q.stop_token_ids},
              {"prompt_logprobs", q.prompt_logprobs},
              {"schema", q.response_schema},
              {"keep_special", q.keep_special_text}};
}

ScheduledRequest request_from_wire(const json& j) {
  ScheduledRequest r;
  r.seq = j.at("seq").get<uint64_t>();
  GenerationRequest& q = r.request;
  q.prompt_ids = j.at("ids").get<std::vector<int32_t>>();
  q.max_new_tokens = j.at("max_new_tokens").get<int>();
  q.sampling.temperature = j.at("temperature").get<float>();
  q.sampling.top_k = j.at("top_k").get<int>();
  q.sampling.top_p = j.at("top_p").get<float>();
  q.sampling.seed = j.at("seed").get<uint64_t>();
  q.stop = j.at("stop").get<std::vector<std::string>>();
  q.ignore_eos = j.at("ignore_eos").get<bool>();
  q.logprobs = j.at("logprobs").get<int>();
  q.stream = j.at("stream").get<bool>();
  q.n = j.at("n").get<int>();
  q.sampling.min_p = j.at("min_p").get<float>();
  q.sampling.presence_penalty = j.at("presence_penalty").get<float>();
  q.sampling.frequency_penalty = j.at("frequency_penalty").get<float>();
  q.sampling.repetition_penalty = j.at("repetition_penalty").get<float>();
  q.sampling.logit_bias = j.at("logit_bias").get<std::vector<std::pair<int32_t, float>>>();
  q.stop_token_ids = j.at("stop_token_ids").get<std::vector<int32_t>>();
  q.prompt_logprobs = j.at("prompt_logprobs").get<int>();
  q.response_schema = j.at("schema").get<std::string>();
  q.keep_special_text = j.at("keep_special").get<bool>();
  return r;
}

std::string delta_to_wire(uint64_t seq, const GenerationDelta& d) {
  return dump({{"seq", seq},
               {"index", d.index},
               {"text", d.text},
               {"ids", d.token_ids},
               {"lp", logprobs_to_json(d.logprobs)}});
}

GenerationDelta delta_from_wire(const std::string& text, uint64_t& seq) {
  const json j = json::parse(text);
  seq = j.at("seq").get<uint64_t>();
  GenerationDelta d;
  d.index = j.at("index").get<int>();
  d.text = j.at("text").get<std::string>();
  d.token_ids = j.at("ids").get<std::vector<int32_t>>();
  d.logprobs = logprobs_from_json(j.at("lp"));
  return d;
}

json kv_stats_to_wire(const KvCacheStats& s) {
  return json::array({s.blocks_total, s.blocks_used, s.blocks_cached, s.prefix_query_tokens,
                      s.prefix_hit_tokens, s.preemptions});
}

KvCacheStats kv_stats_from_wire(const json& j) {
  KvCacheStats s;
  s.blocks_total = j.at(0).get<int64_t>();
  s.blocks_used = j.at(1).get<int64_t>();
  s.blocks_cached = j.at(2).get<int64_t>();
  s.prefix_query_tokens = j.at(3).get<int64_t>();
  s.prefix_hit_tokens = j.at(4).get<int64_t>();
  s.preemptions = j.at(5).get<int64_t>();
  return s;
}

std::string outcome_to_wire(uint64_t seq, const GenerationOutcome& o, const KvCacheStats* kv) {
  return dump({{"seq", seq},
               {"index", o.index},
               {"text", o.text},
               {"finish_reason", o.finish_reason},
               {"error", o.error},
               {"prompt_tokens", o.prompt_tokens},
               {"ids", o.token_ids},
               {"lp", logprobs_to_json(o.logprobs)},
               {"pids", o.prompt_ids},
               {"plp", logprobs_to_json(o.prompt_logprobs)},
               {"prefill_ms", o.prefill_ms},
               {"ttft_ms", o.ttft_ms},
               {"total_ms", o.total_ms},
               {"decode_ms", o.decode_ms},
               {"replica", o.replica},
               {"kv", kv ? kv_stats_to_wire(*kv) : json()}});
}

GenerationOutcome outcome_from_wire(const std::string& text, uint64_t& seq,
                                    std::optional<KvCacheStats>* kv) {
  const json j = json::parse(text);
  seq = j.at("seq").get<uint64_t>();
  GenerationOutcome o;
  o.index = j.at("index").get<int>();
  o.text = j.at("text").get<std::string>();
  o.finish_reason = j.at("finish_reason").get<std::string>();
  o.error = j.at("error").get<std::string>();
  o.prompt_tokens = j.at("prompt_tokens").get<int>();
  o.token_ids = j.at("ids").get<std::vector<int32_t>>();
  o.logprobs = logprobs_from_json(j.at("lp"));
  o.prompt_ids = j.at("pids").get<std::vector<int32_t>>();
  o.prompt_logprobs = logprobs_from_json(j.at("plp"));
  o.prefill_ms = j.at("prefill_ms").get<double>();
  o.ttft_ms = j.at("ttft_ms").get<double>();
  o.total_ms = j.at("total_ms").get<double>();
  o.decode_ms = j.at("decode_ms").get<std::vector<double>>();
  o.replica = j.at("replica").get<int>();
  const json& k = j.at("kv");
  if (kv && !k.is_null()) *kv = kv_stats_from_wire(k);
  return o;
}

}  // namespace tpinfer
