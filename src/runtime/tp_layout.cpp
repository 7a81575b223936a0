#include "runtime/tp_layout.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/log.h"

namespace tpinfer {

void check_tp_layout(World& world) {
  const int64_t groups_split =
      world.all_reduce_sum_world(world.tp_rank() == 0 && !world.tp_group_on_one_node() ? 1 : 0);
  if (groups_split == 0) return;
  const char* allow_env = std::getenv("TPINFER_ALLOW_CROSS_NODE_TP");
  const bool allow_here = allow_env != nullptr && std::strcmp(allow_env, "1") == 0;
  // Every rank must decide alike, even if the environment differs between nodes.
  const bool allow = world.all_reduce_sum_world(allow_here ? 1 : 0) == world.size();
  const int per_node = world.local_size();
  if (allow) {
    if (world.rank() == 0) {
      TPI_LOG_WARN << groups_split << " of " << world.dp() * world.pp() << " tp group(s) of "
                   << world.tp()
                   << " ranks span nodes (allowed by TPINFER_ALLOW_CROSS_NODE_TP=1): every layer's "
                   << "all-reduce crosses the network";
    }
    return;
  }
  TPI_FAIL(groups_split << " of " << world.dp() * world.pp()
                        << " tensor-parallel group(s) of tp=" << world.tp() << " span nodes ("
                        << world.size() << " ranks on " << world.n_nodes() << " nodes, " << per_node
                        << " on this one): every layer all-reduces "
                        << "inside a group, so keep a group on one node: launch a multiple of "
                        << world.tp() << " ranks per node (e.g. --ntasks-per-node=" << world.tp()
                        << "), or lower tp; set TPINFER_ALLOW_CROSS_NODE_TP=1 to run anyway");
}

void log_layout(World& world, const std::string& device) {
  const ParallelLayout& l = world.layout();
  const std::string mine = std::to_string(world.node_index()) + "\t" + world.hostname() + "\t" +
                           std::to_string(l.rank) + "\t" + std::to_string(l.dp_rank) + "\t" +
                           std::to_string(l.pp_rank) + "\t" + std::to_string(l.tp_rank) + "\t" +
                           device;
  const std::vector<std::string> rows = world.gather_strings(mine);
  if (world.rank() != 0) return;
  TPI_LOG_INFO << "layout: " << l.world_size << " rank(s) = dp " << l.dp << " x pp " << l.pp
               << " x tp " << l.tp << " (tp innermost, then pp, then dp)";
  size_t host_width = 4;
  for (const std::string& r : rows) {
    const size_t a = r.find('\t') + 1;
    host_width = std::max(host_width, r.find('\t', a) - a);
  }
  char line[512];
  std::snprintf(line, sizeof line, "  %-4s  %-*s  %5s  %3s  %3s  %3s  %s", "node",
                static_cast<int>(host_width), "host", "rank", "dp", "pp", "tp", "device");
  TPI_LOG_INFO << line;
  constexpr size_t kMaxRows = 64;
  for (size_t i = 0; i < rows.size() && i < kMaxRows; ++i) {
    std::vector<std::string> f;
    size_t start = 0;
    for (size_t tab; (tab = rows[i].find('\t', start)) != std::string::npos; start = tab + 1) {
      f.push_back(rows[i].substr(start, tab - start));
    }
    f.push_back(rows[i].substr(start));
    if (f.size() != 7) continue;
    std::snprintf(line, sizeof line, "  %-4s  %-*s  %5s  %3s  %3s  %3s  %s", f[0].c_str(),
                  static_cast<int>(host_width), f[1].c_str(), f[2].c_str(), f[3].c_str(),
                  f[4].c_str(), f[5].c_str(), f[6].c_str());
    TPI_LOG_INFO << line;
  }
  if (rows.size() > kMaxRows) {
    TPI_LOG_INFO << "  ... and " << rows.size() - kMaxRows << " more";
  }
}

}  // namespace tpinfer
