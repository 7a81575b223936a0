// Error handling, tier 1: configuration, load and shape problems throw tpinfer::Error with a
// one-line message saying what was expected and what was found. API failures of CUDA, cuBLAS,
// NCCL and MPI go through the *_CHECK macros of their own modules (tier 2).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace tpinfer {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
// Builds a message from stream-style pieces: TPI_FAIL("tp=" << tp << " does not divide ...").
struct MessageBuilder {
  std::ostringstream os;
  template <typename T>
  MessageBuilder& operator<<(const T& v) {
    os << v;
    return *this;
  }
  std::string str() const { return os.str(); }
};
}  // namespace detail

}  // namespace tpinfer

#define TPI_FAIL(msg) throw ::tpinfer::Error((::tpinfer::detail::MessageBuilder() << msg).str())

#define TPI_CHECK(cond, msg)    \
  do {                          \
    if (!(cond)) TPI_FAIL(msg); \
  } while (0)
