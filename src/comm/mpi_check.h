// MPI_CHECK: tier-2 error handling for MPI calls (communicators use MPI_ERRORS_RETURN). A failure
// throws tpinfer::Error naming the call, file:line, the world rank and MPI's own message.
// Private to src/comm: it includes <mpi.h>.
#pragma once

#include <mpi.h>

#include "core/error.h"

namespace tpinfer::detail {

[[noreturn]] inline void mpi_fail(int rc, const char* call, const char* file, int line) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  TPI_FAIL("MPI call failed: " << call << " at " << file << ":" << line << " on rank " << rank
                               << ": " << msg);
}

}  // namespace tpinfer::detail

#define MPI_CHECK(call)                                                                          \
  do {                                                                                           \
    const int mpi_rc_ = (call);                                                                  \
    if (mpi_rc_ != MPI_SUCCESS) ::tpinfer::detail::mpi_fail(mpi_rc_, #call, __FILE__, __LINE__); \
  } while (0)
