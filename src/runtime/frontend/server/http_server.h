// The OpenAI-compatible HTTP server (cpp-httplib) in front of a GenerationService: POST
// /v1/completions and /v1/chat/completions (JSON, or server-sent events with "stream": true),
// GET /v1/models, GET /health, GET /metrics. Every answer other than 200 is OpenAI's error JSON.
// A client that goes away cancels its request. The server knows nothing of MPI or the model:
// tests run it in-process against a fake service.
//
//   HttpServer server(service, options);
//   server.start();               // binds (throws naming HOST:PORT), listens on its own thread
//   ...                           // SIGTERM:
//   server.begin_shutdown();      // new /v1 requests and /health answer 503; streams go on
//   while (server.in_flight() > 0 && before the grace period ends) wait;
//   server.stop();                // stops listening, cuts what is left, joins
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/frontend/openai/protocol.h"
#include "runtime/frontend/server/generation_service.h"
#include "runtime/frontend/server/metrics.h"

namespace tpinfer {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                   // 0: any free port (see HttpServer::port)
  std::string api_key;               // "" = /v1/* open; else "Authorization: Bearer KEY"
  int64_t max_body_bytes = 4 << 20;  // a larger body is answered 413
  std::string model_name;            // "" = service.model_name()
  // Connection limits (connections.h): open connections beyond max_connections are answered 503
  // with Retry-After; a request's head and body must arrive within request_timeout_s of its first
  // byte; an idle kept-alive connection is closed after keep_alive_timeout_s; one write (to a
  // client that stopped reading) gives up after write_timeout_s.
  int max_connections = 2048;
  double request_timeout_s = 30;
  double keep_alive_timeout_s = 60;
  double write_timeout_s = 30;
  // Sampling values of a body that gives none (OpenAI's: temperature 1, top_p 1).
  SamplingParams sampling_defaults = openai::openai_sampling_defaults();
};

// The `serve` key or --serve: "HOST:PORT", ":PORT" or "PORT" (host 127.0.0.1), "[::1]:PORT".
// Throws tpinfer::Error "key 'serve': expected HOST:PORT ..., found '...'".
struct ServeAddress {
  std::string host;
  int port = 0;
};
ServeAddress parse_serve_address(const std::string& value);

class HttpServer {
 public:
  HttpServer(GenerationService& service, HttpServerOptions options);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds host:port (throws tpinfer::Error naming them when it cannot, e.g. the port is in use)
  // and serves on a background thread.
  void start();
  int port() const;  // the bound port (the one picked when options.port was 0)
  const std::string& model_name() const;

  void begin_shutdown();
  bool shutting_down() const;
  // Generation requests being answered (waiting for their outcome or streaming).
  int in_flight() const;
  // Stops listening, ends open connections and joins the server thread. Idempotent.
  void stop();

  ServerMetrics& metrics();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tpinfer
