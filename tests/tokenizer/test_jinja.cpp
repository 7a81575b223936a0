// The Jinja chat-template renderer against transformers (tests/data/chat/goldens.json, made by
// scripts/gen_chat_goldens.py): every published template of tests/data/chat/templates and the
// bundled tokenizers' own, over a fixed set of conversations, byte-identical or raising where the
// template raises; small templates for the constructs they do not use; and the errors.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "tok_test_util.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/jinja.h"

using nlohmann::ordered_json;
using tok_test::escape;

namespace {

const ordered_json& goldens() {
  static const ordered_json g =
      ordered_json::parse(tok_test::read_text(tok_test::repo("tests/data/chat/goldens.json")));
  return g;
}

std::string template_text(const ordered_json& c) {
  const std::string path = tok_test::repo(c.at("file").get<std::string>());
  if (c.at("key").is_null()) return tok_test::read_text(path);
  return ordered_json::parse(tok_test::read_text(path)).at(c.at("key").get<std::string>());
}

}  // namespace

TEST_CASE("chat templates render byte-identical to transformers", "[tokenizer][chat][jinja]") {
  const auto& g = goldens();
  const std::time_t now = g.at("now_utc").get<std::time_t>();
  std::map<std::string, std::pair<int, int>> counts;  // template -> (identical, total)
  std::vector<std::string> order;
  std::map<std::string, std::map<std::string, std::pair<int, int>>> per_conv;
  std::map<std::string, tpinfer::tok::ChatTemplate> cache;
  for (const auto& c : g.at("cases")) {
    const std::string name = c.at("template").get<std::string>();
    auto it = cache.find(name);
    if (it == cache.end()) {
      std::vector<std::pair<std::string, std::string>> special;
      for (const auto& [k, v] : c.at("special_tokens").items()) special.emplace_back(k, v);
      it = cache.emplace(name, tpinfer::tok::ChatTemplate()).first;
      it->second.init(template_text(c), special, c.at("file").get<std::string>());
      order.push_back(name);
    }
    const bool gen = c.at("add_generation_prompt").get<bool>();
    INFO(name << " / " << c.at("conversation").get<std::string>() << " gen=" << gen
              << " kwargs=" << c.at("kwargs").dump());
    auto& n = counts[name];
    ++n.second;
    auto& pc = per_conv[name][c.at("conversation").get<std::string>()];
    ++pc.second;
    const int before = n.first;
    struct Tally {  // the conversation's count follows the template's
      const int& now;
      int before;
      std::pair<int, int>& pc;
      ~Tally() { pc.first += now - before; }
    } tally{n.first, before, pc};
    if (c.contains("error")) {
      try {
        it->second.render_json(c.at("messages"), c.at("tools"), nullptr, gen, c.at("kwargs"), now);
        FAIL("expected an error like: " << c.at("error").get<std::string>());
      } catch (const tpinfer::Error& e) {
        if (c.at("error_type") == "TemplateError") {  // raise_exception(msg): the message shows
          CHECK_THAT(e.what(), Catch::Contains(c.at("error").get<std::string>()));
        }
        ++n.first;
      }
      continue;
    }
    std::string text;
    try {
      text = it->second.render_json(c.at("messages"), c.at("tools"), nullptr, gen, c.at("kwargs"),
                                    now);
    } catch (const tpinfer::Error& e) {
      FAIL_CHECK(e.what());
      continue;
    }
    const std::string want = c.at("text").get<std::string>();
    CHECK(escape(text) == escape(want));
    n.first += text == want;
  }
  for (const auto& name : order) {
    std::cout << "chat template " << name << ": " << counts[name].first << "/"
              << counts[name].second << " identical (";
    const char* sep = "";
    for (const auto& [conv, pc] : per_conv[name]) {
      std::cout << sep << conv << " " << pc.first << "/" << pc.second;
      sep = ", ";
    }
    std::cout << ")\n";
  }
  CHECK(order.size() >= 15);
}

TEST_CASE("jinja constructs render as jinja2 does", "[tokenizer][jinja]") {
  using tpinfer::tok::jinja::from_json;
  using tpinfer::tok::jinja::JinjaTemplate;
  using tpinfer::tok::jinja::Value;
  const auto& g = goldens();
  std::vector<std::pair<std::string, Value>> vars;
  for (const auto& [k, v] : g.at("snippet_vars").items()) vars.emplace_back(k, from_json(v));
  vars.emplace_back("messages", from_json(g.at("snippet_messages")));
  int ok = 0, total = 0;
  for (const auto& s : g.at("snippets")) {
    const std::string src = s.at("template").get<std::string>();
    INFO(src);
    ++total;
    try {
      const std::string text =
          JinjaTemplate(src, "snippet").render(vars, g.at("now_utc").get<std::time_t>());
      if (s.contains("error")) {
        FAIL_CHECK("expected an error like: " << s.at("error").get<std::string>());
        continue;
      }
      CHECK(escape(text) == escape(s.at("text").get<std::string>()));
      ok += text == s.at("text").get<std::string>();
    } catch (const tpinfer::Error& e) {
      if (!s.contains("error")) {
        FAIL_CHECK(e.what());
        continue;
      }
      // raise_exception and undefined values say what jinja2 says; other errors only raise.
      const std::string type = s.at("error_type").get<std::string>();
      const bool same =
          std::string(e.what()).find(s.at("error").get<std::string>()) != std::string::npos;
      if (type == "TemplateError" || type == "UndefinedError") {
        CHECK_THAT(e.what(), Catch::Contains(s.at("error").get<std::string>()));
      }
      ok += same || (type != "TemplateError" && type != "UndefinedError");
    }
  }
  std::cout << "jinja snippets: " << ok << "/" << total << " identical\n";
}

TEST_CASE("jinja errors name the template, the line and the construct", "[tokenizer][jinja]") {
  using tpinfer::tok::jinja::JinjaTemplate;
  CHECK_THROWS_WITH(JinjaTemplate("a\n{% raw %}x{% endraw %}", "T.jinja"),
                    Catch::Contains("T.jinja line 2: unsupported construct '{% raw %}'"));
  CHECK_THROWS_WITH(JinjaTemplate("{{ x | wrap(3) }}", "T.jinja"),
                    Catch::Contains("T.jinja line 1: unsupported construct: filter 'wrap'"));
  CHECK_THROWS_WITH(JinjaTemplate("\n\n{{ x is prime }}", "T.jinja"),
                    Catch::Contains("T.jinja line 3: unsupported construct: test 'prime'"));
  CHECK_THROWS_WITH(JinjaTemplate("{% if x %}never closed", "T.jinja"),
                    Catch::Contains("expected '{% endif %}'"));
  CHECK_THROWS_WITH(JinjaTemplate("{{ 'a'.zfill(3) }}", "T.jinja").render({}),
                    Catch::Contains("T.jinja line 1: unsupported construct: method .zfill()"));
  CHECK_THROWS_WITH(JinjaTemplate("\n{{ x.y }}", "T.jinja").render({}),
                    Catch::Contains("T.jinja line 2: 'x' is undefined"));
  CHECK_THROWS_WITH(
      JinjaTemplate("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "T.jinja").render({}),
      Catch::Contains("T.jinja line 1: macro calls nested deeper than 200"));
  CHECK_THROWS_WITH(JinjaTemplate("{{ raise_exception('no tools here') }}", "T.jinja").render({}),
                    Catch::Contains("T.jinja: the template raised an error: no tools here"));
}

TEST_CASE("a chat template the renderer cannot parse fails in chat mode only",
          "[tokenizer][chat][jinja]") {
  tpinfer::tok::ChatTemplate ct;
  ct.init("{% for m in messages %}{% filter upper %}{{ m.content }}{% endfilter %}{% endfor %}", {},
          "dir/tokenizer_config.json");
  CHECK(ct.has_template());
  CHECK_THROWS_WITH(ct.render({{"user", "hi"}}, true, true),
                    Catch::Contains("dir/tokenizer_config.json chat_template line 1: "
                                    "unsupported construct '{% filter %}'"));
  // The engine's conversation: a generic template renders every message.
  tpinfer::tok::ChatTemplate simple;
  simple.init(
      "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}{{ enable_thinking }}",
      {{"bos_token", "<s>"}}, "cfg");
  CHECK(simple.render({{"system", "s"}, {"user", "u"}}, true, false) ==
        "<system>s<user>u<assistant>False");
}

TEST_CASE("chat_template.jinja beside tokenizer_config.json is the template",
          "[tokenizer][chat][jinja]") {
  const std::string dir = std::string(TPINFER_BUILD_DIR) + "/tokenizer_test_tmp/jinja_file";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(tok_test::repo("configs/tokenizers/qwen3/tokenizer_config.json"),
                             dir + "/tokenizer_config.json",
                             std::filesystem::copy_options::overwrite_existing);
  std::ofstream(dir + "/chat_template.jinja")
      << "{% for m in messages %}[{{ m.role }}|{{ m.content }}]{% endfor %}{{ eos_token }}\n";
  auto tok = tpinfer::Tokenizer::from_files(
      tok_test::repo("configs/tokenizers/qwen3/tokenizer.json"), dir + "/tokenizer_config.json");
  CHECK(tok->apply_chat_template({{"user", "hi"}}) == "[user|hi]<|im_end|>");
  // Its errors name that file.
  std::ofstream(dir + "/chat_template.jinja") << "ok\n{% include 'x.jinja' %}";
  tok = tpinfer::Tokenizer::from_files(tok_test::repo("configs/tokenizers/qwen3/tokenizer.json"),
                                       dir + "/tokenizer_config.json");
  CHECK_THROWS_WITH(tok->apply_chat_template({{"user", "hi"}}),
                    Catch::Contains("jinja_file/chat_template.jinja line 2: unsupported "
                                    "construct '{% include %}'"));
  std::filesystem::remove_all(dir);
}
