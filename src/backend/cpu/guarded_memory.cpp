// GuardedMemory: one reserved, PROT_NONE mapping, opened and closed around each backend op, and a
// SIGSEGV handler that names a fault inside it as host code touching backend memory.
#include "backend/cpu/guarded_memory.h"

#include <execinfo.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace tpinfer::cpu {
namespace {

// The arenas the fault handler knows about (at most a few per process: tests build several
// backends). Written before the handler can see them, read only in the handler.
constexpr int kMaxArenas = 16;
struct ArenaRange {
  const char* base;
  size_t bytes;
};
ArenaRange g_arenas[kMaxArenas];
volatile sig_atomic_t g_n_arenas = 0;
struct sigaction g_previous {};
bool g_handler_installed = false;

void write_str(const char* s) {
  ssize_t ignored = write(STDERR_FILENO, s, std::strlen(s));
  (void)ignored;
}

void on_segv(int sig, siginfo_t* info, void* ctx) {
  const char* addr = static_cast<const char*>(info->si_addr);
  for (int i = 0; i < g_n_arenas; ++i) {
    if (addr >= g_arenas[i].base && addr < g_arenas[i].base + g_arenas[i].bytes) {
      char msg[256];
      std::snprintf(msg, sizeof(msg),
                    "tpinfer: host code touched backend memory at %p outside a backend op or copy "
                    "(guarded CPU backend, TPINFER_CPU_GUARD_MEMORY): on a GPU this is a device "
                    "pointer. Stack:\n",
                    info->si_addr);
      write_str(msg);
      void* frames[48];
      const int n = backtrace(frames, 48);
      backtrace_symbols_fd(frames, n, STDERR_FILENO);
      break;
    }
  }
  // Hand the fault on: the previous handler (a sanitizer's) or the default, which ends the
  // process by SIGSEGV.
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction != nullptr) {
      g_previous.sa_sigaction(sig, info, ctx);
      return;
    }
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN &&
             g_previous.sa_handler != nullptr) {
    g_previous.sa_handler(sig);
    return;
  }
  signal(SIGSEGV, SIG_DFL);
  raise(SIGSEGV);
}

void install_handler() {
  if (g_handler_installed) return;
  struct sigaction sa {};
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &g_previous);
  g_handler_installed = true;
}

size_t page_size() {
  return static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

GuardedMemory::GuardedMemory() {
  struct sysinfo si {};
  sysinfo(&si);
  reserved_ = static_cast<size_t>(si.totalram) * si.mem_unit;
  void* p = mmap(nullptr, reserved_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  TPI_CHECK(p != MAP_FAILED, "cpu backend (guarded memory): cannot reserve "
                                 << reserved_
                                 << " bytes of address space: " << std::strerror(errno));
  base_ = static_cast<char*>(p);
  TPI_CHECK(g_n_arenas < kMaxArenas,
            "cpu backend (guarded memory): more than " << kMaxArenas << " arenas");
  g_arenas[g_n_arenas] = ArenaRange{base_, reserved_};
  g_n_arenas = g_n_arenas + 1;
  install_handler();
}

GuardedMemory::~GuardedMemory() {
  // The range stays registered (the handler must never see a half-updated table); a fault there
  // after the unmap is a use after free, which the message describes as well.
  munmap(base_, reserved_);
}

void* GuardedMemory::alloc(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  TPI_CHECK(used_ + rounded <= reserved_, "cpu backend (guarded memory): out of reserved space ("
                                              << reserved_ << " bytes) allocating " << bytes);
  char* p = base_ + used_;
  used_ += rounded == 0 ? 64 : rounded;
  if (depth_ > 0) protect(PROT_READ | PROT_WRITE);  // grow the open window
  return p;
}

bool GuardedMemory::owns(const void* p) const {
  const char* c = static_cast<const char*>(p);
  return c >= base_ && c < base_ + used_;
}

void GuardedMemory::open() {
  if (depth_++ == 0) protect(PROT_READ | PROT_WRITE);
}

void GuardedMemory::close() {
  if (--depth_ == 0) protect(PROT_NONE);
}

void GuardedMemory::protect(int prot) {
  const size_t page = page_size();
  const size_t bytes = (used_ + page - 1) / page * page;
  if (bytes == 0) return;
  TPI_CHECK(mprotect(base_, bytes, prot) == 0,
            "cpu backend (guarded memory): mprotect failed: " << std::strerror(errno));
}

}  // namespace tpinfer::cpu
