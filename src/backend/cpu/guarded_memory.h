// The CPU backend's guarded test mode: its memory behaves like a GPU's to the host. An arena of
// reserved address space hands out allocations; outside a backend op or copy every page of it is
// PROT_NONE, so any host code that reads or writes "device" memory faults at once, with a message
// naming the address, instead of working on the CPU and crashing on a GPU.
#pragma once

#include <cstddef>

namespace tpinfer::cpu {

class GuardedMemory {
 public:
  GuardedMemory();  // reserves address space (as much as the machine has RAM), all PROT_NONE
  ~GuardedMemory();
  GuardedMemory(const GuardedMemory&) = delete;
  GuardedMemory& operator=(const GuardedMemory&) = delete;

  // 64-byte aligned, zeroed, never reused (free is a no-op: tests are short).
  void* alloc(size_t bytes);
  bool owns(const void* p) const;

  // Makes the arena readable and writable until the matching close(); nests.
  void open();
  void close();

  // Opens the arena for the lifetime of one op.
  class Scope {
   public:
    explicit Scope(GuardedMemory* g) : g_(g) {
      if (g_ != nullptr) g_->open();
    }
    ~Scope() {
      if (g_ != nullptr) g_->close();
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    GuardedMemory* g_;
  };

 private:
  void protect(int prot);

  char* base_ = nullptr;
  size_t reserved_ = 0;
  size_t used_ = 0;  // bump pointer
  int depth_ = 0;
};

}  // namespace tpinfer::cpu
