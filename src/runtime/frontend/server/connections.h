// The HTTP server's connections, served one per worker thread (worker_pool.h) with bounds that
// idle, slow or hostile clients cannot get around:
//   - a cap on open connections: one more is answered 503 with Retry-After and closed;
//   - a deadline for reading each request, head and body together (not per read): a client that
//     sends half a request or trickles its body loses the connection when it passes;
//   - a keep-alive wait between requests (one blocking poll, ended at the idle timeout) and no
//     limit on the requests a connection carries;
//   - close_all(), which ends every connection at once (the server's stop()).
// Writing an answer (a long stream) has no deadline, only a timeout per write.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>

namespace tpinfer {

struct ConnectionLimits {
  int max_connections = 2048;
  double request_timeout_s = 30;     // the whole request head and body, from its first byte
  double keep_alive_timeout_s = 60;  // an idle connection between requests
  double write_timeout_s = 30;       // one write (a client that stops reading)
  // Bytes one request may read, head and body (a body over the server's limit is refused from
  // its Content-Length before it is read; this bounds a head of endless header lines).
  int64_t max_request_read_bytes = (4 << 20) + (1 << 20);
};

// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit in force (-1: unknown).
long raise_fd_limit();

class Connections {
 public:
  // `busy_body`: the JSON body of the 503 answered beyond the cap.
  Connections(ConnectionLimits limits, std::string busy_body);

  // Reads and answers the requests of the accepted socket `fd` until the client closes, a limit
  // ends it or close_all(); then closes it. `process` handles one request on the stream (httplib's
  // process_request): returns false or sets `closed` when the connection must end.
  using ProcessRequest =
      std::function<bool(httplib::Stream& strm, bool close_connection, bool& closed)>;
  void serve(int fd, const ProcessRequest& process);

  // The socket of the connection this thread serves, -1 if none (a handler watching its client).
  static int current_fd() noexcept;

  void close_all();  // ends every open connection now; no new one is served
  int open() const;  // connections being served
  const ConnectionLimits& limits() const { return limits_; }

 private:
  bool admit(int fd);
  void release(int fd);
  void refuse(int fd);

  const ConnectionLimits limits_;
  const std::string busy_response_;
  mutable std::mutex mu_;
  std::set<int> open_;  // a socket is closed only after it leaves this set
  bool closing_ = false;
};

}  // namespace tpinfer
