#include "comm/mailbox.h"

#include <mpi.h>

#include <chrono>
#include <climits>
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
MPI_Request* as_request(void* p) {
  return static_cast<MPI_Request*>(p);
}

}  // namespace

Mailbox::Mailbox(World& world) : world_(world) {
  MPI_Comm parent = *static_cast<MPI_Comm*>(world.world_comm_handle());
  MPI_CHECK(MPI_Comm_dup(parent, &as_comm(comm_)));
  MPI_CHECK(MPI_Comm_set_errhandler(as_comm(comm_), MPI_ERRORS_RETURN));
}

Mailbox::~Mailbox() {
  try {
    flush();
  } catch (...) {
    // Destructors must not throw; a failed send has nobody left to tell.
  }
  for (Pending& p : pending_) delete as_request(p.request);
  MPI_Comm_free(&as_comm(comm_));
}

void Mailbox::send(int dest, int tag, std::string payload) {
  TPI_CHECK(payload.size() <= static_cast<size_t>(INT_MAX),
            "mailbox: message of " << payload.size() << " bytes is too large");
  pending_.push_back(Pending{std::move(payload), new MPI_Request(MPI_REQUEST_NULL)});
  Pending& p = pending_.back();
  MPI_CHECK(MPI_Isend(p.buffer.data(), static_cast<int>(p.buffer.size()), MPI_BYTE, dest, tag,
                      as_comm(comm_), as_request(p.request)));
  progress();
}

std::optional<Message> Mailbox::poll() {
  progress();
  int flag = 0;
  MPI_Status st;
  MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, as_comm(comm_), &flag, &st));
  if (!flag) return std::nullopt;
  int count = 0;
  MPI_CHECK(MPI_Get_count(&st, MPI_BYTE, &count));
  Message m;
  m.source = st.MPI_SOURCE;
  m.tag = st.MPI_TAG;
  m.payload.resize(static_cast<size_t>(count));
  MPI_CHECK(MPI_Recv(m.payload.data(), count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, as_comm(comm_),
                     MPI_STATUS_IGNORE));
  watch_beat();
  return m;
}

Message Mailbox::wait(int sleep_us) {
  for (;;) {
    if (std::optional<Message> m = poll()) return std::move(*m);
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
  }
}

void Mailbox::progress() {
  for (auto it = pending_.begin(); it != pending_.end();) {
    int done = 0;
    MPI_CHECK(MPI_Test(as_request(it->request), &done, MPI_STATUS_IGNORE));
    if (done) {
      delete as_request(it->request);
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
}

void Mailbox::flush() {
  WatchWait wait("the delivery of this rank's last messages");
  for (Pending& p : pending_) {
    MPI_CHECK(MPI_Wait(as_request(p.request), MPI_STATUS_IGNORE));
    delete as_request(p.request);
    p.request = nullptr;
  }
  pending_.clear();
}

void Mailbox::sleepy_barrier(int sleep_us) {
  MPI_Request req = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Ibarrier(as_comm(comm_), &req));
  for (;;) {
    int done = 0;
    MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return;
    progress();
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
  }
}

bool any_in_tp(World& world, bool flag) {
  if (world.tp() == 1) return flag;
  WatchWait wait("the stop-flag all-reduce over the tp group");
  int v = flag ? 1 : 0;
  MPI_Comm comm = *static_cast<MPI_Comm*>(world.tp_comm_handle());
  const int rc = MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, comm);
  TPI_CHECK(rc == MPI_SUCCESS, "MPI_Allreduce over the tp group failed on rank " << world.rank());
  return v != 0;
}

}  // namespace tpinfer
