// Chat templates: the text equals transformers' apply_chat_template(..., tokenize=False) for
// every golden conversation, and encoding it (add_special = false) gives the golden ids.
#include <catch2/catch.hpp>
#include <iostream>

#include "tok_test_util.h"

using tok_test::escape;

namespace {

const tpinfer::Tokenizer& chat_tokenizer(const std::string& dir, const std::string& config) {
  static std::map<std::string, std::unique_ptr<tpinfer::Tokenizer>> cache;
  auto& slot = cache[dir + "|" + config];
  if (!slot) {
    slot = tpinfer::Tokenizer::from_files(tok_test::repo(dir + "/tokenizer.json"),
                                          tok_test::repo(config));
  }
  return *slot;
}

}  // namespace

TEST_CASE("chat templates equal transformers' apply_chat_template", "[tokenizer][chat]") {
  const auto g = tok_test::read_json(tok_test::data("chat_goldens.json"));
  std::map<std::string, std::pair<int, int>> per_case;  // case -> (matched, total)
  for (const auto& c : g.at("cases")) {
    const auto& tok =
        chat_tokenizer(c.at("tokenizer").get<std::string>(), c.at("config").get<std::string>());
    std::vector<tpinfer::ChatMessage> msgs;
    for (const auto& m : c.at("messages")) {
      msgs.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
    }
    const bool gen = c.at("add_generation_prompt").get<bool>();
    const bool thinking = c.at("enable_thinking").get<bool>();
    const std::string label = c.at("case").get<std::string>();
    INFO(label << " / " << c.at("conversation").get<std::string>() << " gen=" << gen
               << " thinking=" << thinking);
    REQUIRE(tok.has_chat_template());
    auto& counts = per_case[label];
    ++counts.second;
    if (c.contains("error")) {
      try {
        tok.apply_chat_template(msgs, gen, thinking);
        FAIL("expected an error like: " << c.at("error").get<std::string>());
      } catch (const tpinfer::Error& e) {
        // The engine's message carries the template's own reason.
        CHECK_THAT(e.what(), Catch::Contains(c.at("error").get<std::string>()));
        ++counts.first;
      }
      continue;
    }
    const std::string text = tok.apply_chat_template(msgs, gen, thinking);
    const std::string want = c.at("text").get<std::string>();
    CHECK(escape(text) == escape(want));
    const auto ids = tok.encode(text, false);
    CHECK(ids == c.at("ids").get<std::vector<int32_t>>());
    counts.first += text == want && ids == c.at("ids").get<std::vector<int32_t>>();
  }
  for (const auto& [name, mt] : per_case) {
    std::cout << "chat " << name << ": " << mt.first << "/" << mt.second << " cases match\n";
  }
}

TEST_CASE("chat template errors are clear", "[tokenizer][chat]") {
  const std::vector<tpinfer::ChatMessage> hi = {{"user", "hi"}};
  // The repo's Mistral is the v0.1 base model: no chat_template.
  const auto& mistral = tok_test::tokenizer("configs/tokenizers/mistral");
  CHECK_FALSE(mistral.has_chat_template());
  CHECK_THROWS_WITH(mistral.apply_chat_template(hi), Catch::Contains("has no chat_template"));
  // stories260K has no template either.
  CHECK_THROWS_WITH(tok_test::tokenizer("configs/models/stories260K").apply_chat_template(hi),
                    Catch::Contains("no chat_template"));
  // Any other template renders with the Jinja renderer (no per-model code).
  const std::string dir = std::string(TPINFER_BUILD_DIR) + "/tokenizer_test_tmp";
  std::filesystem::create_directories(dir);
  {
    auto cfg =
        tok_test::read_json(tok_test::repo("configs/tokenizers/qwen3/tokenizer_config.json"));
    cfg["chat_template"] = "{% for m in messages %}{{ m.content }}{% endfor %}";
    std::ofstream(dir + "/tokenizer_config.json") << cfg.dump();
  }
  auto tok = tpinfer::Tokenizer::from_files(
      tok_test::repo("configs/tokenizers/qwen3/tokenizer.json"), dir + "/tokenizer_config.json");
  CHECK(tok->has_chat_template());
  CHECK(tok->apply_chat_template(hi) == "hi");
  // Qwen3: an empty conversation and an unknown role.
  const auto& qwen = tok_test::tokenizer("configs/tokenizers/qwen3");
  CHECK_THROWS_WITH(qwen.apply_chat_template({}), Catch::Contains("at least one message"));
  CHECK_THROWS_WITH(qwen.apply_chat_template({{"narrator", "x"}}),
                    Catch::Contains("no role 'narrator'"));
}
