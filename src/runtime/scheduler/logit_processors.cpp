#include "runtime/scheduler/logit_processors.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "runtime/structured/grammar_processor.h"

namespace tpinfer {

std::vector<std::unique_ptr<LogitProcessor>> make_logit_processors(
    const GenerationRequest& request, const Tokenizer* tokenizer,
    const std::vector<int32_t>& stop_ids) {
  std::vector<std::unique_ptr<LogitProcessor>> out;
  if (!request.response_schema.empty()) {
    if (!tokenizer) throw std::runtime_error("structured output needs the model's tokenizer");
    auto grammar = structured::compile_json_schema(nlohmann::json::parse(request.response_schema));
    out.push_back(std::make_unique<structured::GrammarProcessor>(
        std::move(grammar), structured::TokenVocabulary::of(*tokenizer), stop_ids));
  }
  return out;
}

}  // namespace tpinfer
