// The rank-prefixed logger: line format, level filtering, and that disabled stream arguments are
// not evaluated.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/log.h"

namespace {

// Runs f with file descriptor 2 redirected to a temporary file; returns what was written.
template <typename F>
std::string capture_stderr(F f) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("tpinfer_test_log_" + std::to_string(::getpid()) + ".txt"))
                               .string();
  std::fflush(stderr);
  const int saved = ::dup(2);
  FILE* file = std::fopen(path.c_str(), "w");
  REQUIRE(file != nullptr);
  ::dup2(::fileno(file), 2);
  f();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::fclose(file);
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  std::filesystem::remove(path);
  return text.str();
}

// Restores the process-wide settings a test changes.
struct LogSettingsGuard {
  int rank = tpinfer::log_rank();
  tpinfer::LogLevel level = tpinfer::log_level();
  ~LogSettingsGuard() {
    tpinfer::set_log_rank(rank);
    tpinfer::set_log_level(level);
  }
};

}  // namespace

TEST_CASE("log lines carry the rank prefix", "[log]") {
  LogSettingsGuard guard;
  tpinfer::set_log_level(tpinfer::LogLevel::info);
  tpinfer::set_log_rank(0);
  CHECK(capture_stderr([] { TPI_LOG_INFO << "loading shard " << 3; }) ==
        "[tpinfer r0] loading shard 3\n");
  tpinfer::set_log_rank(2);
  CHECK(capture_stderr([] { tpinfer::log_warn("slow"); }) == "[tpinfer r2] warning: slow\n");
  CHECK(capture_stderr([] { TPI_LOG_ERROR << "bad"; }) == "[tpinfer r2] error: bad\n");
  tpinfer::set_log_rank(-1);
  CHECK(capture_stderr([] { tpinfer::log_info("before MPI"); }) == "[tpinfer] before MPI\n");
}

TEST_CASE("log level filters messages", "[log]") {
  LogSettingsGuard guard;
  tpinfer::set_log_rank(1);
  tpinfer::set_log_level(tpinfer::LogLevel::warn);
  CHECK(tpinfer::log_enabled(tpinfer::LogLevel::error));
  CHECK(tpinfer::log_enabled(tpinfer::LogLevel::warn));
  CHECK_FALSE(tpinfer::log_enabled(tpinfer::LogLevel::info));
  int evaluated = 0;
  auto count = [&] { return ++evaluated; };
  const std::string out = capture_stderr([&] {
    TPI_LOG_INFO << "hidden " << count();
    TPI_LOG_DEBUG << "hidden " << count();
    tpinfer::log_info("hidden");
    TPI_LOG_WARN << "shown " << count();
  });
  CHECK(out == "[tpinfer r1] warning: shown 1\n");
  CHECK(evaluated == 1);

  tpinfer::set_log_level(tpinfer::LogLevel::debug);
  CHECK(capture_stderr([] { TPI_LOG_DEBUG << "x"; }) == "[tpinfer r1] debug: x\n");
  CHECK(std::string(tpinfer::log_level_name(tpinfer::LogLevel::debug)) == "debug");
}

TEST_CASE("the stream macro binds like a statement under if/else", "[log]") {
  LogSettingsGuard guard;
  tpinfer::set_log_rank(0);
  tpinfer::set_log_level(tpinfer::LogLevel::info);
  bool took_else = false;
  const std::string out = capture_stderr([&] {
    if (false)
      TPI_LOG_INFO << "never";
    else
      took_else = true;
  });
  CHECK(took_else);
  CHECK(out.empty());
}
