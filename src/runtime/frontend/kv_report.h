// The replicas' KV cache counters (KvCacheStats, summed over replicas) as the end-of-job
// metrics line and the --metrics-json file show them, in one place for every front end.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "runtime/scheduler/request.h"

namespace tpinfer {

// " | kv blocks 120/4096 used, 300 cached | prefix cache 1800/2000 prompt tokens hit (90.0%) |
// 2 preemption(s)"; "" when there is no block pool (blocks_total 0).
std::string kv_stats_line(const KvCacheStats& s);

// {"blocks_total", "blocks_used", "blocks_cached", "prefix_query_tokens", "prefix_hit_tokens",
// "prefix_hit_rate", "preemptions"}.
nlohmann::json kv_stats_json(const KvCacheStats& s);

}  // namespace tpinfer
