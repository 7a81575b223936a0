// Private to src/tokenizer: a Jinja renderer for chat templates, equivalent to the jinja2 3.1
// environment transformers' apply_chat_template uses (ImmutableSandboxedEnvironment with
// trim_blocks, lstrip_blocks, loop controls, its {% generation %} tag, and the raise_exception,
// strftime_now, namespace and dict globals and its tojson filter). Parsing refuses anything the
// renderer does not implement with the line and the construct; rendering errors name the line.
#pragma once

#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace tpinfer::tok::jinja {

struct Template;

class JinjaTemplate {
 public:
  // where names the template in messages, e.g. "DIR/tokenizer_config.json chat_template".
  JinjaTemplate(const std::string& source, std::string where);
  ~JinjaTemplate();

  // Renders with the given variables. now fixes strftime_now's clock (UTC fields) for tests;
  // without it strftime_now uses the local time, as Python's datetime.now() does.
  std::string render(const std::vector<std::pair<std::string, Value>>& vars,
                     std::optional<std::time_t> now = std::nullopt) const;

 private:
  std::shared_ptr<Template> tmpl_;
  std::string where_;
};

}  // namespace tpinfer::tok::jinja
