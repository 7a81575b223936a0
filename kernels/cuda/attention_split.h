// How flash-decoding splits one token's key range [lo, pos] over the blocks of its grid row.
// Shared by the split kernel, the combine kernel and the host-side tests, so it is plain
// __host__ __device__ arithmetic with no CUDA runtime dependency beyond the qualifiers.
#pragma once

#include <cuda_runtime_api.h>

namespace tpinfer::gpu {

// A split handles at least this many keys, so short contexts use few splits.
constexpr int kDecodeMinKeysPerSplit = 64;
constexpr int kDecodeMaxSplits = 32;

struct KeySplit {
  int n_active;  // splits that hold keys for this token (1..n_splits); blocks past it exit
  int begin;     // first key of this split
  int end;       // one past the last key (begin == end: empty)
};

// The first key a token at `pos` attends to (window <= 0: no sliding window).
__host__ __device__ inline int attention_first_key(int pos, int window) {
  if (window <= 0) return 0;
  const int lo = pos - window + 1;
  return lo > 0 ? lo : 0;
}

// Splits [lo, pos] into n_active = min(n_splits, ceil(len / kDecodeMinKeysPerSplit)) ranges of
// ceil(len / n_active) keys; together they cover [lo, pos] exactly once.
__host__ __device__ inline KeySplit decode_key_split(int lo, int pos, int split, int n_splits) {
  const int len = pos - lo + 1;
  if (len <= 0) return KeySplit{1, 0, 0};
  int n_active = (len + kDecodeMinKeysPerSplit - 1) / kDecodeMinKeysPerSplit;
  if (n_active > n_splits) n_active = n_splits;
  if (n_active < 1) n_active = 1;
  const int per = (len + n_active - 1) / n_active;
  const long long begin_ll = static_cast<long long>(lo) + static_cast<long long>(split) * per;
  const int end_cap = pos + 1;
  const int begin = begin_ll < end_cap ? static_cast<int>(begin_ll) : end_cap;
  const int end = begin + per < end_cap ? begin + per : end_cap;
  return KeySplit{n_active, begin, end};
}

}  // namespace tpinfer::gpu
