// Rank-prefixed logging to stderr: `[tpinfer r0] loading shard ...`. Dependency-free so that
// every module can use it; the rank and level are process-wide settings made once by main.
//
//   TPI_LOG_INFO << "loading " << path;      // stream form; arguments are not evaluated when
//   log_info("loaded " + std::to_string(n)); // the level is disabled (stream form only)
#pragma once

#include <ostream>
#include <sstream>
#include <string>

namespace tpinfer {

// Ordered from least to most verbose: a message is printed when its level <= the current level.
enum class LogLevel { error, warn, info, debug };

const char* log_level_name(LogLevel level);  // "error" | "warn" | "info" | "debug"

// -1 (the default, before MPI is up) prints `[tpinfer]` without a rank.
void set_log_rank(int rank);
int log_rank();
void set_log_level(LogLevel level);  // default: info
LogLevel log_level();
inline bool log_enabled(LogLevel level) {
  return static_cast<int>(level) <= static_cast<int>(log_level());
}

// Writes one whole line (prefix + message + '\n') with a single write, so lines from several
// threads or ranks sharing a terminal do not interleave mid-line.
void log_message(LogLevel level, const std::string& message);

inline void log_error(const std::string& message) {
  log_message(LogLevel::error, message);
}
inline void log_warn(const std::string& message) {
  log_message(LogLevel::warn, message);
}
inline void log_info(const std::string& message) {
  log_message(LogLevel::info, message);
}
inline void log_debug(const std::string& message) {
  log_message(LogLevel::debug, message);
}

namespace detail {
// Collects one message and emits it when the statement ends.
class LogLine {
 public:
  explicit LogLine(LogLevel level) : level_(level) {}
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  ~LogLine() { log_message(level_, os_.str()); }
  template <typename T>
  LogLine& operator<<(const T& v) {
    os_ << v;
    return *this;
  }
  LogLine& operator<<(std::ostream& (*manip)(std::ostream&)) {  // std::endl, std::hex
    os_ << manip;
    return *this;
  }

 private:
  LogLevel level_;
  std::ostringstream os_;
};
}  // namespace detail

}  // namespace tpinfer

// `if/else` rather than a bare `if` so that `if (x) TPI_LOG_INFO << ...; else ...` binds as
// written.
#define TPI_LOG(level)                  \
  if (!::tpinfer::log_enabled(level)) { \
  } else                                \
    ::tpinfer::detail::LogLine(level)

#define TPI_LOG_ERROR TPI_LOG(::tpinfer::LogLevel::error)
#define TPI_LOG_WARN TPI_LOG(::tpinfer::LogLevel::warn)
#define TPI_LOG_INFO TPI_LOG(::tpinfer::LogLevel::info)
#define TPI_LOG_DEBUG TPI_LOG(::tpinfer::LogLevel::debug)
