// Process-wide log settings and the single place that writes log lines to stderr.
#include "core/log.h"

#include <atomic>
#include <cstdio>

namespace tpinfer {

namespace {
std::atomic<int> g_rank{-1};
std::atomic<int> g_level{static_cast<int>(LogLevel::info)};
}  // namespace

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::error:
      return "error";
    case LogLevel::warn:
      return "warn";
    case LogLevel::info:
      return "info";
    case LogLevel::debug:
      return "debug";
  }
  return "?";
}

void set_log_rank(int rank) {
  g_rank.store(rank, std::memory_order_relaxed);
}
int log_rank() {
  return g_rank.load(std::memory_order_relaxed);
}
void set_log_level(LogLevel level) {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
}
LogLevel log_level() {
  return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed));
}

void log_message(LogLevel level, const std::string& message) {
  if (!log_enabled(level)) return;
  std::string line = "[tpinfer";
  const int rank = log_rank();
  if (rank >= 0) line += " r" + std::to_string(rank);
  line += "] ";
  switch (level) {
    case LogLevel::error:
      line += "error: ";
      break;
    case LogLevel::warn:
      line += "warning: ";
      break;
    case LogLevel::info:
      break;
    case LogLevel::debug:
      line += "debug: ";
      break;
  }
  line += message;
  if (line.empty() || line.back() != '\n') line += '\n';
  // One fwrite per line: stdio locks the stream for the call, and stderr is unbuffered, so the
  // line reaches the terminal in one piece.
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace tpinfer
