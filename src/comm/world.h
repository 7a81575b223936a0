// The MPI world and its layout (comm/layout.h): world = dp x pp x tp, tp innermost, so the ranks
// of a tensor-parallel group are consecutive (they share a node by default), then the pipeline
// stages of a replica, then the data-parallel replicas. Also the control
// plane: small host broadcasts and the "did every rank succeed" agreement that keeps one rank's
// failure from leaving the others hanging in a collective. No MPI types cross this header.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/layout.h"

namespace tpinfer {

class World {
 public:
  // MPI_Init (thread level funneled) / MPI_Finalize. One per process.
  World(int* argc, char*** argv);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // rank among the processes on this node
  int local_size() const { return local_size_; }
  int node_index() const { return node_index_; }  // 0..n_nodes-1, ordered by lowest world rank
  int n_nodes() const { return n_nodes_; }
  const std::string& hostname() const { return hostname_; }

  // Lays the world out as dp x pp x tp (ParallelLayout::make: throws the same clear line on
  // every rank when tp x pp does not divide size) and splits the tp groups and the pipeline
  // columns (one rank per stage, same dp and tp rank). tp <= 0: size / pp.
  void set_layout(int tp, int pp);
  void set_tp(int tp) { set_layout(tp, 1); }
  const ParallelLayout& layout() const { return layout_; }
  int tp() const { return layout_.tp; }
  int tp_rank() const { return layout_.tp_rank; }
  int pp() const { return layout_.pp; }
  int pp_rank() const { return layout_.pp_rank; }
  int dp() const { return layout_.dp; }
  int dp_rank() const { return layout_.dp_rank; }
  int replica_size() const { return layout_.replica_size(); }
  int replica_rank() const { return layout_.replica_rank(); }
  bool tp_group_on_one_node() const { return tp_group_one_node_; }

  // Opaque handles to the MPI communicators (MPI_Comm stored as intptr-sized storage).
  void* tp_comm_handle() { return &tp_comm_; }
  void* pipe_comm_handle() { return &pipe_comm_; }  // rank i = stage i of this (dp, tp) column
  void* world_comm_handle() { return &world_comm_; }

  // Control plane over the world or the tp group.
  void broadcast_world(void* data, size_t bytes, int root = 0);
  void broadcast_tp(void* data, size_t bytes, int root = 0);  // root = tp rank
  // The same over the tp group, but after 2 ms of waiting it sleeps sleep_us between tests
  // instead of spinning in MPI: for a follower that may wait long for its leader's next step (an
  // idle server). A non-blocking broadcast matches only another one: the root calls this too
  // (sleep_us 0).
  void broadcast_tp_sleepy(void* data, size_t bytes, int root = 0, int sleep_us = 200);
  void barrier();
  // Every rank calls this with its own status. If any rank failed, every rank throws
  // tpinfer::Error with the first failing rank's message (prefixed with that rank).
  void agree(bool ok, const std::string& error_message);
  int64_t all_reduce_max_world(int64_t v);
  int64_t all_reduce_sum_world(int64_t v);
  // Gathers one string from every rank to world rank 0 (others get an empty vector).
  std::vector<std::string> gather_strings(const std::string& s);
  [[noreturn]] void abort(int code);

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1, node_index_ = 0, n_nodes_ = 1;
  ParallelLayout layout_;
  bool tp_group_one_node_ = true;
  std::string hostname_;
  // MPI_Comm is an int in MPICH and a pointer in Open MPI: store it in pointer-sized space.
  void* world_comm_ = nullptr;
  void* tp_comm_ = nullptr;
  void* pipe_comm_ = nullptr;
  void* node_comm_ = nullptr;
};

}  // namespace tpinfer
