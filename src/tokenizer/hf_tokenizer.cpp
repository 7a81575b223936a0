#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "core/error.h"
#include "tokenizer/json_scan.h"
#include "tokenizer/unicode_util.h"

namespace tpinfer {

namespace tok {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  TPI_CHECK(f.good(), "tokenizer: cannot open " << path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::json parse_json_file(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    TPI_FAIL(path << ": not valid JSON (" << e.what() << ")");
  }
}

// A special-token field of tokenizer_config.json: "text", {"content": "text", ...} or null.
std::string token_field(const nlohmann::json& cfg, const char* key) {
  if (!cfg.contains(key)) return {};
  const auto& v = cfg.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v.at("content").is_string()) {
    return v.at("content").get<std::string>();
  }
  return {};
}

// Rust char::is_alphanumeric || '_' on the last / first character.
bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t start = s.size() - 1;
  while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
  size_t i = start;
  const uint32_t cp = next_cp(s, i);
  return cp == '_' || is_alphanumeric(cp);
}
bool starts_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t i = 0;
  const uint32_t cp = next_cp(s, i);
  return cp == '_' || is_alphanumeric(cp);
}

}  // namespace

// ---- added tokens
// ---------------------------------------------------------------------------------

int32_t AddedTokenMatcher::child(int32_t node, uint8_t b) const {
  const auto& nx = nodes_[static_cast<size_t>(node)].next;
  auto it = std::lower_bound(nx.begin(), nx.end(), std::make_pair(b, int32_t{-1}));
  return it != nx.end() && it->first == b ? it->second : -1;
}

void AddedTokenMatcher::build(std::vector<std::pair<std::string, size_t>> patterns) {
  nodes_.assign(1, Node{});
  std::fill(std::begin(first_byte_), std::end(first_byte_), false);
  for (const auto& [text, index] : patterns) {
    if (text.empty()) continue;
    int32_t node = 0;
    for (char ch : text) {
      const auto b = static_cast<uint8_t>(ch);
      int32_t c = child(node, b);
      if (c < 0) {
        c = static_cast<int32_t>(nodes_.size());
        nodes_.push_back(Node{});
        auto& nx = nodes_[static_cast<size_t>(node)].next;
        nx.insert(std::lower_bound(nx.begin(), nx.end(), std::make_pair(b, int32_t{-1})),
                  std::make_pair(b, c));
      }
      node = c;
    }
    if (nodes_[static_cast<size_t>(node)].token < 0) {
      nodes_[static_cast<size_t>(node)].token = static_cast<int32_t>(index);
    }
    first_byte_[static_cast<uint8_t>(text[0])] = true;
  }
}

void AddedTokenMatcher::split(std::string_view s, const std::vector<AddedToken>& tokens,
                              std::vector<std::tuple<size_t, size_t, int>>& parts) const {
  parts.clear();
  const size_t n = s.size();
  size_t start_offset = 0;
  size_t pos = 0;
  while (!empty() && pos < n) {
    // Leftmost start, longest match there.
    size_t mstart = n, mend = 0;
    int mtok = -1;
    for (size_t i = pos; i < n; ++i) {
      if (!first_byte_[static_cast<uint8_t>(s[i])]) continue;
      int32_t node = 0;
      for (size_t j = i; j < n; ++j) {
        node = child(node, static_cast<uint8_t>(s[j]));
        if (node < 0) break;
        if (nodes_[static_cast<size_t>(node)].token >= 0) {
          mend = j + 1;
          mtok = nodes_[static_cast<size_t>(node)].token;
        }
      }
      if (mtok >= 0) {
        mstart = i;
        break;
      }
    }
    if (mtok < 0) break;
    pos = mend;
    const AddedToken& t = tokens[static_cast<size_t>(mtok)];
    size_t start = mstart, stop = mend;
    if (t.single_word) {
      const bool start_space = start == 0 || !ends_with_word(s.substr(0, start));
      const bool stop_space = stop == n || !starts_with_word(s.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) {
      size_t ns = start;
      while (ns > 0) {
        size_t b = ns - 1;
        while (b > 0 && (static_cast<uint8_t>(s[b]) & 0xC0) == 0x80) --b;
        size_t i = b;
        if (!is_whitespace(next_cp(s, i))) break;
        ns = b;
      }
      start = std::max(ns, start_offset);
    }
    if (t.rstrip) {
      while (stop < n) {
        size_t i = stop;
        if (!is_whitespace(next_cp(s, i))) break;
        stop = i;
      }
    }
    start = std::max(start, start_offset);
    if (start > start_offset) parts.emplace_back(start_offset, start, -1);
    parts.emplace_back(start, stop, mtok);
    start_offset = stop;
    pos = std::max(pos, stop);
  }
  if (start_offset < n) parts.emplace_back(start_offset, n, -1);
}

// ---- loading
// ----------------------------------------------------------------------------------------

HfTokenizer::HfTokenizer(const std::string& json_path, const std::string& config_path)
    : where_(json_path) {
  // The model (most of the file) is streamed by BpeModel; the other members are small and parsed
  // with nlohmann.
  const std::string text = read_file(json_path);
  JsonScanner top(text, json_path);
  nlohmann::json j = nlohmann::json::object();
  std::string_view model_text;
  if (top.peek() != '{') top.fail("expected a tokenizer.json object");
  for (const auto& [key, value] : top.members()) {
    if (key == "model") {
      model_text = value;
      continue;
    }
    try {
      j[key] = nlohmann::json::parse(value);
    } catch (const nlohmann::json::exception& e) {
      TPI_FAIL(json_path << ": " << key << " is not valid JSON (" << e.what() << ")");
    }
  }
  TPI_CHECK(top.at_end(), json_path << ": not valid JSON (text after the top-level object)");
  TPI_CHECK(!model_text.empty(),
            json_path << ": expected a tokenizer.json object with a \"model\"");
  try {
    normalizer_ = make_normalizer(j.value("normalizer", nlohmann::json()), where_);
    bool byte_level = false;
    pre_tokenizer_ =
        make_pre_tokenizer(j.value("pre_tokenizer", nlohmann::json()), where_, &byte_level);
    model_ = std::make_unique<BpeModel>(model_text, byte_level, where_);
    post_processor_ = make_post_processor(j.value("post_processor", nlohmann::json()), where_);
    decoder_ = make_decoder(j.value("decoder", nlohmann::json()), where_, decoder_traits_);
  } catch (const nlohmann::json::exception& e) {
    TPI_FAIL(json_path << ": unexpected structure (" << e.what() << ")");
  }

  // Added tokens. An added token whose content is in the model's vocabulary keeps that id (as
  // AddedVocabulary::add_tokens does).
  int32_t max_id = model_->id_limit() - 1;
  if (j.contains("added_tokens") && j.at("added_tokens").is_array()) {
    for (const auto& a : j.at("added_tokens")) {
      AddedToken t;
      t.content = a.at("content").get<std::string>();
      t.id = a.at("id").get<int32_t>();
      t.single_word = a.value("single_word", false);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.normalized = a.value("normalized", !a.value("special", false));
      t.special = a.value("special", false);
      if (t.content.empty()) continue;
      if (const int32_t mid = model_->token_to_id().find(t.content); mid >= 0) t.id = mid;
      TPI_CHECK(t.id >= 0, json_path << ": added token '" << t.content << "' has a negative id");
      max_id = std::max(max_id, t.id);
      added_.push_back(std::move(t));
    }
  }
  vocab_size_ = max_id + 1;
  added_index_.assign(static_cast<size_t>(vocab_size_), -1);
  special_.assign(static_cast<size_t>(vocab_size_), 0);
  std::vector<std::pair<std::string, size_t>> raw_patterns, norm_patterns;
  for (size_t k = 0; k < added_.size(); ++k) {
    AddedToken& t = added_[k];
    t.as_token = t.content;
    added_index_[static_cast<size_t>(t.id)] = static_cast<int32_t>(k);
    if (t.special) special_[static_cast<size_t>(t.id)] = 1;
    if (t.normalized) {
      std::string c = t.content;
      if (normalizer_) normalizer_->apply(c);
      added_[k].as_token = c;
      norm_patterns.emplace_back(std::move(c), k);
    } else {
      raw_patterns.emplace_back(t.content, k);
    }
  }
  raw_matcher_.build(std::move(raw_patterns));
  norm_matcher_.build(std::move(norm_patterns));
  byte_token_.assign(static_cast<size_t>(vocab_size_), 0);
  for (int32_t id = 0; id < vocab_size_; ++id) {
    if (added_index_[static_cast<size_t>(id)] >= 0) continue;
    if (id < model_->id_limit() &&
        byte_fallback_value(model_->id_to_token()[static_cast<size_t>(id)]) >= 0) {
      byte_token_[static_cast<size_t>(id)] = 1;
    }
  }

  // tokenizer_config.json: BOS / EOS names and the chat template.
  std::string chat_text, bos, eos;
  std::vector<std::pair<std::string, std::string>> special_tokens;
  if (!config_path.empty()) {
    const nlohmann::json cfg = parse_json_file(config_path);
    TPI_CHECK(cfg.is_object(), config_path << ": expected a JSON object");
    bos = token_field(cfg, "bos_token");
    eos = token_field(cfg, "eos_token");
    // The special tokens transformers passes to chat templates (its special_tokens_map).
    for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                            "cls_token", "mask_token"}) {
      const std::string v = token_field(cfg, key);
      if (!v.empty()) special_tokens.emplace_back(key, v);
    }
    if (!bos.empty()) {
      bos_id_ = token_to_id(bos);
      TPI_CHECK(bos_id_.has_value(),
                config_path << ": bos_token '" << bos << "' is not a token of " << json_path);
    }
    if (!eos.empty()) {
      auto id = token_to_id(eos);
      TPI_CHECK(id.has_value(),
                config_path << ": eos_token '" << eos << "' is not a token of " << json_path);
      eos_ids_.push_back(*id);
    }
    if (cfg.contains("chat_template") && !cfg.at("chat_template").is_null()) {
      const auto& ct = cfg.at("chat_template");
      if (ct.is_string()) {
        chat_text = ct.get<std::string>();
      } else if (ct.is_array()) {  // [{"name": "default", "template": ...}, ...]
        for (const auto& e : ct) {
          if (e.value("name", "") == "default") chat_text = e.value("template", "");
        }
        TPI_CHECK(!chat_text.empty(), config_path << ": chat_template is a list without a "
                                                     "\"default\" entry");
      } else {
        TPI_FAIL(config_path << ": chat_template must be a string or a list of named templates");
      }
    }
  }
  // Newer checkpoints ship the template as chat_template.jinja beside the config; transformers
  // prefers that file.
  std::string chat_where =
      config_path.empty() ? json_path + " (no tokenizer_config.json)" : config_path;
  const std::filesystem::path jinja_file =
      std::filesystem::path(config_path.empty() ? json_path : config_path).parent_path() /
      "chat_template.jinja";
  if (std::filesystem::is_regular_file(jinja_file)) {
    std::ifstream in(jinja_file, std::ios::binary);
    TPI_CHECK(in, jinja_file.string() << ": cannot read");
    chat_text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    chat_where = jinja_file.string();
  }
  chat_.init(std::move(chat_text), std::move(special_tokens), chat_where);
}

// ---- encode
// ---------------------------------------------------------------------------------------

namespace {
// Buffers reused across encode calls on a thread.
struct EncodeScratch {
  Pieces pieces;
  std::vector<std::tuple<size_t, size_t, int>> parts, norm_parts;
  std::string normalized;
};
EncodeScratch& encode_scratch() {
  thread_local EncodeScratch s;
  return s;
}
}  // namespace

void HfTokenizer::encode_text(std::string_view text, bool at_start, std::vector<int32_t>& ids,
                              Pieces& pieces, bool use_cache) const {
  EncodeScratch& sc = encode_scratch();
  std::string_view norm = text;
  if (normalizer_) {
    sc.normalized.assign(text.data(), text.size());
    normalizer_->apply(sc.normalized);
    norm = sc.normalized;
  }
  if (norm.empty()) return;
  auto& parts = sc.norm_parts;
  parts.clear();
  if (norm_matcher_.empty()) {
    parts.emplace_back(0, norm.size(), -1);
  } else {
    norm_matcher_.split(norm, added_, parts);
  }
  for (const auto& [b, e, tok] : parts) {
    if (tok >= 0) {
      ids.push_back(added_[static_cast<size_t>(tok)].id);
      continue;
    }
    if (e <= b) continue;
    pieces.reset(norm.substr(b, e - b));
    if (pre_tokenizer_) pre_tokenizer_->apply(pieces, at_start && b == 0);
    for (const auto& [pb, pe] : pieces.spans) {
      model_->encode_piece(std::string_view(pieces.buf.data() + pb, pe - pb), ids, use_cache);
    }
  }
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool add_special) const {
  std::string sanitized;
  if (!is_valid_utf8(text)) {
    sanitized = utf8_lossy(text);
    text = sanitized;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::unique_lock<std::mutex> cache_lock(model_->cache_mutex(), std::try_to_lock);
  const bool use_cache = cache_lock.owns_lock();
  EncodeScratch& sc = encode_scratch();
  auto& parts = sc.parts;
  parts.clear();
  if (raw_matcher_.empty()) {
    if (!text.empty()) parts.emplace_back(0, text.size(), -1);
  } else {
    raw_matcher_.split(text, added_, parts);
  }
  for (const auto& [b, e, tok] : parts) {
    if (tok >= 0) {
      ids.push_back(added_[static_cast<size_t>(tok)].id);
    } else if (e > b) {
      encode_text(text.substr(b, e - b), b == 0, ids, sc.pieces, use_cache);
    }
  }
  if (add_special && post_processor_) post_processor_->apply(ids);
  return ids;
}

// ---- decode
// ---------------------------------------------------------------------------------------

void HfTokenizer::check_id(int32_t id) const {
  TPI_CHECK(id >= 0 && id < vocab_size_,
            "tokenizer: id " << id << " is out of range [0, " << vocab_size_ << ") for " << where_);
}

const std::string& HfTokenizer::token_text(int32_t id) const {
  check_id(id);
  const int32_t a = added_index_[static_cast<size_t>(id)];
  if (a >= 0) return added_[static_cast<size_t>(a)].as_token;
  TPI_CHECK(id < model_->id_limit() && !model_->id_to_token()[static_cast<size_t>(id)].empty(),
            "tokenizer: id " << id << " has no token in " << where_);
  return model_->id_to_token()[static_cast<size_t>(id)];
}

std::string HfTokenizer::decode_raw(const int32_t* ids, size_t n, bool skip_special,
                                    bool keep_trailing) const {
  std::vector<std::string> tokens;
  tokens.reserve(n);
  for (size_t k = 0; k < n; ++k) {
    const int32_t id = ids[k];
    check_id(id);
    if (skipped(id, skip_special)) continue;
    tokens.push_back(token_text(id));
  }
  std::string out;
  if (decoder_) {
    decoder_->apply(tokens, keep_trailing);
    for (const auto& t : tokens) out += t;
  } else {
    for (size_t k = 0; k < tokens.size(); ++k) {
      if (k) out += ' ';
      out += tokens[k];
    }
  }
  return out;
}

std::string HfTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  return utf8_lossy(decode_raw(ids.data(), ids.size(), skip_special));
}

std::optional<int32_t> HfTokenizer::token_to_id(std::string_view token) const {
  for (const auto& a : added_) {
    if (a.content == token) return a.id;
  }
  const int32_t id = model_->token_to_id().find(token);
  if (id >= 0) return id;
  return std::nullopt;
}

std::string HfTokenizer::id_to_token(int32_t id) const {
  return token_text(id);
}

bool HfTokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size_ && special_[static_cast<size_t>(id)];
}

std::string HfTokenizer::apply_chat_template(const std::vector<ChatMessage>& messages,
                                             bool add_generation_prompt, bool enable_thinking,
                                             const std::string& tools_json) const {
  return chat_.render(messages, add_generation_prompt, enable_thinking, tools_json);
}

}  // namespace tok

// ---- factories
// ------------------------------------------------------------------------------------

std::unique_ptr<Tokenizer> Tokenizer::from_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path json = fs::path(dir) / "tokenizer.json";
  TPI_CHECK(fs::is_regular_file(json),
            "tokenizer: " << json.string()
                          << " not found (a Hugging Face tokenizer.json is "
                             "required; tokenizer.model / vocab.json alone are not supported)");
  const fs::path cfg = fs::path(dir) / "tokenizer_config.json";
  return from_files(json.string(), fs::is_regular_file(cfg) ? cfg.string() : std::string());
}

std::unique_ptr<Tokenizer> Tokenizer::from_files(const std::string& tokenizer_json,
                                                 const std::string& tokenizer_config_json) {
  return std::make_unique<tok::HfTokenizer>(tokenizer_json, tokenizer_config_json);
}

}  // namespace tpinfer
