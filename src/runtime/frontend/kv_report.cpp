#include "runtime/frontend/kv_report.h"

#include <cstdio>

namespace tpinfer {
namespace {

double hit_rate(const KvCacheStats& s) {
  return s.prefix_query_tokens > 0
             ? static_cast<double>(s.prefix_hit_tokens) / static_cast<double>(s.prefix_query_tokens)
             : 0.0;
}

}  // namespace

std::string kv_stats_line(const KvCacheStats& s) {
  if (s.blocks_total <= 0) return "";
  char line[256];
  std::snprintf(line, sizeof line,
                " | kv blocks %lld/%lld used, %lld cached | prefix cache %lld/%lld prompt tokens "
                "hit (%.1f%%) | %lld preemption(s)",
                static_cast<long long>(s.blocks_used), static_cast<long long>(s.blocks_total),
                static_cast<long long>(s.blocks_cached),
                static_cast<long long>(s.prefix_hit_tokens),
                static_cast<long long>(s.prefix_query_tokens), 100.0 * hit_rate(s),
                static_cast<long long>(s.preemptions));
  return line;
}

nlohmann::json kv_stats_json(const KvCacheStats& s) {
  return {{"blocks_total", s.blocks_total},
          {"blocks_used", s.blocks_used},
          {"blocks_cached", s.blocks_cached},
          {"prefix_query_tokens", s.prefix_query_tokens},
          {"prefix_hit_tokens", s.prefix_hit_tokens},
          {"prefix_hit_rate", hit_rate(s)},
          {"preemptions", s.preemptions}};
}

}  // namespace tpinfer
