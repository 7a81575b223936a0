#include "runtime/frontend/openai/batch_lines.h"

namespace tpinfer::openai {
namespace {

using json = nlohmann::json;

json base_line(const std::string& custom_id) {
  return json{{"id", "batch_req_" + random_hex(24)}, {"custom_id", custom_id}};
}

json response_part(int status, json body) {
  return json{{"status_code", status}, {"request_id", "req_" + random_hex(24)}, {"body", body}};
}

}  // namespace

BatchLineError::BatchLineError(std::string custom_id, int status, const std::string& message,
                               std::string param, std::string code)
    : std::runtime_error(message),
      custom_id(std::move(custom_id)),
      status(status),
      param(std::move(param)),
      code(std::move(code)) {}

LineFormat detect_line_format(const json& line) {
  if (!line.is_object()) return LineFormat::unknown;
  if (line.contains("custom_id") && line.contains("body")) return LineFormat::openai;
  if (line.contains("id") && (line.contains("prompt") || line.contains("messages"))) {
    return LineFormat::simple;
  }
  return LineFormat::unknown;
}

LineFormat detect_line_format(std::string_view line) {
  json j = json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded()) return LineFormat::unknown;
  return detect_line_format(j);
}

BatchLine parse_batch_line(std::string_view text, const std::string& served_model,
                           const SamplingParams& defaults) {
  json line = json::parse(text.begin(), text.end(), nullptr, false);
  if (line.is_discarded()) throw BatchLineError("", 0, "the line is not valid JSON");
  if (!line.is_object()) throw BatchLineError("", 0, "the line is not a JSON object");
  BatchLine out;
  auto it = line.find("custom_id");
  if (it == line.end()) throw BatchLineError("", 0, "'custom_id': missing");
  if (!it->is_string() || it->get<std::string>().empty()) {
    throw BatchLineError("", 0, "'custom_id': expected a non-empty string, found " + it->dump());
  }
  out.custom_id = it->get<std::string>();
  const std::string& id = out.custom_id;

  it = line.find("method");
  if (it != line.end() && !(it->is_string() && it->get<std::string>() == "POST")) {
    throw BatchLineError(id, 0, "'method': expected \"POST\", found " + it->dump(), "method",
                         "invalid_method");
  }
  it = line.find("url");
  if (it == line.end()) throw BatchLineError(id, 0, "'url': missing", "url", "invalid_url");
  Endpoint endpoint;
  if (it->is_string() && it->get<std::string>() == "/v1/completions") {
    endpoint = Endpoint::completions;
  } else if (it->is_string() && it->get<std::string>() == "/v1/chat/completions") {
    endpoint = Endpoint::chat_completions;
  } else {
    throw BatchLineError(
        id, 0,
        "'url': expected \"/v1/completions\" or \"/v1/chat/completions\", found " + it->dump(),
        "url", "invalid_url");
  }
  it = line.find("body");
  if (it == line.end()) throw BatchLineError(id, 0, "'body': missing", "body", "invalid_body");
  if (!it->is_object()) {
    throw BatchLineError(id, 0, "'body': expected an object, found " + it->dump(), "body",
                         "invalid_body");
  }
  try {
    out.request = parse_request(endpoint, *it, defaults);
    if (endpoint == Endpoint::chat_completions) {  // tools in the order the line wrote them
      const auto ordered = nlohmann::ordered_json::parse(text.begin(), text.end(), nullptr, false);
      if (ordered.is_object() && ordered.contains("body")) {
        keep_order(out.request, ordered["body"].dump());
      }
    }
    if (out.request.stream) {
      throw ApiError(400, "'stream': streaming is not available in a batch file", "stream");
    }
    if (out.request.prompts.size() > 1) {
      throw ApiError(400,
                     "'prompt': one prompt per batch line (found a list of " +
                         std::to_string(out.request.prompts.size()) + ")",
                     "prompt");
    }
    if (out.request.echo) {
      throw ApiError(400, "'echo': not available in a batch file (score prompts on the server)",
                     "echo");
    }
    if (!served_model.empty()) check_model(out.request.model, served_model);
  } catch (const ApiError& e) {
    // The field as the line names it: body.temperature.
    std::string message = e.what();
    if (!e.param.empty() && message.rfind("'" + e.param + "'", 0) == 0) {
      message = "'body." + message.substr(1);
    }
    throw BatchLineError(id, e.status, message, e.param, e.code);
  }
  return out;
}

std::string format_batch_result(const std::string& custom_id, const ResponseContext& ctx,
                                const std::vector<GenerationOutcome>& outcomes,
                                const TokenText& token_text) {
  json line = base_line(custom_id);
  try {
    line["response"] = response_part(200, format_response(ctx, outcomes, token_text));
  } catch (const ApiError& e) {
    line["response"] = response_part(e.status, error_json(e));
  }
  line["error"] = nullptr;
  return dump(line);
}

std::string format_batch_result(const std::string& custom_id, const ResponseContext& ctx,
                                const GenerationOutcome& outcome, const TokenText& token_text) {
  return format_batch_result(custom_id, ctx, std::vector<GenerationOutcome>{outcome}, token_text);
}

std::string format_batch_error(const std::string& custom_id, int status, const std::string& message,
                               const std::string& param, const std::string& code) {
  json line = base_line(custom_id);
  if (status == 0) {
    line["response"] = nullptr;
    line["error"] = {{"code", code.empty() ? "invalid_request" : code}, {"message", message}};
  } else {
    line["response"] = response_part(status, error_json(status, message, param, code));
    line["error"] = nullptr;
  }
  return dump(line);
}

std::string format_batch_error(const BatchLineError& e) {
  return format_batch_error(e.custom_id, e.status, e.what(), e.param, e.code);
}

std::optional<std::string> output_line_custom_id(std::string_view text) {
  json line = json::parse(text.begin(), text.end(), nullptr, false);
  if (line.is_discarded() || !line.is_object()) return std::nullopt;
  auto it = line.find("custom_id");
  if (it == line.end() || !it->is_string() || !line.contains("response")) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace tpinfer::openai
