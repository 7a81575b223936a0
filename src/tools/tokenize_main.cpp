// tpinfer-tokenize: the engine's tokenizer on the command line.
//
//   tpinfer-tokenize --tokenizer DIR [--no-add-special]        JSON strings in, id arrays out
//   tpinfer-tokenize --tokenizer DIR --decode [--skip-special] id arrays in, JSON strings out
//   tpinfer-tokenize --tokenizer DIR --bench FILE [--repeat N] encoding speed on FILE
//
// Input is JSON Lines on stdin, one output line per input line. A line that is not the expected
// JSON, or an id out of range, is an error naming the line (exit status 1); usage errors exit 2.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace {

const char* const kUsage =
    "usage: tpinfer-tokenize --tokenizer DIR [--no-add-special]\n"
    "       tpinfer-tokenize --tokenizer DIR --decode [--skip-special]\n"
    "       tpinfer-tokenize --tokenizer DIR --bench FILE [--repeat N]\n"
    "Reads JSON Lines on stdin: strings to encode (ids are printed as JSON arrays, special tokens\n"
    "added as Hugging Face tokenizer.encode(text) does unless --no-add-special), or with --decode\n"
    "arrays of ids (printed as JSON strings; special tokens kept unless --skip-special).\n"
    "--bench times encoding of FILE line by line and as one text, and prints MB/s.\n";

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "tpinfer-tokenize: %s\n%s", msg.c_str(), kUsage);
  std::exit(2);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Best of `repeat` runs of fn, in wall-clock and in thread CPU seconds (the CPU time is what
// counts on a shared machine, where the wall clock also measures waiting for a core).
template <typename F>
std::pair<double, double> best_of(int repeat, F&& fn) {
  double wall = 1e30, cpu = 1e30;
  for (int r = 0; r < repeat; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = thread_cpu_seconds();
    fn();
    cpu = std::min(cpu, thread_cpu_seconds() - c0);
    wall = std::min(wall, seconds_since(t0));
  }
  return {wall, cpu};
}

int run_bench(const tpinfer::Tokenizer& tok, const std::string& file, int repeat, double load_s,
              bool add_special) {
  std::ifstream f(file, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "tpinfer-tokenize: cannot open %s\n", file.c_str());
    return 1;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  std::vector<std::string_view> lines;
  for (size_t b = 0; b <= text.size();) {  // the same lines as Python's text.split("\n")
    size_t e = text.find('\n', b);
    if (e == std::string::npos) e = text.size();
    lines.emplace_back(text.data() + b, e - b);
    b = e + 1;
  }
  const double mb = static_cast<double>(text.size()) / 1e6;
  std::printf("file: %s (%.2f MB, %zu lines)\nload: %.3f s\n", file.c_str(), mb, lines.size(),
              load_s);
  for (int pass = 0; pass < 2; ++pass) {  // pass 0 starts with an empty word cache
    size_t ntok = 0, ntok_doc = 0;
    const auto [lw, lc] = best_of(pass == 0 ? 1 : repeat, [&] {
      ntok = 0;
      for (auto l : lines) ntok += tok.encode(l, add_special).size();
    });
    const auto [dw, dc] =
        best_of(pass == 0 ? 1 : repeat, [&] { ntok_doc = tok.encode(text, add_special).size(); });
    std::printf(
        "%s: per-line %.2f MB/s wall, %.2f MB/s cpu (%zu tokens); whole text %.2f MB/s "
        "wall, %.2f MB/s cpu (%zu tokens)\n",
        pass == 0 ? "cold" : "warm", mb / lw, mb / lc, ntok, mb / dw, mb / dc, ntok_doc);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir, bench_file;
  bool add_special = true, decode = false, skip_special = false;
  int repeat = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) usage_error(std::string(name) + " needs a value");
      return argv[++i];
    };
    if (a == "--tokenizer") {
      dir = value("--tokenizer");
    } else if (a == "--no-add-special") {
      add_special = false;
    } else if (a == "--decode") {
      decode = true;
    } else if (a == "--skip-special") {
      skip_special = true;
    } else if (a == "--bench") {
      bench_file = value("--bench");
    } else if (a == "--repeat") {
      repeat = std::atoi(value("--repeat").c_str());
      if (repeat < 1) usage_error("--repeat must be a positive integer");
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      usage_error("unknown argument '" + a + "'");
    }
  }
  if (dir.empty()) usage_error("--tokenizer DIR is required");

  std::unique_ptr<tpinfer::Tokenizer> tok;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    tok = tpinfer::Tokenizer::from_dir(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tpinfer-tokenize: %s\n", e.what());
    return 1;
  }
  const double load_s = seconds_since(t0);
  if (!bench_file.empty()) return run_bench(*tok, bench_file, repeat, load_s, add_special);

  std::ios::sync_with_stdio(false);
  std::string line, out;
  size_t lineno = 0;
  while (std::getline(std::cin, line)) {
    ++lineno;
    try {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::parse_error& e) {
        TPI_FAIL("not valid JSON (" << e.what() << ")");
      }
      out.clear();
      if (!decode) {
        TPI_CHECK(j.is_string(), "expected a JSON string, found " << j.type_name());
        const std::vector<int32_t> ids = tok->encode(j.get_ref<const std::string&>(), add_special);
        out += '[';
        for (size_t k = 0; k < ids.size(); ++k) {
          if (k) out += ',';
          out += std::to_string(ids[k]);
        }
        out += "]\n";
      } else {
        TPI_CHECK(j.is_array(), "expected a JSON array of ids, found " << j.type_name());
        std::vector<int32_t> ids;
        ids.reserve(j.size());
        for (size_t k = 0; k < j.size(); ++k) {
          const auto& v = j[k];
          TPI_CHECK(v.is_number_integer(),
                    "element " << k << " is " << v.dump() << ", expected an integer id");
          const auto id = v.get<int64_t>();
          TPI_CHECK(id >= 0 && id < tok->vocab_size(), "id " << id << " (element " << k
                                                             << ") is out of range [0, "
                                                             << tok->vocab_size() << ")");
          ids.push_back(static_cast<int32_t>(id));
        }
        out += nlohmann::json(tok->decode(ids, skip_special)).dump();
        out += '\n';
      }
      std::fwrite(out.data(), 1, out.size(), stdout);
    } catch (const std::exception& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "tpinfer-tokenize: stdin line %zu: %s\n", lineno, e.what());
      return 1;
    }
  }
  return 0;
}
