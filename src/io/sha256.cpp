// SHA-256 over OpenSSL's EVP interface (see sha256.h).
#include "io/sha256.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "core/error.h"

namespace tpinfer {
namespace {

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

MdCtx new_ctx() {
  MdCtx ctx(EVP_MD_CTX_new());
  TPI_CHECK(ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1,
            "sha256: cannot initialise OpenSSL's digest");
  return ctx;
}

std::string finish(EVP_MD_CTX* ctx) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  TPI_CHECK(EVP_DigestFinal_ex(ctx, md, &n) == 1, "sha256: OpenSSL's digest failed");
  static const char* const kHex = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (unsigned int i = 0; i < n; ++i) {
    out[2 * i] = kHex[md[i] >> 4];
    out[2 * i + 1] = kHex[md[i] & 15];
  }
  return out;
}

}  // namespace

std::string sha256_hex(const void* data, size_t bytes) {
  MdCtx ctx = new_ctx();
  TPI_CHECK(EVP_DigestUpdate(ctx.get(), data, bytes) == 1, "sha256: OpenSSL's digest failed");
  return finish(ctx.get());
}

std::string sha256_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TPI_CHECK(fd >= 0, path << ": cannot open to verify its sha256: " << std::strerror(errno));
  // Sequential read-ahead; 4 MiB chunks keep the buffer small next to any shard.
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  MdCtx ctx = new_ctx();
  std::vector<unsigned char> buf(size_t{4} << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      TPI_FAIL(path << ": read error while verifying its sha256: " << std::strerror(err));
    }
    if (n == 0) break;
    TPI_CHECK(EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n)) == 1,
              "sha256: OpenSSL's digest failed");
  }
  ::close(fd);
  return finish(ctx.get());
}

}  // namespace tpinfer
