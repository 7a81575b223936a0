#include "runtime/frontend/server/http_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "runtime/frontend/openai/protocol.h"
#include "runtime/frontend/server/connections.h"
#include "runtime/frontend/server/worker_pool.h"

namespace tpinfer {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using openai::ApiError;
using openai::Endpoint;

constexpr auto kPoll = std::chrono::milliseconds(100);  // how often a waiting request looks around

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(openai::dump(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  send_json(res, e.status, openai::error_json(e));
}

// The routes and their one method each: a known path asked with another method is a 405.
struct Route {
  const char* path;
  const char* method;
};
constexpr Route kRoutes[] = {{"/v1/completions", "POST"}, {"/v1/chat/completions", "POST"},
                             {"/tokenize", "POST"},       {"/detokenize", "POST"},
                             {"/tokenizer_info", "GET"},  {"/v1/models", "GET"},
                             {"/health", "GET"},          {"/metrics", "GET"}};

const Route* find_route(const std::string& path) {
  for (const Route& r : kRoutes)
    if (path == r.path) return &r;
  return nullptr;
}

// The label of /metrics' request counter: the route, or "other" (unbounded paths stay out).
std::string endpoint_label(const std::string& path) {
  if (find_route(path)) return path;
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{model}";
  return "other";
}

// True when the peer closed its end (EOF or an error pending); pipelined bytes are not a close.
bool peer_closed(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLERR | POLLNVAL)) return true;
  char c;
  const ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 5) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// httplib 0.11 listens with a backlog of 5 (compiled into Debian's library): 32 clients
// connecting at once overflow it and some wait seconds for a SYN retransmit. Listening again on
// the bound socket raises the backlog (Linux takes the new value). Each accepted socket is served
// by Connections (the cap, the request deadline, keep-alive) around httplib's request parser.
class Server : public httplib::Server {
 public:
  void raise_backlog(int n) {
    const socket_t sock = svr_sock_;
    if (sock != INVALID_SOCKET) ::listen(sock, n);
  }
  Connections* connections = nullptr;

 private:
  bool process_and_close_socket(socket_t sock) override {
    connections->serve(sock, [this](httplib::Stream& strm, bool close_connection, bool& closed) {
      return process_request(strm, close_connection, closed, nullptr);
    });
    return true;
  }
};

}  // namespace

ServeAddress parse_serve_address(const std::string& value) {
  auto fail = [&]() {
    TPI_FAIL(
        "key 'serve': expected HOST:PORT, :PORT or PORT (port 0..65535, e.g. "
        "127.0.0.1:8000 or [::1]:8000), found '"
        << value << "'");
  };
  ServeAddress a;
  std::string port;
  if (all_digits(value)) {
    a.host = "127.0.0.1";
    port = value;
  } else if (!value.empty() && value[0] == '[') {
    const size_t close = value.find("]:");
    if (close == std::string::npos) fail();
    a.host = value.substr(1, close - 1);
    port = value.substr(close + 2);
  } else {
    const size_t colon = value.rfind(':');
    if (colon == std::string::npos || value.find(':') != colon) fail();
    a.host = colon == 0 ? "127.0.0.1" : value.substr(0, colon);
    port = value.substr(colon + 1);
  }
  if (a.host.empty() || !all_digits(port) || std::stoi(port) > 65535) fail();
  a.port = std::stoi(port);
  return a;
}

struct HttpServer::Impl {
  Impl(GenerationService& s, HttpServerOptions o)
      : service(s),
        options(std::move(o)),
        model(options.model_name.empty() ? s.model_name() : options.model_name) {}

  GenerationService& service;
  HttpServerOptions options;
  std::string model;
  Server svr;
  std::unique_ptr<Connections> connections;
  std::thread thread;
  int bound_port = -1;
  std::atomic<bool> shutting{false};
  std::atomic<bool> stopping{false};
  std::atomic<int> in_flight{0};
  ServerMetrics metrics;
  std::mutex warned_mu;
  std::set<std::string> warned_fields;

  openai::TokenText token_text() {
    return [this](int32_t id) { return service.token_text(id); };
  }

  // 401 unless the request carries the configured key (/v1/* only).
  bool authorized(const httplib::Request& req, httplib::Response& res) {
    if (options.api_key.empty()) return true;
    const std::string auth = req.get_header_value("Authorization");
    const std::string expected = "Bearer " + options.api_key;
    bool ok = auth.size() == expected.size();
    unsigned char diff = 0;  // compare every byte: no early exit on the first difference
    for (size_t i = 0; ok && i < auth.size(); ++i) diff |= auth[i] ^ expected[i];
    if (ok && diff == 0) return true;
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, ApiError(401,
                             auth.empty() ? "You didn't provide an API key: send it as "
                                            "'Authorization: Bearer KEY'."
                                          : "Incorrect API key provided.",
                             "", "invalid_api_key", "invalid_request_error"));
    return false;
  }

  void note_ignored(const std::vector<std::string>& fields) {
    std::lock_guard<std::mutex> lock(warned_mu);
    for (const std::string& f : fields) {
      if (warned_fields.insert(f).second) {
        log_debug("server: ignoring the unknown request field '" + f + "'");
      }
    }
  }

  // One choice's outcome: its tokens (the prompt counts once, with choice 0) and, for a
  // non-streaming request, the service's own timings (queue + first token, per-token decode).
  void record_choice(const GenerationOutcome& o, bool timed_by_deltas) {
    metrics.add_tokens(o.index == 0 ? o.prompt_tokens : 0,
                       static_cast<int64_t>(o.token_ids.size()));
    if (!timed_by_deltas && !o.token_ids.empty()) {
      if (o.index == 0) metrics.observe_ttft((o.queue_ms + o.ttft_ms) / 1000.0);
      for (double ms : o.decode_ms) metrics.observe_inter_token(ms / 1000.0);
    }
  }
  static bool failed(const GenerationOutcome& o) {
    return o.finish_reason == "error" || o.finish_reason == "cancelled";
  }

  void models(const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    const json card{{"id", model},
                    {"object", "model"},
                    {"created", service.created_unix()},
                    {"owned_by", "tpinfer"},
                    {"max_model_len", service.max_seq()}};
    if (req.matches.size() > 1) {
      const std::string asked = req.matches[1];
      if (asked != model) {
        send_error(res, ApiError(404, "The model `" + asked + "` does not exist", "model",
                                 "model_not_found", "invalid_request_error"));
        return;
      }
      send_json(res, 200, card);
      return;
    }
    send_json(res, 200, json{{"object", "list"}, {"data", json::array({card})}});
  }

  void generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
    const Clock::time_point t0 = Clock::now();
    if (!authorized(req, res)) return;
    // Counted before the shutdown check: a request that passes it is always seen by in_flight()
    // (no window between the check and the count for a graceful stop to miss).
    ++in_flight;
    bool handed_to_stream = false;  // a stream's releaser gives the count back
    struct Release {
      std::atomic<int>& n;
      const bool& keep;
      ~Release() {
        if (!keep) --n;
      }
    } release{in_flight, handed_to_stream};
    if (shutting) {
      send_error(res, ApiError(503, "the server is shutting down"));
      return;
    }
    openai::ParsedRequest parsed;
    GenerationService::Submitted sub;
    try {
      parsed = openai::parse_request_body(endpoint, req.body, options.sampling_defaults);
      openai::check_model(parsed.model, model);
      if (!parsed.ignored_fields.empty()) note_ignored(parsed.ignored_fields);
      if (parsed.prompts.size() > 1 || parsed.echo) {
        completions(parsed, t0, res);
        return;
      }
      sub = service.submit(parsed.request);
    } catch (const ApiError& e) {
      send_error(res, e);
      return;
    } catch (const RequestRefused& e) {
      send_error(res, ApiError(e.status, e.what(), e.param, e.code));
      return;
    }
    openai::ResponseContext ctx = openai::make_context(parsed, model, now_unix());
    ctx.tool_format = service.tool_call_format();
    if (parsed.stream) {
      stream(ctx, sub, t0, res);
      handed_to_stream = true;
    } else {
      wait_and_answer(ctx, sub, t0, res);
    }
  }

  // Waits for every choice of sub (n outcomes, in the order they end). False when the answer was
  // already written (the server stopped: 503; the client went away: 499) and sub was cancelled.
  // A failed choice ends the wait (the answer is its error) and cancels the others.
  // fd: the connection, found once (-2 first).
  bool wait_outcomes(const GenerationService::Submitted& sub, httplib::Response& res, int& fd,
                     std::vector<GenerationOutcome>& outcomes) {
    GenerationDelta d;
    GenerationOutcome o;
    outcomes.clear();
    for (;;) {
      const auto next = sub.channel->next(d, o, kPoll);
      if (next == RequestChannel::Next::done) {
        const bool bad = failed(o);
        outcomes.push_back(std::move(o));
        if (bad) {
          if (outcomes.size() < static_cast<size_t>(sub.channel->n())) service.cancel(sub.id);
          return true;
        }
        if (outcomes.size() == static_cast<size_t>(sub.channel->n())) return true;
        continue;
      }
      if (next == RequestChannel::Next::delta) continue;  // a service streaming anyway
      if (stopping) {
        service.cancel(sub.id);
        send_error(res, ApiError(503, "the server stopped before the request finished"));
        return false;
      }
      if (fd == -2) fd = Connections::current_fd();
      if (fd >= 0 && peer_closed(fd)) {
        service.cancel(sub.id);
        res.status = 499;  // nginx's "client closed request": only /metrics sees it
        return false;
      }
    }
  }

  // /v1/completions with several prompts (one request each, answered as one choice each, in
  // order) and/or echo (the prompt in front; with logprobs, scored).
  void completions(const openai::ParsedRequest& parsed, Clock::time_point t0,
                   httplib::Response& res) {
    if (parsed.request.n > 1) {
      send_error(res, ApiError(400,
                               "'n' > 1 is not supported with several prompts or with echo; send "
                               "one request per prompt",
                               "n"));
      return;
    }
    std::vector<GenerationService::Submitted> subs;
    std::vector<std::string> echo_texts;
    try {
      for (size_t i = 0; i < parsed.prompts.size(); ++i) {
        const openai::ParsedRequest::Prompt& p = parsed.prompts[i];
        if (parsed.echo) echo_texts.push_back(p.ids.empty() ? p.text : service.detokenize(p.ids));
        subs.push_back(service.submit(openai::request_for_prompt(parsed, i)));
      }
    } catch (const RequestRefused& e) {
      for (const GenerationService::Submitted& s : subs) service.cancel(s.id);
      std::string param = e.param;
      if (parsed.prompts.size() > 1 && (param == "prompt" || param.empty())) {
        param = "prompt[" + std::to_string(subs.size()) + "]";
      }
      send_error(res, ApiError(e.status, e.what(), param, e.code));
      return;
    }
    std::vector<GenerationOutcome> outcomes(subs.size()), one;
    int fd = -2;
    for (size_t i = 0; i < subs.size(); ++i) {
      if (!wait_outcomes(subs[i], res, fd, one)) {
        for (size_t k = i + 1; k < subs.size(); ++k) service.cancel(subs[k].id);
        return;
      }
      outcomes[i] = std::move(one.front());  // n = 1 here (refused above otherwise)
      record_choice(outcomes[i], false);
    }
    metrics.observe_e2e(seconds_since(t0));
    const openai::ResponseContext ctx = openai::make_context(parsed, model, now_unix());
    try {
      send_json(res, 200,
                openai::format_completions(ctx, outcomes, parsed.echo, echo_texts, token_text()));
    } catch (const ApiError& e) {
      send_error(res, e);
    }
  }

  // POST /tokenize: {"prompt": text, "add_special_tokens": true} or {"messages": [...],
  // "add_generation_prompt": true}; answers {"count", "max_model_len", "tokens", "token_strs"}.
  void tokenize(const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    try {
      const json body = parse_object(req.body);
      check_model_field(body);
      std::vector<int32_t> ids;
      const bool has_messages = body.contains("messages") && !body["messages"].is_null();
      if (has_messages) {
        bool gen = true;
        if (const auto it = body.find("add_generation_prompt");
            it != body.end() && !it->is_null()) {
          if (!it->is_boolean()) {
            throw ApiError(400, "'add_generation_prompt': expected a boolean",
                           "add_generation_prompt");
          }
          gen = it->get<bool>();
        }
        ids = service.tokenize_chat(openai::parse_chat_messages(body["messages"]), gen);
      } else {
        const auto it = body.find("prompt");
        if (it == body.end() || !it->is_string()) {
          throw ApiError(400, "'prompt': expected a string (or give 'messages')", "prompt");
        }
        bool special = true;
        if (const auto s = body.find("add_special_tokens"); s != body.end() && !s->is_null()) {
          if (!s->is_boolean()) {
            throw ApiError(400, "'add_special_tokens': expected a boolean", "add_special_tokens");
          }
          special = s->get<bool>();
        }
        ids = service.tokenize(it->get<std::string>(), special);
      }
      json strs = nullptr;
      if (const auto s = body.find("return_token_strs");
          s != body.end() && s->is_boolean() && s->get<bool>()) {
        strs = json::array();
        for (int32_t id : ids) strs.push_back(service.token_text(id));
      }
      send_json(res, 200,
                json{{"count", ids.size()},
                     {"max_model_len", service.max_seq()},
                     {"tokens", ids},
                     {"token_strs", strs}});
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const RequestRefused& e) {
      send_error(res, ApiError(e.status, e.what(), e.param, e.code));
    }
  }

  // POST /detokenize: {"tokens": [ids]} -> {"prompt": text}.
  void detokenize(const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    try {
      const json body = parse_object(req.body);
      check_model_field(body);
      const auto it = body.find("tokens");
      if (it == body.end() || !it->is_array()) {
        throw ApiError(400, "'tokens': expected an array of token ids", "tokens");
      }
      std::vector<int32_t> ids;
      for (size_t i = 0; i < it->size(); ++i) {
        const json& v = (*it)[i];
        if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
            v.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
          throw ApiError(400,
                         "'tokens[" + std::to_string(i) +
                             "]': expected a token id (an integer >= 0), found " + v.dump(),
                         "tokens");
        }
        ids.push_back(v.get<int32_t>());
      }
      send_json(res, 200, json{{"prompt", service.detokenize(ids)}});
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const RequestRefused& e) {
      send_error(res, ApiError(e.status, e.what(), e.param, e.code));
    }
  }

  // GET /tokenizer_info: the special tokens and the chat template (lm-eval's remote tokenizer).
  void tokenizer_info(const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    try {
      const GenerationService::TokenizerInfo t = service.tokenizer_info();
      auto or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
      send_json(res, 200,
                json{{"model", model},
                     {"bos_token", or_null(t.bos_token)},
                     {"bos_token_id", t.bos_token_id >= 0 ? json(t.bos_token_id) : json(nullptr)},
                     {"eos_token", or_null(t.eos_token)},
                     {"eos_token_ids", t.eos_token_ids},
                     {"pad_token", nullptr},
                     {"chat_template", or_null(t.chat_template)},
                     {"vocab_size", t.vocab_size},
                     {"model_max_length", t.model_max_length}});
    } catch (const RequestRefused& e) {
      send_error(res, ApiError(e.status, e.what(), e.param, e.code));
    }
  }

  static json parse_object(const std::string& body) {
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded()) throw ApiError(400, "the request body is not valid JSON");
    if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
    return j;
  }

  void check_model_field(const json& body) {
    const auto it = body.find("model");
    if (it == body.end() || it->is_null()) return;
    if (!it->is_string()) throw ApiError(400, "'model': expected a string", "model");
    openai::check_model(it->get<std::string>(), model);
  }

  void wait_and_answer(const openai::ResponseContext& ctx, const GenerationService::Submitted& sub,
                       Clock::time_point t0, httplib::Response& res) {
    std::vector<GenerationOutcome> outcomes;  // one per choice
    int fd = -2;                              // -2: not looked for yet; -1: not found
    if (!wait_outcomes(sub, res, fd, outcomes)) return;
    for (const GenerationOutcome& c : outcomes) record_choice(c, false);
    metrics.observe_e2e(seconds_since(t0));
    try {
      // A failed choice throws its error (format_response checks every outcome first).
      send_json(res, 200, openai::format_response(ctx, outcomes, token_text()));
    } catch (const ApiError& e) {
      send_error(res, e);
    }
  }

  struct StreamState {
    StreamState(openai::ResponseContext c, openai::TokenText t) : fmt(std::move(c), std::move(t)) {}
    openai::StreamFormatter fmt;
    GenerationService::Submitted sub;
    Clock::time_point t0, last_token;
    bool begun = false;
    int n_finished = 0;     // choices ended
    bool finished = false;  // every choice ended: nothing to cancel
    bool timed = false;     // a delta with tokens was seen: TTFT/ITL measured here
  };

  void stream(const openai::ResponseContext& ctx, const GenerationService::Submitted& sub,
              Clock::time_point t0, httplib::Response& res) {
    auto st = std::make_shared<StreamState>(ctx, token_text());
    st->sub = sub;
    st->t0 = t0;
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    // Exactly "text/event-stream": httplib never compresses that type, so events leave at once.
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, st](size_t, httplib::DataSink& sink) {
          auto write = [&](const std::string& s) {
            return s.empty() || sink.write(s.data(), s.size());
          };
          if (!st->begun) {
            st->begun = true;
            if (!write(st->fmt.begin())) return false;
          }
          GenerationDelta d;
          GenerationOutcome o;
          switch (st->sub.channel->next(d, o, kPoll)) {
            case RequestChannel::Next::delta: {
              const size_t k = d.token_ids.size();
              if (k > 0) {
                if (!st->timed) {
                  metrics.observe_ttft(seconds_since(st->t0));
                  for (size_t i = 1; i < k; ++i) metrics.observe_inter_token(0.0);
                } else {
                  const double gap = seconds_since(st->last_token) / static_cast<double>(k);
                  for (size_t i = 0; i < k; ++i) metrics.observe_inter_token(gap);
                }
                st->timed = true;
                st->last_token = Clock::now();
              }
              return write(st->fmt.delta(d));
            }
            case RequestChannel::Next::done: {
              // One choice ended; the stream ends with the last (or at a failed one).
              ++st->n_finished;
              record_choice(o, st->timed);
              const bool ok = write(st->fmt.finish(o));
              if (!st->fmt.done()) return ok;
              st->finished = st->n_finished == st->sub.channel->n();
              metrics.observe_e2e(seconds_since(st->t0));
              sink.done();
              return true;
            }
            case RequestChannel::Next::timeout:
              return !stopping && sink.is_writable();
          }
          return false;
        },
        [this, st](bool) {
          if (!st->finished) service.cancel(st->sub.id);  // the client went away, or stop()
          --in_flight;
        });
  }

  void setup() {
    // One worker per connection (up to the cap, plus a few that answer 503 beyond it).
    const int workers = options.max_connections + 64;
    svr.new_task_queue = [workers] { return new WorkerPool(workers, 8); };
    svr.set_payload_max_length(static_cast<size_t>(options.max_body_bytes));
    // httplib's default also sets SO_REUSEPORT, which lets a second server bind the same port
    // silently: only SO_REUSEADDR here, so a port in use is an error.
    svr.set_socket_options([](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    // What the Keep-Alive header advertises; Connections enforces the timeout and sets no limit
    // on the requests per connection.
    svr.set_keep_alive_timeout(static_cast<time_t>(options.keep_alive_timeout_s));
    svr.set_keep_alive_max_count(1000000);
    // Socket options httplib sets on each accepted socket; Connections polls with its own
    // deadlines before every read and write.
    svr.set_read_timeout(static_cast<time_t>(options.request_timeout_s) + 1, 0);
    svr.set_write_timeout(static_cast<time_t>(options.write_timeout_s) + 1, 0);

    svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      if (shutting) {
        send_json(res, 503, json{{"status", "shutting_down"}});
      } else {
        send_json(res, 200, json{{"status", "ok"}, {"model", model}});
      }
    });
    svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.render(service.load(), service.kv_stats()), kPrometheusContentType);
    });
    svr.Get("/v1/models",
            [this](const httplib::Request& q, httplib::Response& r) { models(q, r); });
    svr.Get("/v1/models/(.+)",
            [this](const httplib::Request& q, httplib::Response& r) { models(q, r); });
    svr.Post("/v1/completions", [this](const httplib::Request& q, httplib::Response& r) {
      generate(Endpoint::completions, q, r);
    });
    svr.Post("/v1/chat/completions", [this](const httplib::Request& q, httplib::Response& r) {
      generate(Endpoint::chat_completions, q, r);
    });
    svr.Post("/tokenize",
             [this](const httplib::Request& q, httplib::Response& r) { tokenize(q, r); });
    svr.Post("/detokenize",
             [this](const httplib::Request& q, httplib::Response& r) { detokenize(q, r); });
    svr.Get("/tokenizer_info",
            [this](const httplib::Request& q, httplib::Response& r) { tokenizer_info(q, r); });

    // Answers httplib makes itself (no route, a body over the limit, a malformed request) in
    // OpenAI's error JSON. Answers our handlers wrote already have their body.
    svr.set_error_handler(httplib::Server::HandlerWithResponse(
        [this](const httplib::Request& req, httplib::Response& res) {
          if (!res.body.empty() || res.content_provider_) {
            return httplib::Server::HandlerResponse::Unhandled;
          }
          if (res.status == 404) {
            if (const Route* r = find_route(req.path)) {
              res.set_header("Allow", r->method);
              send_error(res, ApiError(405, "Method " + req.method + " is not allowed on " +
                                                req.path + " (use " + r->method + ")"));
            } else {
              send_error(res, ApiError(404, "Invalid URL (" + req.method + " " + req.path + ")", "",
                                       "", "invalid_request_error"));
            }
          } else if (res.status == 413) {
            // The body was not read: the connection cannot carry another request.
            res.set_header("Connection", "close");
            send_error(res, ApiError(413, "the request body is larger than this server accepts (" +
                                              std::to_string(options.max_body_bytes) + " bytes)"));
          } else if (res.status >= 500) {
            send_error(res, ApiError(res.status, "internal server error"));
          } else {
            send_error(res, ApiError(res.status, "the HTTP request was refused (status " +
                                                     std::to_string(res.status) + ")"));
          }
          return httplib::Server::HandlerResponse::Handled;
        }));
    svr.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "unknown exception";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          log_error("server: " + what);
          send_error(res, ApiError(500, "internal server error: " + what));
        });
    svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      metrics.count_request(endpoint_label(req.path), res.status);
    });
  }
};

HttpServer::HttpServer(GenerationService& service, HttpServerOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {
  impl_->setup();
}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::start() {
  Impl& m = *impl_;
  TPI_CHECK(!m.thread.joinable(), "server: start() called twice");
  const std::string where = m.options.host + ":" + std::to_string(m.options.port);
  errno = 0;
  if (m.options.port == 0) {
    m.bound_port = m.svr.bind_to_any_port(m.options.host);
  } else {
    m.bound_port = m.svr.bind_to_port(m.options.host, m.options.port) ? m.options.port : -1;
  }
  if (m.bound_port < 0) {
    const int err = errno;
    TPI_FAIL("server: cannot listen on " << where << ": "
                                         << (err ? std::strerror(err) : "bind failed")
                                         << " (is the port in use, or the host not an address of "
                                            "this machine?)");
  }
  m.svr.raise_backlog(1024);
  // One descriptor per connection: keep the cap below the process's limit (raised to the hard
  // limit here), with room for the job's own files, sockets and MPI, so that a client beyond the
  // cap gets a 503 and not an accept() that fails for want of a descriptor.
  constexpr long kReservedFds = 256;
  const long fd_limit = raise_fd_limit();
  ConnectionLimits limits{m.options.max_connections, m.options.request_timeout_s,
                          m.options.keep_alive_timeout_s, m.options.write_timeout_s,
                          m.options.max_body_bytes + (1 << 20)};
  if (fd_limit > 0 && fd_limit - kReservedFds < limits.max_connections) {
    limits.max_connections = static_cast<int>(std::max(16L, fd_limit - kReservedFds));
    log_warn("server: max_connections " + std::to_string(m.options.max_connections) +
             " lowered to " + std::to_string(limits.max_connections) +
             " by the open-file limit (ulimit -n " + std::to_string(fd_limit) +
             "); raise the hard limit to allow more");
  }
  m.connections = std::make_unique<Connections>(
      limits, openai::dump(openai::error_json(
                  ApiError(503, "the server has " + std::to_string(limits.max_connections) +
                                    " connections open (max_connections); retry later"))));
  m.svr.connections = m.connections.get();
  m.thread = std::thread([&m] { m.svr.listen_after_bind(); });
  // stop() is a no-op until httplib marks itself running: wait for that, so stop() always ends it.
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (!m.svr.is_running() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  log_info("server: listening on http://" + m.options.host + ":" + std::to_string(m.bound_port) +
           " (model '" + m.model + "', up to " + std::to_string(limits.max_connections) +
           " connections, open-file limit " + std::to_string(fd_limit) + ")");
}

int HttpServer::port() const {
  return impl_->bound_port;
}

const std::string& HttpServer::model_name() const {
  return impl_->model;
}

void HttpServer::begin_shutdown() {
  impl_->shutting = true;
}

bool HttpServer::shutting_down() const {
  return impl_->shutting;
}

int HttpServer::in_flight() const {
  return impl_->in_flight;
}

void HttpServer::stop() {
  Impl& m = *impl_;
  if (!m.thread.joinable()) return;
  m.shutting = true;
  m.stopping = true;
  m.svr.stop();
  if (m.connections) m.connections->close_all();  // idle and slow clients end now, not at a timeout
  m.thread.join();
}

ServerMetrics& HttpServer::metrics() {
  return impl_->metrics;
}

}  // namespace tpinfer
