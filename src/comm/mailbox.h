// Point-to-point control messages between world ranks (batch work, results, stop requests), on
// a private duplicate of the world communicator so they never match anyone else's traffic.
// Sends are non-blocking and own their buffer: two ranks sending each other large messages at
// the same time cannot deadlock. Receives are polled (probe, then receive), so a rank can do its
// own work between messages. Messages from one sender arrive in the order they were sent.
#pragma once

#include <list>
#include <optional>
#include <string>
#include <vector>

#include "comm/world.h"

namespace tpinfer {

struct Message {
  int source = -1;
  int tag = -1;
  std::string payload;
};

class Mailbox {
 public:
  explicit Mailbox(World& world);
  ~Mailbox();  // completes pending sends
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  void send(int dest, int tag, std::string payload);
  // The next message from anyone (in per-sender order), or nullopt when none has arrived.
  std::optional<Message> poll();
  // Blocks until a message arrives, sleeping `sleep_us` between polls (not spinning: on an
  // oversubscribed node the ranks that compute need the cores).
  Message wait(int sleep_us = 200);
  // Frees the buffers of sends that have completed.
  void progress();
  // Waits until every send of this rank has completed.
  void flush();
  // A barrier over the world that sleeps between tests instead of spinning.
  void sleepy_barrier(int sleep_us = 1000);

 private:
  struct Pending {
    std::string buffer;
    void* request = nullptr;  // MPI_Request, heap-allocated (no MPI types in this header)
  };
  World& world_;
  void* comm_ = nullptr;  // MPI_Comm in pointer-sized storage
  std::list<Pending> pending_;
};

// True on every rank of the caller's tp group when `flag` is true on any of them ("someone was
// asked to stop"). A collective over the tp group; pipeline stages carry the flag on from stage to
// stage with the step plans (runtime/scheduler/plan_channel.h).
bool any_in_tp(World& world, bool flag);

}  // namespace tpinfer
