// The data plane of tensor parallelism: collectives over one tensor-parallel group, on backend
// memory, enqueued in order with the backend's ops. Three implementations: null (tp = 1: copies
// through the backend), MPI (host buffers, CPU backend; lets CI run real TP; stages through
// backend copies when the memory is not the host's) and NCCL (device buffers, CUDA backend).
// None of them touches backend memory from the host unless the backend says it may.
// Control-plane traffic (prompt ids, next token, load status) goes through World instead.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/dtype.h"

namespace tpinfer {

class Backend;
class World;

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Whether its collectives can be captured into a backend graph (no host staging in between).
  virtual bool capturable() const = 0;
  // In place: buf[i] = sum over ranks of buf[i].
  virtual void all_reduce_sum(void* buf, size_t count, DType dtype) = 0;
  // recv[r * count + i] = send_of_rank_r[i]; recv holds size() * count elements.
  virtual void all_gather(void* recv, const void* send, size_t count, DType dtype) = 0;
};

enum class CommKind { null, mpi, nccl };

const char* comm_kind_name(CommKind k);

// The communicator of a group of one (tp = 1): nothing to reduce, gathers are backend copies.
std::unique_ptr<Communicator> make_single_rank_communicator(Backend& backend);

// Builds the communicator for this rank's tensor-parallel group of `world`. NCCL needs the CUDA
// backend (its buffers are device memory); MPI needs host-addressable buffers.
std::unique_ptr<Communicator> make_communicator(CommKind kind, World& world, Backend& backend);

}  // namespace tpinfer
