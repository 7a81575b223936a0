#include "runtime/frontend/server_job.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "runtime/frontend/kv_report.h"
#include "runtime/frontend/queue_service.h"
#include "runtime/frontend/server/http_server.h"
#include "runtime/job_setup.h"
#include "runtime/scheduler/dispatcher.h"
#include "runtime/tp_layout.h"

namespace tpinfer {
namespace {

// Binds (and releases) host:port once, so that a port in use or an unknown host fails before
// minutes of weights are loaded. The server binds again when the engine is ready.
void check_can_bind(const ServeAddress& a) {
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(a.port);
  const int rc = getaddrinfo(a.host.c_str(), port.c_str(), &hints, &res);
  TPI_CHECK(rc == 0, "key 'serve': cannot resolve host '" << a.host << "': " << gai_strerror(rc));
  std::string why;
  bool ok = false;
  for (addrinfo* p = res; p && !ok; p = p->ai_next) {
    const int fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, p->ai_addr, p->ai_addrlen) == 0) {
      ok = true;
    } else {
      why = std::strerror(errno);
    }
    close(fd);
  }
  freeaddrinfo(res);
  TPI_CHECK(ok, "key 'serve': cannot bind " << a.host << ":" << a.port << " (" << why
                                            << "); is another server on that port? choose "
                                               "another with --serve HOST:PORT");
}

}  // namespace

void run_server_job(World& world, const RunConfig& cfg,
                    std::chrono::steady_clock::time_point launch) {
  ModelHandle model = open_model(world, cfg);
  check_tp_layout(world);
  const bool rank0 = world.rank() == 0;

  // The address first: a bad one fails on every rank before anything is allocated.
  ServeAddress addr;
  std::string err;
  if (rank0) {
    try {
      addr = parse_serve_address(cfg.serve);
      check_can_bind(addr);
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  world.agree(err.empty(), err);

  // Requests are not known in advance: max_seq is the config's or the model's (up to 4096), and
  // every replica gets batch_size slots.
  const EngineShape shape = size_engine(cfg, model.config, 0, -1, world.dp());
  EngineHandle eng = start_engine(world, cfg, model, shape);

  RequestQueue queue(static_cast<size_t>(cfg.max_queue));
  KvStatsBoard kv_board;  // before the service and server that read it
  std::unique_ptr<QueueService> service;
  std::unique_ptr<HttpServer> http;
  if (rank0) {
    try {
      service =
          std::make_unique<QueueService>(queue, *model.tokenizer, cfg, model.config, shape.max_seq,
                                         shape.n_slots * world.dp(), served_model_name(cfg));
      service->set_kv_limits(kv_limits(eng.engine->shape()));
      HttpServerOptions o;
      o.host = addr.host;
      o.port = addr.port;
      o.api_key = cfg.api_key;
      o.max_body_bytes = cfg.max_request_bytes;
      o.max_connections = cfg.max_connections;
      o.request_timeout_s = cfg.request_timeout_s;
      o.keep_alive_timeout_s = cfg.keep_alive_timeout_s;
      o.model_name = service->model_name();
      http = std::make_unique<HttpServer>(*service, o);
      http->start();
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  world.agree(err.empty(), err);
  if (rank0) {
    TPI_LOG_INFO << "serving the OpenAI API at http://" << addr.host << ":" << http->port()
                 << "/v1 (model '" << service->model_name() << "', dp " << world.dp() << " x "
                 << (world.pp() > 1 ? "pp " + std::to_string(world.pp()) + " x " : "") << "tp "
                 << world.tp() << ", " << shape.n_slots << " slot(s) per replica, max_seq "
                 << shape.max_seq << ", ready " << ms_since(launch) / 1000.0
                 << " s after launch); SIGTERM stops it";
  }

  if (rank0) service->set_kv_board(&kv_board);
  DispatchOptions opts;
  opts.keep_reserve = false;  // a request waits at rank 0, where any replica can take it
  opts.prefix_caching = cfg.prefix_caching;
  opts.grace_s = cfg.shutdown_grace_s;
  opts.kv_stats = &kv_board;
  if (rank0) opts.on_stop = [&http] { http->begin_shutdown(); };
  const DispatchResult run = run_replicas(world, *eng.engine, model.tokenizer.get(), model.stop_ids,
                                          model.sample_vocab, &queue, service.get(), opts);
  if (rank0) {
    // Every request has its outcome; give the HTTP threads a moment to write the last ones.
    for (int i = 0; i < 200 && http->in_flight() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    http->stop();
    log_info(std::string("server stopped") +
             (run.stopped ? " (" + std::string(run.signal) + ")" : std::string()) +
             kv_stats_line(kv_board.total()));
  }
}

}  // namespace tpinfer
