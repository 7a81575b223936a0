#include "core/stop_signals.h"

namespace tpinfer {
namespace {

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) {
  g_stop_signal = sig;
}

}  // namespace

StopSignals::StopSignals() {
  g_stop_signal = 0;
  struct sigaction sa = {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND | SA_RESTART;
  sigaction(SIGTERM, &sa, &old_term_);
  sigaction(SIGINT, &sa, &old_int_);
  // mpirun forwards SIGUSR1 to every rank on every node (not SIGTERM, on which it kills them):
  // scripts/mpirun.sh turns a SIGTERM to itself into this.
  sigaction(SIGUSR1, &sa, &old_usr1_);
}

StopSignals::~StopSignals() {
  sigaction(SIGTERM, &old_term_, nullptr);
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGUSR1, &old_usr1_, nullptr);
}

bool stop_signalled() {
  return g_stop_signal != 0;
}

int stop_signal_number() {
  return g_stop_signal;
}

const char* stop_signal_name() {
  return g_stop_signal == SIGINT    ? "SIGINT"
         : g_stop_signal == SIGTERM ? "SIGTERM"
         : g_stop_signal == SIGUSR1 ? "SIGUSR1 (a SIGTERM to mpirun)"
                                    : "a signal on another rank";
}

}  // namespace tpinfer
