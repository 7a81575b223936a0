// Request validation (runtime/request_check) and the file-argument checks (config/path_checks):
// every refusal names the field or key, what was expected and what was found.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/path_checks.h"
#include "core/error.h"
#include "runtime/scheduler/request_check.h"

using namespace tpinfer;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

TEST_CASE("numeric request fields are bounded, each refusal names its field", "[request]") {
  CHECK_NOTHROW(check_request_params(0, SamplingParams{}));
  CHECK_NOTHROW(check_request_params(kMaxNewTokensCap, SamplingParams{0.7f, 40, 0.9f, 1}));
  CHECK_THROWS_WITH(check_request_params(2147483647, SamplingParams{}),
                    "max_new_tokens must be in [0, 16777216], found 2147483647");
  CHECK_THROWS_WITH(check_request_params(-1, SamplingParams{}), Contains("max_new_tokens"));
  CHECK_THROWS_WITH(check_request_params(4, SamplingParams{INFINITY, 0, 1.0f, 0}),
                    Contains("temperature must be a finite number >= 0, found inf"));
  CHECK_THROWS_WITH(check_request_params(4, SamplingParams{NAN, 0, 1.0f, 0}),
                    Contains("temperature"));
  CHECK_THROWS_WITH(check_request_params(4, SamplingParams{1.0f, -2, 1.0f, 0}),
                    Contains("top_k must be >= 0, found -2"));
  CHECK_THROWS_WITH(check_request_params(4, SamplingParams{1.0f, 0, 0.0f, 0}),
                    Contains("top_p must be in (0, 1], found 0"));
}

TEST_CASE("request length: max_seq, then the model's positions unless allowed", "[request]") {
  RequestLimits l;
  l.max_position_embeddings = 512;
  CHECK(check_request_tokens(5, 507, l).empty());
  // Before: a warning, then minutes of quadratic prefill (or an overflowed int with INT_MAX).
  CHECK_THROWS_WITH(check_request_tokens(308000, 256, l),
                    Contains("prompt (308000 tokens) + max_new_tokens (256) = 308256 exceeds the "
                             "model's max_position_embeddings=512"));
  CHECK_THROWS_WITH(check_request_tokens(5, 2147483647, l), Contains("= 2147483652 exceeds"));
  CHECK_THROWS_WITH(check_request_tokens(0, 4, l), Contains("the prompt is empty"));
  l.max_seq = 64;
  CHECK_THROWS_WITH(check_request_tokens(5, 60, l), Contains("= 65 exceeds max_seq=64"));
  l.max_seq = 0;
  l.allow_long_context = true;
  CHECK_THAT(check_request_tokens(5, 600, l),
             Contains("= 605 exceeds the model's max_position_embeddings=512 "
                      "(allow_long_context: true"));
  CHECK_THROWS_WITH(check_request_bytes(5000000, "key 'prompt': the prompt", l),
                    "key 'prompt': the prompt is 5000000 bytes, larger than "
                    "max_request_bytes=4194304 (refused before tokenizing); shorten it or raise "
                    "max_request_bytes");
  CHECK_NOTHROW(check_request_bytes(4194304, "x", l));
}

TEST_CASE("the KV pool: a request that cannot fit even alone is refused with the numbers",
          "[request][kv]") {
  KvLimits kv;  // block_size 0: the pool is not known yet, nothing to check
  CHECK_NOTHROW(check_request_kv(100000, 100000, 50, kv));
  kv.block_size = 16;
  kv.n_blocks = 4;
  kv.max_running = 2;
  // 40 + 24 = 64 positions = 4 blocks: fits exactly; one more token does not.
  CHECK(kv_blocks_needed(40, 24, 1, 16) == 4);
  CHECK_NOTHROW(check_request_kv(40, 24, 1, kv));
  CHECK_THROWS_WITH(check_request_kv(40, 30, 1, kv),
                    "prompt (40 tokens) + max_new_tokens (30) needs 5 KV cache blocks of 16 "
                    "tokens, but the pool holds 4 (64 tokens); lower max_new_tokens, or raise "
                    "kv_cache_blocks (or mem_frac on a GPU)");
  // n choices share the prompt's full blocks: 32 + 8 tokens is 2 shared + 1 each.
  CHECK(kv_blocks_needed(32, 8, 2, 16) == 4);
  CHECK(kv_blocks_needed(33, 8, 2, 16) == 2 + 2 * 1);
  CHECK(kv_blocks_needed(20, 20, 3, 16) == 1 + 3 * 2);
  CHECK_NOTHROW(check_request_kv(32, 8, 2, kv));
  CHECK_THROWS_WITH(check_request_kv(20, 20, 2, kv),
                    Contains("for n=2 choices needs 5 KV cache blocks"));
  CHECK_THROWS_WITH(check_request_kv(4, 4, 3, kv), Contains("n (3 choices) exceeds batch_size=2"));
  // check_request_tokens applies the pool rule (n = 1) once the limits carry the pool.
  RequestLimits l;
  l.kv = kv;
  CHECK_THROWS_WITH(check_request_tokens(40, 30, l), Contains("needs 5 KV cache blocks"));
  CHECK(check_request_tokens(40, 24, l).empty());
}

TEST_CASE("file arguments: the key, the path, what was expected", "[request][paths]") {
  const std::string dir =
      fs::temp_directory_path().string() + "/tpinfer_paths_" + std::to_string(::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir + "/sub");
  const std::string in = dir + "/in.jsonl";
  std::ofstream(in) << "{}\n";
  fs::create_symlink(in, dir + "/link.jsonl");

  RunConfig cfg;
  cfg.model = "m";
  cfg.prompt_file = dir;
  CHECK_THROWS_WITH(check_file_keys(cfg), "key 'prompt_file': '" + dir +
                                              "' is a directory; expected a readable text file "
                                              "with the prompt");
  CHECK_THROWS_WITH(load_prompt(cfg), Contains("key 'prompt_file': '" + dir + "' is a directory"));
  cfg.prompt_file = dir + "/none.txt";
  CHECK_THROWS_WITH(check_file_keys(cfg),
                    Contains("key 'prompt_file': '" + dir + "/none.txt' does not exist"));
  cfg.prompt_file.clear();
  cfg.input = in;
  cfg.output = dir;
  CHECK_THROWS_WITH(check_file_keys(cfg), "key 'output': '" + dir +
                                              "' is a directory; expected a JSON Lines file to "
                                              "append results to");
  for (const std::string& same : {in, dir + "/link.jsonl", dir + "/sub/../in.jsonl"}) {
    cfg.output = same;
    CHECK_THROWS_WITH(check_file_keys(cfg), Contains("keys 'input' and 'output' name the same"));
  }
  cfg.output = dir + "/out.jsonl";  // new file in an existing directory
  CHECK_NOTHROW(check_file_keys(cfg));
  cfg.metrics_json = dir + "/nodir/m.json";
  CHECK_THROWS_WITH(check_file_keys(cfg),
                    Contains("key 'metrics_json': the directory of '" + dir + "/nodir/m.json'"));
  cfg.metrics_json = dir + "/sub";
  CHECK_THROWS_WITH(check_file_keys(cfg),
                    Contains("key 'metrics_json': '" + dir + "/sub' is a directory"));
  cfg.metrics_json.clear();
  cfg.input = dir + "/sub";
  CHECK_THROWS_WITH(check_file_keys(cfg),
                    Contains("key 'input': '" + dir + "/sub' is a directory"));
  fs::remove_all(dir);
}
