#include "comm/world.h"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "comm/mpi_check.h"
#include "core/error.h"
#include "core/watchdog.h"

namespace tpinfer {
namespace {

static_assert(sizeof(MPI_Comm) <= sizeof(void*), "MPI_Comm must fit in pointer-sized storage");

MPI_Comm& as_comm(void*& storage) {
  return *reinterpret_cast<MPI_Comm*>(&storage);
}

}  // namespace

World::World(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  // Errors come back as codes (turned into tpinfer::Error), not as aborts inside MPI.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  as_comm(world_comm_) = MPI_COMM_WORLD;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));

  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  hostname_ = host;

  // Node-local rank from MPI itself (shared-memory domains), not from hostnames.
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL,
                                &as_comm(node_comm_)));
  MPI_CHECK(MPI_Comm_rank(as_comm(node_comm_), &local_rank_));
  MPI_CHECK(MPI_Comm_size(as_comm(node_comm_), &local_size_));
  // Node index: order nodes by their lowest world rank.
  int node_leader = rank_;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &node_leader, 1, MPI_INT, MPI_MIN, as_comm(node_comm_)));
  std::vector<int> leaders(size_);
  MPI_CHECK(MPI_Allgather(&node_leader, 1, MPI_INT, leaders.data(), 1, MPI_INT, MPI_COMM_WORLD));
  std::vector<int> unique = leaders;
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  n_nodes_ = static_cast<int>(unique.size());
  node_index_ = static_cast<int>(std::lower_bound(unique.begin(), unique.end(), node_leader) -
                                 unique.begin());
  set_layout(size_, 1);
}

World::~World() {
  for (void** c : {&tp_comm_, &pipe_comm_}) {
    if (*c != nullptr && as_comm(*c) != MPI_COMM_NULL) MPI_Comm_free(&as_comm(*c));
  }
  if (node_comm_ != nullptr) MPI_Comm_free(&as_comm(node_comm_));
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void World::set_layout(int tp, int pp) {
  const ParallelLayout l = ParallelLayout::make(size_, rank_, tp, pp);
  if (tp_comm_ != nullptr && l.tp == layout_.tp && l.pp == layout_.pp) return;  // already so
  for (void** c : {&tp_comm_, &pipe_comm_}) {
    if (*c != nullptr && as_comm(*c) != MPI_COMM_NULL) MPI_Comm_free(&as_comm(*c));
  }
  layout_ = l;
  MPI_CHECK(
      MPI_Comm_split(MPI_COMM_WORLD, l.dp_rank * l.pp + l.pp_rank, l.tp_rank, &as_comm(tp_comm_)));
  MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, l.dp_rank * l.tp + l.tp_rank, l.pp_rank,
                           &as_comm(pipe_comm_)));
  // Does this tp group live on one node? (Compare node indices across the group.)
  int mine[2] = {node_index_, -node_index_};
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, mine, 2, MPI_INT, MPI_MAX, as_comm(tp_comm_)));
  tp_group_one_node_ = (mine[0] == -mine[1]);
}

void World::broadcast_world(void* data, size_t bytes, int root) {
  WatchWait wait("a broadcast over all ranks", root);
  MPI_CHECK(MPI_Bcast(data, static_cast<int>(bytes), MPI_BYTE, root, MPI_COMM_WORLD));
}

void World::broadcast_tp(void* data, size_t bytes, int root) {
  WatchWait wait("a broadcast over the tp group",
                 layout_.rank_of(layout_.dp_rank, layout_.pp_rank, root));
  MPI_CHECK(MPI_Bcast(data, static_cast<int>(bytes), MPI_BYTE, root, as_comm(tp_comm_)));
}

void World::broadcast_tp_sleepy(void* data, size_t bytes, int root, int sleep_us) {
  WatchWait wait("a broadcast over the tp group",
                 layout_.rank_of(layout_.dp_rank, layout_.pp_rank, root));
  MPI_Request req;
  MPI_CHECK(MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, as_comm(tp_comm_), &req));
  // Spin for the first 2 ms (a decoding leader sends the next step within a sampling time, and a
  // sleep would add to every token), then sleep between tests (an idle leader).
  const auto spin_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2);
  for (int done = 0;;) {
    MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return;
    if (sleep_us > 0 && std::chrono::steady_clock::now() > spin_until) {
      std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
    }
  }
}

void World::barrier() {
  WatchWait wait("a barrier over all ranks");
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

void World::agree(bool ok, const std::string& error_message) {
  WatchWait wait("the all-ranks agreement that every rank succeeded");
  int failed_rank = ok ? size_ : rank_;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &failed_rank, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (failed_rank == size_) return;
  int len = rank_ == failed_rank ? static_cast<int>(error_message.size()) : 0;
  MPI_CHECK(MPI_Bcast(&len, 1, MPI_INT, failed_rank, MPI_COMM_WORLD));
  std::string msg(static_cast<size_t>(len), '\0');
  if (rank_ == failed_rank) msg = error_message;
  MPI_CHECK(MPI_Bcast(msg.data(), len, MPI_CHAR, failed_rank, MPI_COMM_WORLD));
  if (rank_ == failed_rank) throw Error(msg);
  throw Error("rank " + std::to_string(failed_rank) + " failed: " + msg);
}

int64_t World::all_reduce_max_world(int64_t v) {
  WatchWait wait("an all-reduce over all ranks");
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD));
  return v;
}

int64_t World::all_reduce_sum_world(int64_t v) {
  WatchWait wait("an all-reduce over all ranks");
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
  return v;
}

std::vector<std::string> World::gather_strings(const std::string& s) {
  WatchWait wait("a gather to rank 0 over all ranks");
  int len = static_cast<int>(s.size());
  std::vector<int> lens(rank_ == 0 ? size_ : 0);
  MPI_CHECK(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD));
  std::vector<int> displs;
  std::string all;
  if (rank_ == 0) {
    displs.resize(size_);
    int total = 0;
    for (int r = 0; r < size_; ++r) {
      displs[r] = total;
      total += lens[r];
    }
    all.resize(static_cast<size_t>(total));
  }
  MPI_CHECK(MPI_Gatherv(s.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR,
                        0, MPI_COMM_WORLD));
  std::vector<std::string> out;
  if (rank_ == 0) {
    for (int r = 0; r < size_; ++r) out.push_back(all.substr(displs[r], lens[r]));
  }
  return out;
}

void World::abort(int code) {
  // Flush what is buffered, but never wait for a stream another thread holds (the watchdog
  // aborts while the main thread may be blocked writing to a stdout nobody reads).
  for (FILE* f : {stdout, stderr}) {
    if (ftrylockfile(f) != 0) continue;
    std::fflush(f);
    funlockfile(f);
  }
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace tpinfer
