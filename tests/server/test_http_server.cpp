// The HTTP server over loopback against a fake service: both endpoints, streaming and not, the
// error answers (400/401/404/405/413/429/503) in OpenAI's JSON while the server keeps serving,
// cancel on client disconnect, 32 concurrent streams, and a graceful shutdown. Every wait is
// bounded generously: the test machine is shared and busy.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "fake_service.h"
#include "runtime/frontend/server/http_server.h"

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using nlohmann::json;
using namespace std::chrono_literals;
using tpinfer::HttpServer;
using tpinfer::HttpServerOptions;
using tpinfer::testing::FakeService;

namespace {

HttpServerOptions local(int64_t max_body = 1 << 20, std::string key = "") {
  HttpServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.max_body_bytes = max_body;
  o.api_key = std::move(key);
  return o;
}

struct Client {
  explicit Client(int port) : cli("127.0.0.1", port) {
    cli.set_connection_timeout(30, 0);
    cli.set_read_timeout(120, 0);
    cli.set_write_timeout(30, 0);
  }
  httplib::Result post(const std::string& path, const json& body, httplib::Headers h = {}) {
    return cli.Post(path.c_str(), h, body.dump(), "application/json");
  }
  httplib::Result post_raw(const std::string& path, const std::string& body,
                           httplib::Headers h = {}) {
    return cli.Post(path.c_str(), h, body, "application/json");
  }
  httplib::Result get(const std::string& path, httplib::Headers h = {}) {
    return cli.Get(path.c_str(), h);
  }
  httplib::Client cli;
};

// The OpenAI error object of an answer, checked for its shape.
json error_of(const httplib::Result& r, int status) {
  REQUIRE(r);
  INFO(r->body);
  CHECK(r->status == status);
  CHECK_THAT(r->get_header_value("Content-Type"), StartsWith("application/json"));
  const json j = json::parse(r->body);
  REQUIRE(j.contains("error"));
  const json& e = j["error"];
  CHECK(e["message"].is_string());
  CHECK(e["type"].is_string());
  CHECK(e.contains("param"));
  CHECK(e.contains("code"));
  return e;
}

// The JSON of each `data:` event up to [DONE] (which must end the stream).
std::vector<json> sse(const std::string& body) {
  std::vector<json> out;
  size_t pos = 0;
  bool done = false;
  while (pos < body.size()) {
    const size_t end = body.find("\n\n", pos);
    REQUIRE(end != std::string::npos);
    const std::string ev = body.substr(pos, end - pos);
    REQUIRE(ev.rfind("data: ", 0) == 0);
    pos = end + 2;
    if (ev == "data: [DONE]") {
      done = true;
      CHECK(pos == body.size());
      break;
    }
    out.push_back(json::parse(ev.substr(6)));
  }
  CHECK(done);
  return out;
}

std::string chat_text(const std::vector<json>& chunks) {
  std::string s;
  for (const json& c : chunks) {
    if (!c["choices"].empty() && c["choices"][0]["delta"].contains("content")) {
      s += c["choices"][0]["delta"]["content"].get<std::string>();
    }
  }
  return s;
}

std::string words(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    s += 'w';  // piece by piece: `"w" + std::string` trips GCC 12's -Wrestrict false positive
    s += std::to_string(i);
    s += ' ';
  }
  return s;
}

// Polls `done` until it holds or `limit` passes. The server finishes its bookkeeping (request
// counters, in_flight) just after the client has the last byte, so tests wait for it.
template <typename F>
bool eventually(F done, std::chrono::seconds limit = std::chrono::seconds(30)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// A raw connection that sends one request and can go away mid-answer.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  }
  ~RawClient() { close(); }
  void send_post(const std::string& path, const json& body) {
    const std::string b = body.dump();
    const std::string req =
        "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(b.size()) +
        "\r\n\r\n" + b;
    REQUIRE(::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  }
  // Reads until `needle` arrived (true) or the time is up.
  bool read_until(const std::string& needle, std::chrono::seconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      if (got_.find(needle) != std::string::npos) return true;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return got_.find(needle) != std::string::npos;
      got_.append(buf, static_cast<size_t>(n));
    }
    return false;
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  std::string got_;
};

}  // namespace

TEST_CASE("serve addresses", "[http]") {
  auto a = tpinfer::parse_serve_address("0.0.0.0:8000");
  CHECK(a.host == "0.0.0.0");
  CHECK(a.port == 8000);
  a = tpinfer::parse_serve_address(":9000");
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 9000);
  a = tpinfer::parse_serve_address("8080");
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 8080);
  a = tpinfer::parse_serve_address("[::1]:7000");
  CHECK(a.host == "::1");
  CHECK(a.port == 7000);
  for (const char* bad : {"", "host", "host:", "host:99999", "host:80x", ":", "a:b:1", "[::1]"}) {
    INFO(bad);
    CHECK_THROWS_WITH(tpinfer::parse_serve_address(bad),
                      StartsWith("key 'serve': expected HOST:PORT") &&
                          Contains(std::string("found '") + bad + "'"));
  }
}

TEST_CASE("completions and chat, not streaming", "[http]") {
  FakeService service;
  HttpServer server(service, local());
  server.start();
  REQUIRE(server.port() > 0);
  Client c(server.port());

  auto r = c.post("/v1/completions", {{"model", "fake-model"}, {"prompt", "one two three"}});
  REQUIRE(r);
  REQUIRE(r->status == 200);
  CHECK_THAT(r->get_header_value("Content-Type"), StartsWith("application/json"));
  json j = json::parse(r->body);
  CHECK_THAT(j["id"].get<std::string>(), StartsWith("cmpl-"));
  CHECK(j["object"] == "text_completion");
  CHECK(j["model"] == "fake-model");
  CHECK(j["choices"][0]["text"] == "one two three ");
  CHECK(j["choices"][0]["finish_reason"] == "stop");
  CHECK(j["usage"] == json{{"prompt_tokens", 3}, {"completion_tokens", 3}, {"total_tokens", 6}});

  r = c.post("/v1/chat/completions",
             {{"messages", {{{"role", "user"}, {"content", "a b c d"}}}}, {"max_tokens", 2}});
  REQUIRE(r);
  REQUIRE(r->status == 200);
  j = json::parse(r->body);
  CHECK_THAT(j["id"].get<std::string>(), StartsWith("chatcmpl-"));
  CHECK(j["object"] == "chat.completion");
  CHECK(j["choices"][0]["message"] == json{{"role", "assistant"}, {"content", "a b "}});
  CHECK(j["choices"][0]["finish_reason"] == "length");
  CHECK(j["usage"]["completion_tokens"] == 2);

  // Logprobs in each endpoint's form.
  r = c.post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "x y"}}}},
                                      {"logprobs", true},
                                      {"top_logprobs", 2}});
  REQUIRE(r);
  REQUIRE(r->status == 200);
  j = json::parse(r->body);
  const json& content = j["choices"][0]["logprobs"]["content"];
  REQUIRE(content.size() == 2);
  CHECK(content[0]["token"] == "x ");
  CHECK(content[0]["bytes"] == json{'x', ' '});
  CHECK(content[0]["top_logprobs"].size() == 2);
  r = c.post("/v1/completions", {{"prompt", "x y"}, {"logprobs", 1}});
  REQUIRE(r);
  j = json::parse(r->body);
  CHECK(j["choices"][0]["logprobs"]["tokens"] == json{"x ", "y "});
  CHECK(j["choices"][0]["logprobs"]["text_offset"] == json{0, 2});

  // A request that fails in the model: 500 server_error.
  const json e = error_of(c.post("/v1/completions", {{"prompt", "__fail__ now"}}), 500);
  CHECK(e["type"] == "server_error");
  CHECK_THAT(e["message"].get<std::string>(), Contains("failed on purpose"));
}

TEST_CASE("models, health and metrics", "[http]") {
  FakeService service;
  HttpServer server(service, local());
  server.start();
  Client c(server.port());
  auto r = c.get("/v1/models");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  CHECK(json::parse(r->body) == json{{"object", "list"},
                                     {"data",
                                      {{{"id", "fake-model"},
                                        {"object", "model"},
                                        {"created", 1700000000},
                                        {"owned_by", "tpinfer"},
                                        {"max_model_len", 2048}}}}});
  r = c.get("/v1/models/fake-model");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(error_of(c.get("/v1/models/other"), 404)["code"] == "model_not_found");
  r = c.get("/health");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(json::parse(r->body)["status"] == "ok");

  REQUIRE(c.post("/v1/completions", {{"prompt", "a b"}, {"stream", true}}));
  REQUIRE(c.post("/v1/completions", {{"prompt", "a b"}}));
  error_of(c.post("/v1/completions", {{"prompt", 1}}), 400);
  // Each connection's thread counts its answer after writing it: wait until all three are in.
  CHECK(eventually([&] {
    r = c.get("/metrics");
    return r && r->body.find("code=\"400\"} 1") != std::string::npos &&
           r->body.find("code=\"200\"} 2") != std::string::npos;
  }));
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK_THAT(r->get_header_value("Content-Type"), StartsWith("text/plain; version=0.0.4"));
  CHECK_THAT(r->body,
             Contains("tpinfer_requests_total{endpoint=\"/v1/completions\",code=\"200\"} 2"));
  CHECK_THAT(r->body,
             Contains("tpinfer_requests_total{endpoint=\"/v1/completions\",code=\"400\"} 1"));
  CHECK_THAT(r->body, Contains("tpinfer_prompt_tokens_total 4\n"));
  CHECK_THAT(r->body, Contains("tpinfer_generation_tokens_total 4\n"));
  CHECK_THAT(r->body, Contains("tpinfer_time_to_first_token_seconds_count 2\n"));
  CHECK_THAT(r->body, Contains("tpinfer_inter_token_latency_seconds_count 2\n"));
  CHECK_THAT(r->body, Contains("tpinfer_e2e_request_latency_seconds_count 2\n"));
  CHECK_THAT(r->body, Contains("tpinfer_slots 1000\n"));
  // The KV cache's series, from the service's counters.
  CHECK_THAT(r->body,
             Contains("# TYPE tpinfer_kv_blocks_total gauge\ntpinfer_kv_blocks_total 64\n"));
  CHECK_THAT(r->body, Contains("tpinfer_kv_blocks_used 10\n"));
  CHECK_THAT(r->body, Contains("tpinfer_kv_blocks_free 54\n"));
  CHECK_THAT(r->body, Contains("tpinfer_kv_blocks_cached 5\n"));
  CHECK_THAT(r->body, Contains("# TYPE tpinfer_prefix_cache_queries_tokens_total counter\n"
                               "tpinfer_prefix_cache_queries_tokens_total 1000\n"));
  CHECK_THAT(r->body, Contains("tpinfer_prefix_cache_hits_tokens_total 750\n"));
  CHECK_THAT(r->body,
             Contains("# TYPE tpinfer_preemptions_total counter\ntpinfer_preemptions_total 2\n"));
}

TEST_CASE("streaming: both endpoints, include_usage, logprobs, no compression", "[http]") {
  FakeService service;
  HttpServer server(service, local());
  server.start();
  Client c(server.port());

  // Python clients send Accept-Encoding: gzip; the events must still leave uncompressed.
  auto r = c.post("/v1/chat/completions",
                  {{"messages", {{{"role", "user"}, {"content", "hello there world"}}}},
                   {"stream", true},
                   {"stream_options", {{"include_usage", true}}}},
                  {{"Accept-Encoding", "gzip, deflate, br"}});
  REQUIRE(r);
  REQUIRE(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "text/event-stream");
  CHECK_FALSE(r->has_header("Content-Encoding"));
  auto chunks = sse(r->body);
  REQUIRE(chunks.size() == 1 + 3 + 1 + 1);
  CHECK(chunks[0]["choices"][0]["delta"] == json{{"role", "assistant"}, {"content", ""}});
  CHECK(chat_text(chunks) == "hello there world ");
  for (size_t i = 0; i + 1 < chunks.size(); ++i) {
    CHECK(chunks[i]["object"] == "chat.completion.chunk");
    CHECK(chunks[i]["id"] == chunks[0]["id"]);
    CHECK(chunks[i]["usage"].is_null());
  }
  CHECK(chunks[4]["choices"][0]["finish_reason"] == "stop");
  CHECK(chunks[4]["choices"][0]["delta"] == json::object());
  CHECK(chunks[5]["choices"] == json::array());
  CHECK(chunks[5]["usage"] ==
        json{{"prompt_tokens", 3}, {"completion_tokens", 3}, {"total_tokens", 6}});

  r = c.post("/v1/completions",
             {{"prompt", "p q r s"}, {"stream", true}, {"max_tokens", 3}, {"logprobs", 2}});
  REQUIRE(r);
  REQUIRE(r->status == 200);
  chunks = sse(r->body);
  REQUIRE(chunks.size() == 3 + 1);
  std::string text;
  for (size_t i = 0; i < 3; ++i) {
    CHECK(chunks[i]["object"] == "text_completion");
    CHECK_FALSE(chunks[i].contains("usage"));
    text += chunks[i]["choices"][0]["text"].get<std::string>();
    const json& lp = chunks[i]["choices"][0]["logprobs"];
    CHECK(lp["tokens"].size() == 1);
    CHECK(lp["top_logprobs"][0].size() == 2);
    CHECK(lp["text_offset"] == json{2 * i});
  }
  CHECK(text == "p q r ");
  CHECK(chunks[3]["choices"][0]["finish_reason"] == "length");

  // A stream whose request fails: an error event, then [DONE].
  r = c.post("/v1/chat/completions",
             {{"messages", {{{"role", "user"}, {"content", "__fail__ x"}}}}, {"stream", true}});
  REQUIRE(r);
  REQUIRE(r->status == 200);
  chunks = sse(r->body);
  REQUIRE_FALSE(chunks.empty());
  CHECK(chunks.back()["error"]["type"] == "server_error");
}

TEST_CASE("n choices: listed by index, streamed interleaved, one [DONE]", "[http][n]") {
  FakeService service;
  HttpServer server(service, local());
  server.start();
  Client c(server.port());

  auto r = c.post("/v1/completions", {{"prompt", "a b c"}, {"n", 3}, {"logprobs", 1}});
  REQUIRE(r);
  REQUIRE(r->status == 200);
  json j = json::parse(r->body);
  REQUIRE(j["choices"].size() == 3);
  for (int i = 0; i < 3; ++i) {
    CHECK(j["choices"][i]["index"] == i);
    CHECK(j["choices"][i]["text"] == "a b c ");
    CHECK(j["choices"][i]["logprobs"]["tokens"].size() == 3);
  }
  // The prompt counted once, the completion tokens of every choice.
  CHECK(j["usage"] == json{{"prompt_tokens", 3}, {"completion_tokens", 9}, {"total_tokens", 12}});

  r = c.post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "x y"}}}},
                                      {"n", 2},
                                      {"stream", true},
                                      {"stream_options", {{"include_usage", true}}}});
  REQUIRE(r);
  REQUIRE(r->status == 200);
  CHECK(r->body.find("[DONE]") == r->body.rfind("[DONE]"));  // exactly one
  const auto chunks = sse(r->body);
  std::string text[2];
  int finished[2] = {0, 0};
  for (const json& ch : chunks) {
    if (ch["choices"].empty()) continue;  // the usage chunk
    const int i = ch["choices"][0]["index"].get<int>();
    REQUIRE((i == 0 || i == 1));
    const json& d = ch["choices"][0]["delta"];
    if (d.contains("content")) text[i] += d["content"].get<std::string>();
    if (!ch["choices"][0]["finish_reason"].is_null()) ++finished[i];
  }
  CHECK(text[0] == "x y ");
  CHECK(text[1] == "x y ");
  CHECK(finished[0] == 1);
  CHECK(finished[1] == 1);
  CHECK(chunks.back()["usage"] ==
        json{{"prompt_tokens", 2}, {"completion_tokens", 4}, {"total_tokens", 6}});

  auto m = c.get("/metrics");
  REQUIRE(m);
  // The prompts counted once per request: 3 + 2; completion tokens of every choice: 9 + 4.
  CHECK_THAT(m->body, Contains("tpinfer_prompt_tokens_total 5\n"));
  CHECK_THAT(m->body, Contains("tpinfer_generation_tokens_total 13\n"));
}

TEST_CASE("error answers in OpenAI's JSON, and the server keeps serving", "[http]") {
  FakeService service(std::chrono::milliseconds(20), /*max_running=*/1);
  HttpServer server(service, local(/*max_body=*/2048, /*key=*/"sekret"));
  server.start();
  Client c(server.port());
  const httplib::Headers auth = {{"Authorization", "Bearer sekret"}};
  const json ok_body = {{"prompt", "a b"}};

  SECTION("401 without or with a wrong key, on /v1 only") {
    json e = error_of(c.post("/v1/completions", ok_body), 401);
    CHECK(e["code"] == "invalid_api_key");
    CHECK(e["type"] == "invalid_request_error");
    e = error_of(c.post("/v1/completions", ok_body, {{"Authorization", "Bearer nope"}}), 401);
    CHECK_THAT(e["message"].get<std::string>(), Contains("Incorrect API key"));
    error_of(c.get("/v1/models"), 401);
    auto r = c.get("/health");
    REQUIRE(r);
    CHECK(r->status == 200);
    r = c.get("/metrics");
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  SECTION("400 for malformed JSON and for a bad field") {
    json e = error_of(c.post_raw("/v1/chat/completions", "{\"messages\": [", auth), 400);
    CHECK_THAT(e["message"].get<std::string>(), StartsWith("the request body is not valid JSON"));
    e = error_of(c.post("/v1/completions", {{"prompt", "x"}, {"temperature", "hot"}}, auth), 400);
    CHECK(e["param"] == "temperature");
    CHECK(e["message"] == "'temperature': expected a number, found a string");
    e = error_of(c.post("/v1/completions", {{"prompt", "x"}, {"n", 129}}, auth), 400);
    CHECK(e["param"] == "n");
    CHECK(e["message"] == "'n': expected an integer in [1, 128], found 129");
  }
  SECTION("404 for an unknown model and an unknown route, 405 for a wrong method") {
    json e = error_of(c.post("/v1/completions", {{"prompt", "x"}, {"model", "gpt-9"}}, auth), 404);
    CHECK(e["code"] == "model_not_found");
    CHECK_THAT(e["message"].get<std::string>(), Contains("gpt-9"));
    e = error_of(c.post("/v1/embeddings", ok_body, auth), 404);
    CHECK_THAT(e["message"].get<std::string>(), Contains("Invalid URL (POST /v1/embeddings)"));
    error_of(c.get("/nothing/here"), 404);
    auto r = c.get("/v1/completions", auth);
    e = error_of(r, 405);
    CHECK(r->get_header_value("Allow") == "POST");
    error_of(c.post("/health", ok_body), 405);
  }
  SECTION("413 for a body over the limit") {
    const json big = {{"prompt", std::string(4096, 'x')}};
    const json e = error_of(c.post("/v1/completions", big, auth), 413);
    CHECK_THAT(e["message"].get<std::string>(), Contains("2048 bytes"));
  }
  SECTION("429 when the service's queue is full") {
    int slow_status = 0;  // Catch2 assertions stay on the main thread
    std::thread slow([&] {
      Client c2(server.port());
      auto r = c2.post("/v1/completions", {{"prompt", words(100)}}, auth);
      if (r) slow_status = r->status;
    });
    REQUIRE(service.wait_running(1, 60s));
    const json e = error_of(c.post("/v1/completions", ok_body, auth), 429);
    CHECK(e["type"] == "requests");
    CHECK_THAT(e["message"].get<std::string>(), Contains("queue is full"));
    slow.join();
    CHECK(slow_status == 200);
  }
  // After every error the server still answers.
  auto r = c.post("/v1/completions", ok_body, auth);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(json::parse(r->body)["choices"][0]["text"] == "a b ");
}

TEST_CASE("a client that disconnects cancels its request", "[http]") {
  FakeService service(std::chrono::milliseconds(50));
  HttpServer server(service, local());
  server.start();

  SECTION("mid-stream") {
    RawClient raw(server.port());
    raw.send_post("/v1/chat/completions",
                  {{"messages", {{{"role", "user"}, {"content", words(2000)}}}}, {"stream", true}});
    REQUIRE(raw.read_until("\"content\":\"w1 \"", 60s));  // a few tokens streamed
    raw.close();
    CHECK(service.wait_cancelled(1, 30s) == 1);
  }
  SECTION("mid-stream, with n choices: every choice stops") {
    RawClient raw(server.port());
    raw.send_post("/v1/completions", {{"prompt", words(2000)}, {"n", 3}, {"stream", true}});
    REQUIRE(raw.read_until("\"text\":\"w1 \"", 60s));
    raw.close();
    CHECK(service.wait_cancelled(1, 30s) == 1);
  }
  SECTION("while waiting for a non-streaming answer") {
    RawClient raw(server.port());
    raw.send_post("/v1/completions", {{"prompt", words(2000)}});
    REQUIRE(service.wait_running(1, 60s));
    std::this_thread::sleep_for(200ms);
    raw.close();
    CHECK(service.wait_cancelled(1, 30s) == 1);
  }
  // The slot is free and the server serves on.
  Client c(server.port());
  auto r = c.post("/v1/completions", {{"prompt", "still here"}});
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(eventually([&] {
    r = c.get("/metrics");
    return r && r->body.find("tpinfer_requests_running 0\n") != std::string::npos;
  }));
}

TEST_CASE("32 concurrent streaming clients all complete", "[http]") {
  FakeService service(std::chrono::milliseconds(10));
  HttpServer server(service, local());
  server.start();
  constexpr int kClients = 32;
  std::vector<std::string> texts(kClients);
  std::vector<int> statuses(kClients, 0);
  std::vector<std::string> errors(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      Client c(server.port());
      const std::string prompt = "client" + std::to_string(i) + " " + words(20);
      auto r = c.post("/v1/chat/completions",
                      {{"messages", {{{"role", "user"}, {"content", prompt}}}}, {"stream", true}});
      if (!r) {
        errors[i] = httplib::to_string(r.error());
        return;
      }
      statuses[i] = r->status;
      texts[i] = r->body;
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) {
    INFO("client " << i << " " << errors[i]);
    REQUIRE(statuses[i] == 200);
    CHECK(chat_text(sse(texts[i])) == "client" + std::to_string(i) + " " + words(20));
  }
  CHECK(eventually([&] { return server.in_flight() == 0; }));
}

TEST_CASE("graceful shutdown: 503 for new requests while a stream completes", "[http]") {
  FakeService service(std::chrono::milliseconds(20));
  HttpServer server(service, local());
  server.start();
  std::string streamed;
  std::thread open_stream([&] {
    Client c(server.port());
    auto r = c.post("/v1/completions", {{"prompt", words(60)}, {"stream", true}});
    if (r) streamed = r->body;
  });
  REQUIRE(service.wait_running(1, 60s));
  CHECK(eventually([&] { return server.in_flight() == 1; }));
  server.begin_shutdown();
  Client c(server.port());
  const json e = error_of(c.post("/v1/completions", {{"prompt", "late"}}), 503);
  CHECK(e["type"] == "server_error");
  auto r = c.get("/health");
  REQUIRE(r);
  CHECK(r->status == 503);
  open_stream.join();
  std::string text;
  for (const json& ch : sse(streamed)) text += ch["choices"][0]["text"].get<std::string>();
  CHECK(text == words(60));
  CHECK(eventually([&] { return server.in_flight() == 0; }));
  server.stop();
  server.stop();  // idempotent
}

TEST_CASE("a port in use is an error naming it", "[http]") {
  FakeService service;
  HttpServer first(service, local());
  first.start();
  HttpServerOptions o = local();
  o.port = first.port();
  HttpServer second(service, o);
  CHECK_THROWS_AS(second.start(), tpinfer::Error);
  try {
    second.start();
  } catch (const tpinfer::Error& e) {
    CHECK_THAT(std::string(e.what()),
               Contains("cannot listen on 127.0.0.1:" + std::to_string(first.port())));
  }
}

TEST_CASE("several prompts in one completions request; tokenizer endpoints", "[http]") {
  FakeService service;
  HttpServer server(service, local());
  server.start();
  Client c(server.port());

  auto r = c.post("/v1/completions", {{"prompt", {"one two", "three four five"}}, {"echo", true}});
  REQUIRE(r);
  REQUIRE(r->status == 200);
  json j = json::parse(r->body);
  REQUIRE(j["choices"].size() == 2);
  CHECK(j["choices"][0]["index"] == 0);
  CHECK(j["choices"][0]["text"] == "one twoone two ");  // echo: the prompt, then the completion
  CHECK(j["choices"][1]["index"] == 1);
  CHECK(j["choices"][1]["text"] == "three four fivethree four five ");
  CHECK(j["usage"]["prompt_tokens"] == 5);
  CHECK(service.submitted() == 2);

  // This service has no tokenizer: the endpoints answer OpenAI's error JSON.
  r = c.post("/tokenize", {{"prompt", "x"}});
  REQUIRE(r);
  CHECK(r->status == 501);
  CHECK(json::parse(r->body)["error"]["message"] == "this server has no tokenizer");
  r = c.post("/tokenize", {{"prompt", 3}});
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(json::parse(r->body)["error"]["param"] == "prompt");
  r = c.post("/detokenize", {{"tokens", {1, -2}}});
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK_THAT(json::parse(r->body)["error"]["message"].get<std::string>(),
             Contains("'tokens[1]': expected a token id"));
  auto g = c.cli.Get("/tokenizer_info");
  REQUIRE(g);
  CHECK(g->status == 501);
  r = c.post("/tokenizer_info", {{"x", 1}});
  REQUIRE(r);
  CHECK(r->status == 405);
}
