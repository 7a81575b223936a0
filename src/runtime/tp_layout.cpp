#include "runtime/tp_layout.h"

#include <cstdlib>
#include <cstring>

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
      TPI_LOG_WARN << groups_split << " of " << world.dp() << " tp group(s) of " << world.tp()
                   << " ranks span nodes (allowed by TPINFER_ALLOW_CROSS_NODE_TP=1): every layer's "
                   << "all-reduce crosses the network";
    }
    return;
  }
  TPI_FAIL(groups_split << " of " << world.dp() << " tensor-parallel group(s) of tp=" << world.tp()
                        << " span nodes (" << world.size() << " ranks on " << world.n_nodes()
                        << " nodes, " << per_node << " on this one): every layer all-reduces "
                        << "inside a group, so keep a group on one node: launch a multiple of "
                        << world.tp() << " ranks per node (e.g. --ntasks-per-node=" << world.tp()
                        << "), or lower tp; set TPINFER_ALLOW_CROSS_NODE_TP=1 to run anyway");
}

}  // namespace tpinfer
