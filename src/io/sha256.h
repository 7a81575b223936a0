// SHA-256 of a file, streamed in fixed-size chunks (OpenSSL's libcrypto, which uses the CPU's
// SHA instructions where there are any): the loader compares each shard with manifest.json.
#pragma once

#include <string>

namespace tpinfer {

// Lower-case hex digest of the whole file. Throws tpinfer::Error naming the path when it cannot
// be read.
std::string sha256_file(const std::string& path);

// Lower-case hex digest of a byte string.
std::string sha256_hex(const void* data, size_t bytes);

}  // namespace tpinfer
