// Each connection is served by one worker thread with blocking polls that carry their own
// deadlines, so nothing spins while a client is idle (httplib's own keep-alive loop polls every
// 10 ms) and no watcher thread is needed. A socket is closed only after it has left the set of
// open ones, under the same lock close_all() shuts them down with: close_all() never touches a
// descriptor number that a new connection has taken meanwhile.
#include "runtime/frontend/server/connections.h"

#include <netdb.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;

thread_local int t_fd = -1;

Clock::time_point after(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

int ms_until(Clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, INT_MAX));
}

// Polls one socket until `deadline`: > 0 ready, 0 timed out, < 0 an error. EINTR restarts it.
int poll_until(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, ms_until(deadline));
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

void numeric_name(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  auto* sa = reinterpret_cast<sockaddr*>(&a);
  if ((peer ? getpeername(fd, sa, &len) : getsockname(fd, sa, &len)) != 0) return;
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
                  NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    ip = host;
    port = std::atoi(serv);
  }
}

// httplib's Stream over the socket: reads end at the request's deadline (one for the whole
// request, whatever the number of reads), writes wait up to the write timeout each. The read
// buffer lives as long as the connection, so pipelined requests are not lost between requests.
class ConnectionStream : public httplib::Stream {
 public:
  ConnectionStream(int fd, double write_timeout_s, int64_t max_read)
      : fd_(fd), write_timeout_s_(write_timeout_s), max_read_(max_read) {}

  // A new request: its reads end at `t`, and after max_read bytes.
  void begin_request(Clock::time_point t) {
    deadline_ = t;
    timed_out_ = false;
    read_ = 0;
  }
  // The request ran out of time or of bytes: the connection cannot go on.
  bool timed_out() const { return timed_out_; }
  bool has_buffered() const { return off_ < len_; }

  bool is_readable() const override {
    if (has_buffered()) return true;
    const int r = poll_until(fd_, POLLIN, deadline_);
    if (r == 0) timed_out_ = true;
    return r > 0;
  }
  bool is_writable() const override {
    if (poll_until(fd_, POLLOUT, after(write_timeout_s_)) <= 0) return false;
    // Writable but closed by the peer (a stream's client went away): not writable.
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return true;
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
  }
  ssize_t read(char* ptr, size_t size) override {
    if (read_ >= max_read_) {
      timed_out_ = true;
      return -1;
    }
    if (!has_buffered()) {
      if (!is_readable()) return -1;
      ssize_t n;
      do {
        n = ::recv(fd_, buf_, sizeof(buf_), 0);
      } while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      off_ = 0;
      len_ = static_cast<size_t>(n);
    }
    const size_t k = std::min(size, len_ - off_);
    std::memcpy(ptr, buf_ + off_, k);
    off_ += k;
    read_ += static_cast<int64_t>(k);
    return static_cast<ssize_t>(k);
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (poll_until(fd_, POLLOUT, after(write_timeout_s_)) <= 0) return -1;
    ssize_t n;
    do {
      n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    numeric_name(fd_, true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    numeric_name(fd_, false, ip, port);
  }
  socket_t socket() const override { return fd_; }

 private:
  const int fd_;
  const double write_timeout_s_;
  const int64_t max_read_;
  int64_t read_ = 0;
  Clock::time_point deadline_;
  mutable bool timed_out_ = false;
  char buf_[4096];
  size_t off_ = 0, len_ = 0;
};

}  // namespace

long raise_fd_limit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
  // An unlimited hard limit cannot be the soft one (the kernel caps it at fs.nr_open).
  const rlim_t want =
      r.rlim_max == RLIM_INFINITY ? std::max<rlim_t>(r.rlim_cur, 1 << 20) : r.rlim_max;
  if (r.rlim_cur < want) {
    rlimit raised = r;
    raised.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) r = raised;
  }
  return r.rlim_cur == RLIM_INFINITY ? LONG_MAX : static_cast<long>(r.rlim_cur);
}

Connections::Connections(ConnectionLimits limits, std::string busy_body)
    : limits_(limits),
      busy_response_(
          "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
          "Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
          std::to_string(busy_body.size()) + "\r\n\r\n" + busy_body) {}

int Connections::current_fd() noexcept {
  return t_fd;
}

bool Connections::admit(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closing_ || static_cast<int>(open_.size()) >= limits_.max_connections) return false;
  open_.insert(fd);
  return true;
}

void Connections::release(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  open_.erase(fd);
}

void Connections::refuse(int fd) {
  [[maybe_unused]] const ssize_t w =
      ::send(fd, busy_response_.data(), busy_response_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(fd, SHUT_WR);
  // Read what the client sent (for up to a second): closing with unread bytes would reset the
  // connection, and the client could lose the answer before reading it.
  const Clock::time_point until = after(1.0);
  char buf[4096];
  while (poll_until(fd, POLLIN, until) > 0) {
    if (::recv(fd, buf, sizeof(buf), 0) <= 0) break;
  }
}

void Connections::serve(int fd, const ProcessRequest& process) {
  if (admit(fd)) {
    t_fd = fd;
    ConnectionStream strm(fd, limits_.write_timeout_s, limits_.max_request_read_bytes);
    // A new connection's first request must be complete this long after the accept; a kept-alive
    // one waits up to the idle timeout for the next request's first byte, which starts its own.
    Clock::time_point wait_until = after(limits_.request_timeout_s);
    bool first = true;
    for (;;) {
      if (!strm.has_buffered() && poll_until(fd, POLLIN, wait_until) <= 0) break;
      strm.begin_request(first ? wait_until : after(limits_.request_timeout_s));
      first = false;
      bool closed = false;
      bool closing;
      {
        std::lock_guard<std::mutex> lock(mu_);
        closing = closing_;
      }
      const bool ok = process(strm, closing, closed);
      if (!ok || closed || closing || strm.timed_out()) break;
      wait_until = after(limits_.keep_alive_timeout_s);
    }
    t_fd = -1;
    release(fd);
  } else {
    refuse(fd);
  }
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
}

void Connections::close_all() {
  std::lock_guard<std::mutex> lock(mu_);
  closing_ = true;
  for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
}

int Connections::open() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(open_.size());
}

}  // namespace tpinfer
