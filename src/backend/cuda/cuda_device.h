// Which GPU a rank binds. No CUDA types: the engine calls this (through code built with CUDA)
// before it creates the backend, and the decision itself is a pure function so that it can be
// tested on machines without a GPU.
#pragma once

#include <string>

namespace tpinfer {

// What the decision depends on besides the ranks.
struct DeviceBindingEnv {
  int n_visible = 0;              // devices the CUDA runtime shows this process
  std::string visible_devices;    // CUDA_VISIBLE_DEVICES, "<unset>" when unset
  bool slurm_binds_gpus = false;  // SLURM gave each task its own GPU set (--gpus-per-task,
                                  // --gpu-bind other than none): every task sees only its own
  std::string hostname;
  std::string unavailable_reason;  // why n_visible is 0 (driver message), may be empty
};

// The rule: under SLURM GPU binding a task uses local_rank % n_visible of the devices it was
// given; otherwise local rank r binds visible device r when there are enough devices, shares
// them round-robin when allow_sharing is set, and throws tpinfer::Error naming the node, the
// counts and CUDA_VISIBLE_DEVICES when not. Zero visible devices always throws.
int choose_cuda_device(int local_rank, int local_size, bool allow_sharing,
                       const DeviceBindingEnv& env);

// Reads the environment and the CUDA runtime, then applies choose_cuda_device. The result is
// what BackendOptions::device_ordinal should be.
int pick_cuda_device(int local_rank, int local_size, bool allow_sharing);

DeviceBindingEnv read_device_binding_env();

// "" when at least one CUDA device is usable, else why not (e.g. "cudaGetDeviceCount: CUDA
// driver version is insufficient for CUDA runtime version"). Never throws.
std::string cuda_unavailable_reason();

}  // namespace tpinfer
