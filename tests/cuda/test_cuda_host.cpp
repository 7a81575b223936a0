// Host-side logic of the CUDA backend that needs no GPU, so it runs on every CUDA build: the
// local-rank -> device rule of pick_cuda_device, the flash-decoding key splits and the GEMV's
// row split.
#include <algorithm>
#include <catch2/catch.hpp>
#include <vector>

#include "backend/cuda/cuda_device.h"
#include "cuda/attention_split.h"
#include "cuda/kernels.h"

namespace tpinfer {
namespace {

DeviceBindingEnv env_with(int n_visible, bool slurm = false) {
  DeviceBindingEnv e;
  e.n_visible = n_visible;
  e.visible_devices = n_visible == 1 ? "0" : "<unset>";
  e.slurm_binds_gpus = slurm;
  e.hostname = "node7";
  return e;
}

TEST_CASE("pick_cuda_device binds local rank r to device r when there are enough GPUs",
          "[cuda][host]") {
  for (int r = 0; r < 4; ++r) CHECK(choose_cuda_device(r, 4, false, env_with(4)) == r);
  CHECK(choose_cuda_device(1, 2, false, env_with(8)) == 1);
}

TEST_CASE("pick_cuda_device refuses more local ranks than GPUs unless sharing is asked for",
          "[cuda][host]") {
  REQUIRE_THROWS_WITH(choose_cuda_device(3, 4, false, env_with(1)),
                      Catch::Contains("4 ranks on node node7 but only 1 visible GPU") &&
                          Catch::Contains("CUDA_VISIBLE_DEVICES=0") &&
                          Catch::Contains("allow_gpu_sharing: true"));
  for (int r = 0; r < 4; ++r) CHECK(choose_cuda_device(r, 4, true, env_with(1)) == 0);
  CHECK(choose_cuda_device(3, 4, true, env_with(2)) == 1);
}

TEST_CASE("pick_cuda_device follows SLURM's per-task GPU binding", "[cuda][host]") {
  // --gpus-per-task=1: each of 4 tasks sees its own single GPU as device 0.
  for (int r = 0; r < 4; ++r) CHECK(choose_cuda_device(r, 4, false, env_with(1, true)) == 0);
  // --gpu-bind=closest, 8 tasks over two sockets of 4 GPUs: ranks 4..7 see the second four.
  CHECK(choose_cuda_device(5, 8, false, env_with(4, true)) == 1);
}

TEST_CASE("pick_cuda_device with no GPU says why", "[cuda][host]") {
  DeviceBindingEnv e = env_with(0);
  e.unavailable_reason = "cudaGetDeviceCount: CUDA driver version is insufficient";
  REQUIRE_THROWS_WITH(choose_cuda_device(0, 1, true, e),
                      Catch::Contains("no CUDA device") && Catch::Contains("insufficient"));
}

TEST_CASE("flash-decoding splits cover [lo, pos] exactly once", "[cuda][host]") {
  using gpu::decode_key_split;
  for (int n_splits : {1, 2, 3, 7, 32}) {
    for (int pos : {0, 1, 63, 64, 65, 127, 128, 1000, 2047, 4095, 40959}) {
      for (int window : {0, 1, 48, 4096}) {
        const int lo = gpu::attention_first_key(pos, window);
        CAPTURE(n_splits, pos, window, lo);
        const int n_active = decode_key_split(lo, pos, 0, n_splits).n_active;
        REQUIRE(n_active >= 1);
        REQUIRE(n_active <= n_splits);
        int next = lo;
        for (int s = 0; s < n_active; ++s) {
          const gpu::KeySplit k = decode_key_split(lo, pos, s, n_splits);
          REQUIRE(k.n_active == n_active);
          REQUIRE(k.begin == next);
          REQUIRE(k.end >= k.begin);
          next = k.end;
          if (n_active > 1) REQUIRE(k.end - k.begin >= 1);
        }
        REQUIRE(next == pos + 1);
      }
    }
  }
  // The window: a token at 5000 with window 4096 sees 905..5000.
  CHECK(gpu::attention_first_key(5000, 4096) == 905);
  CHECK(gpu::attention_first_key(10, 4096) == 0);
}

TEST_CASE("flash-decoding uses more splits for small batches, never more than 32", "[cuda][host]") {
  const int sms = 132;
  CHECK(gpu::attention_decode_splits(1, 32, 8, 40960, sms) == 32);
  CHECK(gpu::attention_decode_splits(64, 32, 8, 40960, sms) == 1);
  CHECK(gpu::attention_decode_splits(1, 32, 8, 100, sms) == 2);  // 100 keys: 2 useful splits
  CHECK(gpu::attention_decode_workspace_bytes(4, 32, 128, 1) == 0);
  CHECK(gpu::attention_decode_workspace_bytes(1, 32, 128, 32) == 32u * 32 * (128 * 4 + 8));
}

}  // namespace
}  // namespace tpinfer

namespace tpinfer {

TEST_CASE("gemv_split shares few rows among warps, never past one group of k per warp",
          "[cuda][host]") {
  const int h200 = 132;
  CHECK(gpu::gemv_split(1024, 2560, h200) == 8);    // Qwen3-4B k/v_proj
  CHECK(gpu::gemv_split(2560, 4096, h200) == 2);    // o_proj
  CHECK(gpu::gemv_split(9728, 2560, h200) == 1);    // gate/up
  CHECK(gpu::gemv_split(151936, 2560, h200) == 1);  // lm_head
  CHECK(gpu::gemv_split(256, 512, h200) == 2);      // the shapes test_cuda_ops checks
  CHECK(gpu::gemv_split(301, 1032, h200) == 4);
  CHECK(gpu::gemv_split(40, 2560, h200) == 8);
  CHECK(gpu::gemv_split(1000, 64, h200) == 1);
  CHECK(gpu::gemv_split(96, 136, h200) == 1);
  // The kernel's walk (warp `part` of `split` takes chunks base + u * 32 * split, base from
  // part * 32 + lane in steps of 4 * 32 * split) covers every 16-byte chunk of a row once.
  for (int k8 : {8, 17, 64, 129, 320, 1216}) {
    for (int split : {1, 2, 4, 8}) {
      std::vector<int> seen(k8, 0);
      for (int part = 0; part < split; ++part) {
        for (int lane = 0; lane < 32; ++lane) {
          for (int base = part * 32 + lane; base < k8; base += 32 * split * 4) {
            for (int u = 0; u < 4; ++u) {
              const int i = base + u * 32 * split;
              if (i < k8) ++seen[i];
            }
          }
        }
      }
      CAPTURE(k8, split);
      CHECK(std::count(seen.begin(), seen.end(), 1) == k8);
    }
  }
}

}  // namespace tpinfer
