// sha256_file / sha256_hex against the FIPS 180-2 vectors, across the loader's 4 MiB chunks.
#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "core/error.h"
#include "io/sha256.h"
#include "io_test_util.h"

using namespace tpinfer;

TEST_CASE("sha256 of known vectors", "[sha256]") {
  CHECK(sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // One million 'a' (FIPS 180-2 appendix B.3), written so the file spans a chunk boundary too.
  const std::string dir = io_test::scratch_dir("sha256");
  const std::string a = dir + "/million_a";
  std::ofstream(a, std::ios::binary) << std::string(1000000, 'a');
  CHECK(sha256_file(a) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  const std::string big = dir + "/big";
  const std::string block(size_t{5} << 20, 'x');  // > one 4 MiB chunk
  std::ofstream(big, std::ios::binary) << block;
  CHECK(sha256_file(big) == sha256_hex(block.data(), block.size()));
  CHECK_THROWS_WITH(sha256_file(dir + "/missing"),
                    Catch::Contains(dir + "/missing: cannot open to verify its sha256"));
}
